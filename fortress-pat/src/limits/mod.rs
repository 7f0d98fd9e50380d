//! Budgets, rate limits and metering: admission reserves, the answer reconciles.
//!
//! Before a message is admitted, the [`Ledger`] reserves its worst case — an input
//! estimate (request bytes ÷ `input_bytes_per_token`, an upper bound for text) plus
//! `max_tokens` — against every budget (tokens and USD, per key, user, team and workspace,
//! per day and month) and takes it from every per-minute GCRA bucket (requests, input
//! tokens, output tokens). The [`LimitStore`] checks and takes all of it atomically —
//! under one lock in [`MemoryLimitStore`], in one Lua script in [`RedisLimitStore`] — so
//! concurrent calls, even on different replicas sharing Redis, can never overshoot
//! together. When the answer ends, the real usage (from `message_start` and the cumulative
//! `message_delta`) replaces the reservation; a call that failed before any usage is
//! refunded. Each settled call is metered per key, user, team and model per day, priced
//! by a configurable [`PriceTable`], through the write-behind [`Metering`] buffer into a
//! [`MeterStore`] (SQLite or PostgreSQL with [`SqlMeterStore`]); after a restart,
//! [`Ledger::restore`] rebuilds month-to-date budgets from it.
//!
//! ```
//! use fortress_pat::limits::{PriceTable, Price};
//! use fortress_pat::api::Usage;
//!
//! let prices = PriceTable::default().with_model("claude-x", Price::per_mtok(3.0, 15.0));
//! let usage = Usage { input_tokens: 1_000_000, output_tokens: 0, ..Usage::default() };
//! assert_eq!(prices.cost_micros("claude-x", &usage), 3_000_000);
//! ```

mod batches;
mod gcra;
mod memory;
mod meter;
mod meter_sql;
mod prices;
mod redis;
mod restore;
mod rules;
mod snapshot;
mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fortress_core::call::{Action, Call};
use fortress_core::denial::{Denial, DenialKind};
use fortress_core::guard::{Guard, GuardError, Verdict};

pub use self::memory::MemoryLimitStore;
pub use self::meter::{
    BatchOwner, MemoryMeterStore, MeterError, MeterKey, MeterRow, MeterStore, Metering,
};
pub use self::meter_sql::SqlMeterStore;
pub use self::prices::{Price, PriceTable};
pub use self::redis::RedisLimitStore;
pub use self::rules::{
    BATCH_REQUESTS_ATTRIBUTE, BODY_BYTES_ATTRIBUTE, BudgetRule, KEY_ATTRIBUTE, LimitsConfig,
    Principal, RateRule, Scope, TEAM_ATTRIBUTE, Window,
};
pub use self::snapshot::RateSnapshot;
pub use self::store::{
    Admission, BudgetDemand, BudgetKey, BudgetSettlement, BudgetUse, Consumption, Demand,
    Dimension, LimitStore, RateDemand, RateKey, RateRefund, RateState, Refusal, Settlement,
    StoreError,
};
use crate::api::Usage;

/// How long a budget counter outlives its period (late settlements still land).
const COUNTER_GRACE: Duration = Duration::from_secs(86_400);

/// What admission took for one call, until it settles.
#[derive(Debug)]
struct Reservation {
    rates: Vec<RateDemand>,
    budgets: Vec<BudgetDemand>,
    meter: MeterKey,
}

/// Budgets, rate limits and metering for one gateway, over a [`LimitStore`] and a
/// [`Metering`] buffer.
pub struct Ledger {
    config: LimitsConfig,
    store: Arc<dyn LimitStore>,
    metering: Metering,
    /// Calls admitted here and not yet settled (settlement happens where admission did).
    inflight: Mutex<HashMap<String, Reservation>>,
    snapshots: Mutex<HashMap<String, RateSnapshot>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    /// A ledger enforcing `config` in this process, metering in memory.
    pub fn new(config: LimitsConfig) -> Self {
        Self::with_backends(
            config,
            Arc::new(MemoryLimitStore::new()),
            Metering::in_memory(),
        )
    }

