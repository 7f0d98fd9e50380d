//! Budgets, rate limits and metering: admission reserves, the answer reconciles.
//!
//! Before a message is admitted, the [`Ledger`] reserves its worst case — an input
//! estimate (request bytes ÷ `input_bytes_per_token`, an upper bound for text) plus
//! `max_tokens` — against every budget (tokens and USD, per key, user, team and workspace,
//! per day and month) and every per-minute rate bucket (requests, input tokens, output
//! tokens). Reservation and check happen under one lock, so concurrent calls can never
//! overshoot together. When the answer ends, the real usage (from `message_start` and the
//! cumulative `message_delta`) replaces the reservation; a call that failed before any
//! usage is refunded. Each settled call is metered per key, user, team and model per day,
//! priced by a configurable [`PriceTable`].
//!
//! ```
//! use fortress_pat::limits::{PriceTable, Price};
//! use fortress_pat::api::Usage;
//!
//! let prices = PriceTable::default().with_model("claude-x", Price::per_mtok(3.0, 15.0));
//! let usage = Usage { input_tokens: 1_000_000, output_tokens: 0, ..Usage::default() };
//! assert_eq!(prices.cost_micros("claude-x", &usage), 3_000_000);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use fortress_core::call::{Action, Call};
use fortress_core::denial::{Denial, DenialKind};
use fortress_core::guard::{Guard, GuardError, Verdict};
use serde::{Deserialize, Serialize};

use crate::api::Usage;

/// USD prices per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cache writes.
    #[serde(default)]
    pub cache_write: f64,
    /// Cache reads.
    #[serde(default)]
    pub cache_read: f64,
}

impl Price {
    /// Input and output prices; cache writes at 1.25× and reads at 0.1× input.
    pub fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write: input * 1.25,
            cache_read: input * 0.1,
        }
    }
}

/// Prices by model id (longest matching prefix wins), with a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Model id prefix → price.
    #[serde(default)]
    pub models: HashMap<String, Price>,
    /// For models not listed.
    pub default: Price,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            models: HashMap::new(),
            default: Price::per_mtok(3.0, 15.0),
        }
    }
}

impl PriceTable {
    /// Adds a model price.
    #[must_use]
    pub fn with_model(mut self, prefix: &str, price: Price) -> Self {
        self.models.insert(prefix.to_owned(), price);
        self
    }

    /// The price of a model.
    pub fn price(&self, model: &str) -> Price {
        self.models
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |(_, p)| *p)
    }

    /// Cost in micro-USD, rounded up.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> u64 {
        let p = self.price(model);
        // Prices are USD per million tokens, so tokens × price is micro-USD.
        let micros = usage.input_tokens as f64 * p.input
            + usage.output_tokens as f64 * p.output
            + usage.cache_creation_input_tokens as f64 * p.cache_write
            + usage.cache_read_input_tokens as f64 * p.cache_read;
        micros.ceil() as u64
    }
}

/// Whose consumption a limit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Per gateway key.
    #[default]
    Key,
    /// Per user (subject).
    User,
    /// Per team.
    Team,
    /// Per workspace.
    Workspace,
}

/// A budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl Window {
    fn period(self, now: DateTime<Utc>) -> String {
        match self {
            Self::Day => now.format("%Y-%m-%d").to_string(),
            Self::Month => now.format("%Y-%m").to_string(),
        }
    }

    fn until_reset(self, now: DateTime<Utc>) -> Duration {
        let date = now.date_naive();
        let next = match self {
            Self::Day => date.succ_opt(),
            Self::Month => {
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
            }
        };
        next.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Utc.from_utc_datetime(&t) - now)
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(60))
    }
}

/// A token and/or USD budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetRule {
    /// Whose.
    pub scope: Scope,
    /// Which period.
    pub window: Window,
    /// Token cap (input of all kinds + output).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// USD cap.
    #[serde(default)]
    pub max_usd: Option<f64>,
}

/// Per-minute rate limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateRule {
    /// Whose.
    pub scope: Scope,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute.
    #[serde(default)]
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    #[serde(default)]
    pub output_tokens_per_minute: Option<u64>,
}

