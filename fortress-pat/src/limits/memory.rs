//! The in-process [`LimitStore`]: one gateway, state in a mutex.
//!
//! Check and take happen under one lock, so concurrent calls in this process can never
//! overshoot together. Reservations have no lease here: they live as long as the process,
//! like the calls holding them. Replicas need the [`RedisLimitStore`](super::RedisLimitStore).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::gcra;
use super::store::{
    Admission, BudgetKey, BudgetUse, Consumption, Demand, LimitStore, RateKey, RateState, Refusal,
    Settlement, StoreError,
};

#[derive(Default)]
struct State {
    /// Theoretical arrival time per bucket, µs since `started`.
    tats: HashMap<RateKey, f64>,
    counters: HashMap<BudgetKey, BudgetUse>,
    /// What each held reservation took: `(request id, budget index)` → amount.
    reservations: HashMap<(String, usize), Consumption>,
    /// Admissions since the last prune.
    since_prune: u32,
}

/// Admissions between two prunes of state that no longer matters.
const PRUNE_EVERY: u32 = 4096;

impl State {
    /// Drops full buckets (the same as absent) and counters of past periods with nothing
    /// reserved, so a long-running process keeps one entry per live bucket and period.
    fn prune(&mut self, now_us: f64, now: chrono::DateTime<chrono::Utc>) {
        self.tats.retain(|_, tat| *tat > now_us);
        self.counters.retain(|key, c| {
            key.period == key.window.period(now) || c.reserved != Consumption::default()
        });
        self.since_prune = 0;
    }
}

/// Rate buckets and budget counters in this process.
pub struct MemoryLimitStore {
    started: Instant,
    state: Mutex<State>,
}

impl Default for MemoryLimitStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimitStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_us(&self) -> f64 {
        self.started.elapsed().as_micros() as f64
    }

    /// The synchronous core of [`LimitStore::admit`].
    pub fn admit_now(&self, demand: &Demand) -> Admission {
        let now = self.now_us();
        let mut state = self.lock();
        state.since_prune += 1;
        if state.since_prune >= PRUNE_EVERY {
            state.prune(now, chrono::Utc::now());
        }
        let mut taken = Vec::with_capacity(demand.rates.len());
        let mut rate_refusal: Option<(usize, f64)> = None;
        for (index, rate) in demand.rates.iter().enumerate() {
            let tat = state.tats.get(&rate.key).copied().unwrap_or(now);
            match gcra::take(tat, now, rate.per_minute, rate.amount) {
                Ok(new) => taken.push((tat, new)),
                Err(wait) => {
                    taken.push((tat, tat));
                    if rate_refusal.is_none_or(|(_, w)| wait > w) {
                        rate_refusal = Some((index, wait));
                    }
                }
            }
        }
        let budget_refusal = demand.budgets.iter().position(|b| {
            let c = state.counters.get(&b.key).copied().unwrap_or_default();
            let over_tokens = b
                .max_tokens
                .is_some_and(|max| c.used.tokens + c.reserved.tokens + b.reserve.tokens > max);
            let over_micros = b
                .max_micros
                .is_some_and(|max| c.used.micros + c.reserved.micros + b.reserve.micros > max);
            over_tokens || over_micros
        });
        let refusal = match (budget_refusal, rate_refusal) {
            (Some(index), _) => Some(Refusal::Budget { index }),
            (None, Some((index, wait))) => Some(Refusal::Rate {
                index,
                retry_after: Duration::from_micros(wait.ceil() as u64),
            }),
            (None, None) => None,
        };
        let admitted = refusal.is_none();
        let rates = demand
            .rates
            .iter()
            .zip(&taken)
            .map(|(rate, &(before, after))| {
                let tat = if admitted { after } else { before };
                if admitted {
                    state.tats.insert(rate.key.clone(), after);
                }
                let (remaining, busy) = gcra::state(tat, now, rate.per_minute);
                RateState {
                    remaining,
                    reset_after: Duration::from_micros(busy.ceil() as u64),
                }
            })
            .collect();
        if admitted {
            for (index, b) in demand.budgets.iter().enumerate() {
                let c = state.counters.entry(b.key.clone()).or_default();
                c.reserved.tokens += b.reserve.tokens;
                c.reserved.micros += b.reserve.micros;
                state
                    .reservations
                    .insert((demand.request_id.clone(), index), b.reserve);
            }
        }
        Admission { refusal, rates }
    }

    /// The synchronous core of [`LimitStore::settle`].
    pub fn settle_now(&self, settlement: &Settlement) {
        let now = self.now_us();
        let mut state = self.lock();
        for rate in &settlement.rates {
            if let Some(tat) = state.tats.get_mut(&rate.key) {
                *tat = gcra::refund(*tat, now, rate.per_minute, rate.refund);
            }
        }
        for (index, b) in settlement.budgets.iter().enumerate() {
            // Only a reservation still held is released (never twice, never another's).
            let held = state
                .reservations
                .remove(&(settlement.request_id.clone(), index))
                .unwrap_or_default();
            let c = state.counters.entry(b.key.clone()).or_default();
            c.reserved.tokens = c.reserved.tokens.saturating_sub(held.tokens);
            c.reserved.micros = c.reserved.micros.saturating_sub(held.micros);
            c.used.tokens += b.used.tokens;
            c.used.micros += b.used.micros;
        }
    }
}

#[async_trait]
impl LimitStore for MemoryLimitStore {
    async fn admit(&self, demand: &Demand) -> Result<Admission, StoreError> {
        Ok(self.admit_now(demand))
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        self.settle_now(settlement);
        Ok(())
    }

    async fn budget(&self, key: &BudgetKey) -> Result<BudgetUse, StoreError> {
        Ok(self.lock().counters.get(key).copied().unwrap_or_default())
    }

    async fn seed(
        &self,
        key: &BudgetKey,
        used: Consumption,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let c = state.counters.entry(key.clone()).or_default();
        if c.used == Consumption::default() {
            c.used = used;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rules::{Scope, Window};
    use crate::limits::store::Dimension;

    #[test]
    fn pruning_keeps_only_live_buckets_and_periods() {
        let store = MemoryLimitStore::new();
        let now = chrono::Utc::now();
        let counter = |period: String| BudgetKey {
            scope: Scope::User,
            id: "alice".into(),
            window: Window::Day,
            period,
        };
        let used = BudgetUse {
            used: Consumption {
                tokens: 5,
                micros: 0,
            },
            ..BudgetUse::default()
        };
        let reserved = BudgetUse {
            reserved: Consumption {
                tokens: 5,
                micros: 0,
            },
            ..BudgetUse::default()
        };
        let bucket = |id: &str| RateKey {
            scope: Scope::Key,
            id: id.into(),
            dimension: Dimension::Requests,
        };
        let mut state = store.lock();
        state.counters.insert(counter("2000-01-01".into()), used);
        state
            .counters
            .insert(counter("2000-01-02".into()), reserved);
        state
            .counters
            .insert(counter(Window::Day.period(now)), used);
        state.tats.insert(bucket("full"), 10.0);
        state.tats.insert(bucket("busy"), 1_000.0);
        state.prune(100.0, now);
        assert_eq!(state.counters.len(), 2, "past and idle counters go");
        assert!(!state.counters.contains_key(&counter("2000-01-01".into())));
        assert_eq!(state.tats.len(), 1);
        assert!(state.tats.contains_key(&bucket("busy")));
    }
}