    /// A ledger keeping limits in `store` and metering through `metering`.
    pub fn with_backends(
        config: LimitsConfig,
        store: Arc<dyn LimitStore>,
        metering: Metering,
    ) -> Self {
        Self {
            config,
            store,
            metering,
            inflight: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    /// The limits enforced.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The metering buffer.
    pub fn metering(&self) -> &Metering {
        &self.metering
    }

    /// The worst-case input tokens of a call.
    fn input_estimate(&self, call: &Call) -> u64 {
        let bytes = call
            .attributes
            .extra
            .get(BODY_BYTES_ATTRIBUTE)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        bytes.div_ceil(self.config.input_bytes_per_token.max(1))
    }

    fn rate_demands(&self, principal: &Principal, input: u64, output: u64) -> Vec<RateDemand> {
        let mut demands = Vec::new();
        for rule in &self.config.rates {
            let Some(id) = principal.id(rule.scope) else {
                continue;
            };
            let dims = [
                (Dimension::Requests, rule.requests_per_minute, 1),
                (Dimension::InputTokens, rule.input_tokens_per_minute, input),
                (
                    Dimension::OutputTokens,
                    rule.output_tokens_per_minute,
                    output,
                ),
            ];
            for (dimension, limit, amount) in dims {
                let Some(per_minute) = limit else { continue };
                demands.push(RateDemand {
                    key: RateKey {
                        scope: rule.scope,
                        id: id.to_owned(),
                        dimension,
                    },
                    per_minute,
                    amount,
                });
            }
        }
        demands
    }

    fn budget_demands(
        &self,
        principal: &Principal,
        reserve: Consumption,
        now: DateTime<Utc>,
    ) -> Vec<BudgetDemand> {
        self.config
            .budgets
            .iter()
            .filter_map(|rule| {
                let id = principal.id(rule.scope)?;
                Some(BudgetDemand {
                    key: BudgetKey {
                        scope: rule.scope,
                        id: id.to_owned(),
                        window: rule.window,
                        period: rule.window.period(now),
                    },
                    max_tokens: rule.max_tokens,
                    max_micros: rule.max_micros(),
                    reserve,
                    ttl: rule.window.until_reset(now) + COUNTER_GRACE,
                })
            })
            .collect()
    }

    /// Reserves for `call` or refuses it (`Ok(Err(denial))`); `Err` when the store failed.
    pub async fn admit(&self, call: &Call) -> Result<Result<(), Box<Denial>>, StoreError> {
        let metered = call.action == Action::CreateMessage;
        let now = Utc::now();
        let (input, output) = if metered {
            (
                self.input_estimate(call),
                call.attributes.max_tokens.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let model = call.attributes.model.clone().unwrap_or_default();
        let estimate = Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        };
        let reserve = Consumption {
            tokens: input + output,
            micros: self.config.prices.cost_micros(&model, &estimate),
        };
        let principal = Principal::of(call);
        let request_id = call.request_id.as_str().to_owned();
        // A batch reserves the worst case of all its requests until its results are read.
        let batch = if call.action == Action::CreateBatch {
            self.batch_reserve(call)
        } else {
            None
        };
        let reserving = metered || batch.is_some();
        let demand = Demand {
            request_id: request_id.clone(),
            lease: batch.map(|_| batches::BATCH_LEASE),
            rates: self.rate_demands(&principal, input, output),
            budgets: match (metered, batch) {
                (true, _) => self.budget_demands(&principal, reserve, now),
                (false, Some(batch)) => self.budget_demands(&principal, batch, now),
                (false, None) => Vec::new(),
            },
        };
        if demand.rates.is_empty() && demand.budgets.is_empty() && !reserving {
            return Ok(Ok(()));
        }
        let admission = if demand.rates.is_empty() && demand.budgets.is_empty() {
            Admission {
                refusal: None,
                rates: Vec::new(),
            }
        } else {
            self.store.admit(&demand).await?
        };
        let mut snapshot = RateSnapshot::default();
        for (rate, state) in demand.rates.iter().zip(&admission.rates) {
            snapshot.record(rate.key.dimension, rate.per_minute, *state, now);
        }
        if !snapshot.entries.is_empty() {
            lock(&self.snapshots).insert(request_id.clone(), snapshot);
        }
        match admission.refusal {
            Some(Refusal::Budget { index }) => {
                let window = demand
                    .budgets
                    .get(index)
                    .map_or(Window::Day, |b| b.key.window);
                return Ok(Err(Box::new(
                    Denial::new(
                        DenialKind::RateLimited,
                        "this request would exceed a gateway budget",
                    )
                    .with_retry_after(window.until_reset(now)),
                )));
            }
            Some(Refusal::Rate { index, retry_after }) => {
                let dim = demand
                    .rates
                    .get(index)
                    .map_or("requests", |r| r.key.dimension.header());
                return Ok(Err(Box::new(
                    Denial::new(
                        DenialKind::RateLimited,
                        format!("gateway rate limit reached ({dim} per minute)"),
                    )
                    .with_retry_after(retry_after),
                )));
            }
            None => {}
        }
        if reserving {
            let meter = MeterKey {
                day: Window::Day.period(now),
                workspace: principal.workspace,
                key: principal.key,
                user: principal.user,
                team: principal.team,
                model,
            };
            lock(&self.inflight).insert(
                request_id,
                Reservation {
                    rates: demand.rates,
                    budgets: demand.budgets,
                    meter,
                },
            );
        }
        Ok(Ok(()))
    }

    /// The rate-limit headers of a call (taken once).
    pub fn take_snapshot(&self, request_id: &str) -> Option<RateSnapshot> {
        lock(&self.snapshots).remove(request_id)
    }

    /// Replaces a call's reservation by its real usage (`None`: nothing was consumed).
    /// Metering is recorded at once; a store failure is logged and counted.
    pub async fn settle(&self, request_id: &str, usage: Option<Usage>) {
        if let Some(future) = self.settlement(request_id, usage) {
            future.await;
        }
    }

    /// [`settle`](Self::settle) from synchronous code (a body's end or drop): finishes
    /// in place when the store answers at once (the in-memory store), else on a task.
    pub fn settle_soon(self: &Arc<Self>, request_id: &str, usage: Option<Usage>) {
        if let Some(future) = self.settlement(request_id, usage) {
            run_soon(future, "budget settlement");
        }
    }

    /// Records the metering and returns the store update still to run.
    fn settlement(
        &self,
        request_id: &str,
        usage: Option<Usage>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        lock(&self.snapshots).remove(request_id);
        let reservation = lock(&self.inflight).remove(request_id)?;
        let usage = usage.unwrap_or_default();
        let used = Consumption {
            tokens: usage.total_input() + usage.output_tokens,
            micros: self
                .config
                .prices
                .cost_micros(&reservation.meter.model, &usage),
        };
        if used.tokens > 0 {
            self.metering
                .record(reservation.meter.clone(), MeterRow::of(&usage, used.micros));
        }
        let settlement = Settlement {
            request_id: request_id.to_owned(),
            rates: reservation
                .rates
                .iter()
                .filter_map(|r| {
                    let actual = match r.key.dimension {
                        Dimension::Requests => return None,
                        Dimension::InputTokens => usage.total_input(),
                        Dimension::OutputTokens => usage.output_tokens,
                    };
                    let refund = i64::try_from(r.amount).unwrap_or(i64::MAX)
                        - i64::try_from(actual).unwrap_or(i64::MAX);
                    Some(RateRefund {
                        key: r.key.clone(),
                        per_minute: r.per_minute,
                        refund,
                    })
                })
                .collect(),
            budgets: reservation
                .budgets
                .into_iter()
                .map(|b| BudgetSettlement {
                    key: b.key,
                    used,
                    ttl: b.ttl,
                })
                .collect(),
        };
        let store = self.store.clone();
        Some(async move {
            if let Err(error) = store.settle(&settlement).await {
                tracing::error!(%error, "budget settlement failed; the reservation stays counted");
                metrics::counter!("fortress_pat_settle_failures_total").increment(1);
            }
        })
    }

    /// A budget counter in the current period.
    pub async fn budget(
        &self,
        scope: Scope,
        id: &str,
        window: Window,
    ) -> Result<BudgetUse, StoreError> {
        let key = BudgetKey {
            scope,
            id: id.to_owned(),
            window,
            period: window.period(Utc::now()),
        };
        self.store.budget(&key).await
    }

    /// Tokens used and reserved in a budget period: `(used, reserved)`.
    pub async fn budget_tokens(&self, scope: Scope, id: &str, window: Window) -> (u64, u64) {
        match self.budget(scope, id, window).await {
            Ok(b) => (b.used.tokens, b.reserved.tokens),
            Err(error) => {
                tracing::warn!(%error, "budget figures unavailable");
                (0, 0)
            }
        }
    }

    /// USD micros used and reserved in a budget period.
    pub async fn budget_micros(&self, scope: Scope, id: &str, window: Window) -> (u64, u64) {
        match self.budget(scope, id, window).await {
            Ok(b) => (b.used.micros, b.reserved.micros),
            Err(error) => {
                tracing::warn!(%error, "budget figures unavailable");
                (0, 0)
            }
        }
    }

    /// The metering rows of days `first..=last` (`YYYY-MM-DD`), sorted.
    pub async fn meter_between(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        self.metering.rows(first, last).await
    }

    /// The whole metering table, sorted.
    pub async fn meter(&self) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        self.metering.rows("0000-00-00", "9999-99-99").await
    }

    /// Writes pending metering (call before exit).
    pub async fn flush(&self) -> Result<(), MeterError> {
        self.metering.flush().await
    }
}

/// Polls `future` once in place (in-memory stores finish there, keeping the request path
/// free of task spawns); if it must wait for I/O, it finishes on a task.
fn run_soon(future: impl Future<Output = ()> + Send + 'static, what: &str) {
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if future.as_mut().poll(&mut cx).is_pending() {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(future);
            }
            Err(_) => tracing::error!("{what} outside a runtime was lost"),
        }
    }
}

/// Why the ledger could not restore or meter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The limit store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The metering store failed.
    #[error(transparent)]
    Meter(#[from] MeterError),
}

/// The ledger as the core stack's admission [`Guard`]. A store failure fails closed.
#[derive(Clone)]
pub struct LedgerGuard(pub Arc<Ledger>);

#[async_trait]
impl Guard for LedgerGuard {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        match self.0.admit(call).await {
            Ok(Ok(())) => Ok(Verdict::Admit(None)),
            Ok(Err(denial)) => Ok(Verdict::Reject(*denial)),
            Err(error) => Err(GuardError::Backend(Box::new(error))),
        }
    }
}

#[cfg(test)]
mod tests;