/// Everything the ledger enforces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// Budgets.
    #[serde(default)]
    pub budgets: Vec<BudgetRule>,
    /// Rate limits.
    #[serde(default)]
    pub rates: Vec<RateRule>,
    /// Prices.
    #[serde(default)]
    pub prices: PriceTable,
    /// Request bytes per input token in the admission estimate (1 bounds any text).
    #[serde(default = "one")]
    pub input_bytes_per_token: u64,
}

fn one() -> u64 {
    1
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            budgets: Vec::new(),
            rates: Vec::new(),
            prices: PriceTable::default(),
            input_bytes_per_token: 1,
        }
    }
}

/// The rate dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dim {
    Requests,
    InputTokens,
    OutputTokens,
}

impl Dim {
    fn header(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::InputTokens => "input-tokens",
            Self::OutputTokens => "output-tokens",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    level: f64,
    capacity: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let rate = self.capacity / 60.0;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(self.capacity);
        self.last = now;
    }

    fn wait_for(&self, amount: f64) -> Duration {
        let rate = self.capacity / 60.0;
        Duration::from_secs_f64(((amount - self.level).max(0.0) / rate).min(86_400.0))
    }
}

#[derive(Debug, Default)]
struct Counter {
    used_tokens: u64,
    used_micros: u64,
    reserved_tokens: u64,
    reserved_micros: u64,
}

type CounterKey = (Scope, String, Window, String);
type BucketKey = (Scope, String, Dim);

#[derive(Debug)]
struct Reservation {
    counters: Vec<CounterKey>,
    buckets: Vec<BucketKey>,
    tokens: u64,
    micros: u64,
    input_estimate: u64,
    output_max: u64,
    model: String,
    meter: MeterKey,
}

/// One row of metering: a key, user, team and model on a day.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MeterKey {
    /// UTC day.
    pub day: String,
    /// Workspace.
    pub workspace: String,
    /// Gateway key id.
    pub key: String,
    /// User.
    pub user: String,
    /// Team.
    pub team: String,
    /// Model.
    pub model: String,
}

/// Metered consumption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MeterRow {
    /// Settled requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache-creation tokens.
    pub cache_creation_input_tokens: u64,
    /// Cache-read tokens.
    pub cache_read_input_tokens: u64,
    /// Cost in micro-USD.
    pub cost_micros: u64,
}

/// Rate-limit state for the `anthropic-ratelimit-*` headers of one response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateSnapshot {
    /// `(dimension header name, limit, remaining, reset)`, the tightest rule per dimension.
    pub entries: Vec<(&'static str, u64, u64, DateTime<Utc>)>,
}

impl RateSnapshot {
    /// Writes the `anthropic-ratelimit-*` headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (dim, limit, remaining, reset) in &self.entries {
            let mut put = |suffix: &str, value: String| {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(
                        format!("anthropic-ratelimit-{dim}-{suffix}").as_bytes(),
                    ),
                    http::HeaderValue::from_str(&value),
                ) {
                    headers.insert(name, value);
                }
            };
            put("limit", limit.to_string());
            put("remaining", remaining.to_string());
            put(
                "reset",
                reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
}

#[derive(Default)]
struct State {
    counters: HashMap<CounterKey, Counter>,
    buckets: HashMap<BucketKey, Bucket>,
    reservations: HashMap<String, Reservation>,
    snapshots: HashMap<String, RateSnapshot>,
    meter: HashMap<MeterKey, MeterRow>,
}

/// Budgets, rate limits and metering for one gateway process.
pub struct Ledger {
    config: LimitsConfig,
    state: Mutex<State>,
}

/// The gateway key id attribute the PAT service sets on each call.
pub const KEY_ATTRIBUTE: &str = "key_id";
/// The team attribute.
pub const TEAM_ATTRIBUTE: &str = "team";
/// The request-size attribute (bytes) the input estimate is made from.
pub const BODY_BYTES_ATTRIBUTE: &str = "body_bytes";

fn attribute(call: &Call, name: &str) -> Option<String> {
    call.attributes
        .extra
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

fn scope_id(call: &Call, scope: Scope) -> Option<String> {
    match scope {
        Scope::Key => attribute(call, KEY_ATTRIBUTE),
        Scope::User => Some(call.subject.id.clone()),
        Scope::Team => attribute(call, TEAM_ATTRIBUTE),
        Scope::Workspace => Some(call.subject.workspace.as_str().to_owned()),
    }
}

impl Ledger {
    /// A ledger enforcing `config`.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Reserves for `call` or refuses it.
    pub fn admit(&self, call: &Call) -> Result<(), Box<Denial>> {
        let metered = call.action == Action::CreateMessage;
        let now = Instant::now();
        let wall = Utc::now();
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
        let tokens = input + output;
        let micros = self.config.prices.cost_micros(&model, &estimate);
        let request_id = call.request_id.as_str().to_owned();

        let mut state = self.lock();
        // Rate buckets first: check all, then take from all.
        let mut buckets = Vec::new();
        let mut snapshot = RateSnapshot::default();
        let mut wait: Option<(Duration, &'static str)> = None;
        for rule in &self.config.rates {
            let Some(id) = scope_id(call, rule.scope) else {
                continue;
            };
            let dims = [
                (Dim::Requests, rule.requests_per_minute, 1.0),
                (Dim::InputTokens, rule.input_tokens_per_minute, input as f64),
                (
                    Dim::OutputTokens,
                    rule.output_tokens_per_minute,
                    output as f64,
                ),
            ];
            for (dim, limit, amount) in dims {
                let Some(limit) = limit else { continue };
                let key = (rule.scope, id.clone(), dim);
                let bucket = state.buckets.entry(key.clone()).or_insert(Bucket {
                    level: limit as f64,
                    capacity: limit as f64,
                    last: now,
                });
                bucket.refill(now);
                if bucket.level < amount {
                    let w = bucket.wait_for(amount);
                    if wait.is_none_or(|(cur, _)| w > cur) {
                        wait = Some((w, dim.header()));
                    }
                }
                buckets.push((key, amount));
            }
        }
        // Budgets.
        let mut counters = Vec::new();
        let mut budget_wait: Option<Duration> = None;
        if metered {
            for rule in &self.config.budgets {
                let Some(id) = scope_id(call, rule.scope) else {
                    continue;
                };
                let key = (rule.scope, id, rule.window, rule.window.period(wall));
                let c = state.counters.entry(key.clone()).or_default();
                let over_tokens = rule
                    .max_tokens
                    .is_some_and(|max| c.used_tokens + c.reserved_tokens + tokens > max);
                let max_micros = rule.max_usd.map(|usd| (usd * 1e6).floor() as u64);
                let over_usd =
                    max_micros.is_some_and(|max| c.used_micros + c.reserved_micros + micros > max);
                if over_tokens || over_usd {
                    budget_wait = Some(rule.window.until_reset(wall));
                }
                counters.push(key);
            }
        }
        let denial = match (wait, budget_wait) {
            (_, Some(retry)) => Some(
                Denial::new(
                    DenialKind::RateLimited,
                    "this request would exceed a gateway budget",
                )
                .with_retry_after(retry),
            ),
            (Some((retry, dim)), None) => Some(
                Denial::new(
                    DenialKind::RateLimited,
                    format!("gateway rate limit reached ({dim} per minute)"),
                )
                .with_retry_after(retry),
            ),
            (None, None) => None,
        };
        if denial.is_none() {
            for (key, amount) in &buckets {
                if let Some(bucket) = state.buckets.get_mut(key) {
                    bucket.level -= amount;
                }
            }
            for key in &counters {
                if let Some(c) = state.counters.get_mut(key) {
                    c.reserved_tokens += tokens;
                    c.reserved_micros += micros;
                }
            }
        }
        // The tightest bucket per dimension describes the caller's headroom.
        for (key, _) in &buckets {
            if let Some(bucket) = state.buckets.get(key) {
                let remaining = bucket.level.max(0.0).floor() as u64;
                let reset = wall
                    + chrono::Duration::from_std(bucket.wait_for(bucket.capacity))
                        .unwrap_or_default();
                let dim = key.2.header();
                match snapshot.entries.iter_mut().find(|e| e.0 == dim) {
                    Some(entry) if entry.2 <= remaining => {}
                    Some(entry) => *entry = (dim, bucket.capacity as u64, remaining, reset),
                    None => snapshot
                        .entries
                        .push((dim, bucket.capacity as u64, remaining, reset)),
                }
            }
        }
        if !snapshot.entries.is_empty() {
            state.snapshots.insert(request_id.clone(), snapshot);
        }
        if let Some(denial) = denial {
            return Err(Box::new(denial));
        }
        let meter = MeterKey {
            day: Window::Day.period(wall),
            workspace: call.subject.workspace.as_str().to_owned(),
            key: attribute(call, KEY_ATTRIBUTE).unwrap_or_default(),
            user: call.subject.id.clone(),
            team: attribute(call, TEAM_ATTRIBUTE).unwrap_or_default(),
            model,
        };
        state.reservations.insert(
            request_id,
            Reservation {
                counters,
                buckets: buckets.into_iter().map(|(k, _)| k).collect(),
                tokens,
                micros,
                input_estimate: input,
                output_max: output,
                model: meter.model.clone(),
                meter,
            },
        );
        Ok(())
    }

    /// The rate-limit headers of a call (taken once).
    pub fn take_snapshot(&self, request_id: &str) -> Option<RateSnapshot> {
        self.lock().snapshots.remove(request_id)
    }

    /// Replaces a call's reservation by its real usage (`None`: nothing was consumed).
    pub fn settle(&self, request_id: &str, usage: Option<Usage>) {
        let mut state = self.lock();
        state.snapshots.remove(request_id);
        let Some(r) = state.reservations.remove(request_id) else {
            return;
        };
        let usage = usage.unwrap_or_default();
        let tokens = usage.total_input() + usage.output_tokens;
        let micros = self.config.prices.cost_micros(&r.model, &usage);
        for key in &r.counters {
            if let Some(c) = state.counters.get_mut(key) {
                c.reserved_tokens = c.reserved_tokens.saturating_sub(r.tokens);
                c.reserved_micros = c.reserved_micros.saturating_sub(r.micros);
                c.used_tokens += tokens;
                c.used_micros += micros;
            }
        }
        for key in &r.buckets {
            if let Some(bucket) = state.buckets.get_mut(key) {
                let refund = match key.2 {
                    Dim::Requests => 0.0,
                    Dim::InputTokens => r.input_estimate as f64 - usage.total_input() as f64,
                    Dim::OutputTokens => r.output_max as f64 - usage.output_tokens as f64,
                };
                bucket.level = (bucket.level + refund).min(bucket.capacity);
            }
        }
        if tokens > 0 {
            let row = state.meter.entry(r.meter).or_default();
            row.requests += 1;
            row.input_tokens += usage.input_tokens;
            row.output_tokens += usage.output_tokens;
            row.cache_creation_input_tokens += usage.cache_creation_input_tokens;
            row.cache_read_input_tokens += usage.cache_read_input_tokens;
            row.cost_micros += micros;
        }
    }

    /// Tokens used and reserved in a budget period: `(used, reserved)`.
    pub fn budget_tokens(&self, scope: Scope, id: &str, window: Window) -> (u64, u64) {
        let key = (scope, id.to_owned(), window, window.period(Utc::now()));
        self.lock()
            .counters
            .get(&key)
            .map_or((0, 0), |c| (c.used_tokens, c.reserved_tokens))
    }

    /// USD micros used and reserved in a budget period.
    pub fn budget_micros(&self, scope: Scope, id: &str, window: Window) -> (u64, u64) {
        let key = (scope, id.to_owned(), window, window.period(Utc::now()));
        self.lock()
            .counters
            .get(&key)
            .map_or((0, 0), |c| (c.used_micros, c.reserved_micros))
    }

    /// The metering table, sorted.
    pub fn meter(&self) -> Vec<(MeterKey, MeterRow)> {
        let mut rows: Vec<_> = self
            .lock()
            .meter
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
}

/// The ledger as the core stack's admission [`Guard`].
#[derive(Clone)]
pub struct LedgerGuard(pub Arc<Ledger>);

#[async_trait]
impl Guard for LedgerGuard {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        Ok(match self.0.admit(call) {
            Ok(()) => Verdict::Admit(None),
            Err(denial) => Verdict::Reject(*denial),
        })
    }
}

#[cfg(test)]
mod tests {
    use fortress_core::call::Resource;
    use fortress_core::subject::{Subject, WorkspaceId};

    use super::*;

    fn call(max_tokens: u64, bytes: u64) -> Call {
        let mut call = Call::new(
            Subject::user("alice", WorkspaceId::new("acme")),
            Action::CreateMessage,
            Resource::model("claude-x"),
        );
        call.attributes.max_tokens = Some(max_tokens);
        call.attributes.model = Some("claude-x".into());
        call.attributes
            .extra
            .insert(BODY_BYTES_ATTRIBUTE.into(), bytes.into());
        call.attributes
            .extra
            .insert(KEY_ATTRIBUTE.into(), "k1".into());
        call
    }

    #[test]
    fn budgets_reserve_reconcile_and_refund() {
        let ledger = Ledger::new(LimitsConfig {
            budgets: vec![BudgetRule {
                scope: Scope::User,
                window: Window::Day,
                max_tokens: Some(1000),
                max_usd: None,
            }],
            ..LimitsConfig::default()
        });
        let a = call(400, 100);
        ledger.admit(&a).unwrap();
        assert_eq!(
            ledger.budget_tokens(Scope::User, "alice", Window::Day),
            (0, 500)
        );
        let b = call(400, 100);
        ledger.admit(&b).unwrap();
        let c = call(400, 100);
        let denial = ledger.admit(&c).unwrap_err();
        assert_eq!(denial.kind, DenialKind::RateLimited);
        assert!(denial.retry_after.is_some());
        ledger.settle(
            a.request_id.as_str(),
            Some(Usage {
                input_tokens: 20,
                output_tokens: 30,
                ..Usage::default()
            }),
        );
        ledger.settle(b.request_id.as_str(), None);
        assert_eq!(
            ledger.budget_tokens(Scope::User, "alice", Window::Day),
            (50, 0)
        );
        ledger.admit(&c).unwrap();
        let meter = ledger.meter();
        assert_eq!(meter.len(), 1);
        assert_eq!(meter[0].1.output_tokens, 30);
        assert_eq!(meter[0].0.key, "k1");
    }

    #[test]
    fn rate_limits_refuse_with_a_retry_hint_and_headers() {
        let ledger = Ledger::new(LimitsConfig {
            rates: vec![RateRule {
                scope: Scope::Key,
                requests_per_minute: Some(2),
                ..RateRule::default()
            }],
            ..LimitsConfig::default()
        });
        let first = call(1, 1);
        ledger.admit(&first).unwrap();
        let snap = ledger.take_snapshot(first.request_id.as_str()).unwrap();
        assert_eq!(snap.entries[0].1, 2);
        assert_eq!(snap.entries[0].2, 1);
        ledger.admit(&call(1, 1)).unwrap();
        let third = call(1, 1);
        let denial = ledger.admit(&third).unwrap_err();
        let retry = denial.retry_after.unwrap();
        assert!(retry > Duration::from_secs(20) && retry <= Duration::from_secs(30));
        let mut headers = http::HeaderMap::new();
        ledger
            .take_snapshot(third.request_id.as_str())
            .unwrap()
            .apply(&mut headers);
        assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
        assert_eq!(headers["anthropic-ratelimit-requests-limit"], "2");
    }

    #[test]
    fn usd_budgets_count_the_price_table() {
        let ledger = Ledger::new(LimitsConfig {
            budgets: vec![BudgetRule {
                scope: Scope::Workspace,
                window: Window::Month,
                max_tokens: None,
                max_usd: Some(0.01),
            }],
            prices: PriceTable::default().with_model("claude-x", Price::per_mtok(1.0, 10.0)),
            ..LimitsConfig::default()
        });
        // 900 output tokens at $10/Mtok = $0.009: fits once.
        ledger.admit(&call(900, 0)).unwrap();
        assert!(ledger.admit(&call(900, 0)).is_err());
        assert_eq!(
            ledger.budget_micros(Scope::Workspace, "acme", Window::Month),
            (0, 9000)
        );
    }
}
