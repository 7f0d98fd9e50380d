//! Rate limits: a [`Guard`] that applies the GCRA limits of the live policy document set.
//!
//! The counters live behind the [`RateLimitStore`] trait: [`GovernorStore`] keeps them in
//! this process (`governor`, with any [`Clock`], so tests drive time by hand); a store shared
//! by replicas (for example Redis) implements the same trait.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::guard::{Guard, Verdict};
//! use fortress_core::guard::limits::LimitsConfig;
//! use fortress_core::guard::rate_limit::{GovernorStore, RateLimitGuard, StaticLimits};
//! use fortress_core::subject::{Subject, WorkspaceId};
//! use governor::clock::FakeRelativeClock;
//!
//! let limits = LimitsConfig::from_toml("[[limit]]\nid='per-user'\nscope='subject'\nrate=1\nper='1s'").unwrap();
//! let clock = FakeRelativeClock::default();
//! let guard = RateLimitGuard::new(Arc::new(StaticLimits::new(limits)), Arc::new(GovernorStore::with_clock(clock.clone())));
//! let call = Call::new(Subject::user("u", WorkspaceId::new("w")), Action::ListModels, Resource::workspace("w"));
//! assert!(matches!(guard.admit(&call).await.unwrap(), Verdict::Admit(_)));
//! assert!(matches!(guard.admit(&call).await.unwrap(), Verdict::Reject(_)));
//! clock.advance(Duration::from_secs(1));
//! assert!(matches!(guard.admit(&call).await.unwrap(), Verdict::Admit(_)));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::limits::{LimitRule, LimitsConfig};
use super::{Guard, GuardError, Verdict};
use crate::call::Call;
use crate::denial::{Denial, DenialKind};

/// Where the live limit configuration comes from (the policy engine, or a fixed config).
pub trait LimitsSource: Send + Sync + 'static {
    /// The limits in force now.
    fn limits(&self) -> Arc<LimitsConfig>;
}

/// A limit configuration set in code (and replaceable at run time).
#[derive(Debug)]
pub struct StaticLimits(ArcSwap<LimitsConfig>);

impl StaticLimits {
    /// Serves `config`.
    pub fn new(config: LimitsConfig) -> Self {
        Self(ArcSwap::from_pointee(config))
    }

    /// Replaces the configuration.
    pub fn set(&self, config: LimitsConfig) {
        self.0.store(Arc::new(config));
    }
}

impl LimitsSource for StaticLimits {
    fn limits(&self) -> Arc<LimitsConfig> {
        self.0.load_full()
    }
}

/// The answer of a counter store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitOutcome {
    /// The call fits; one cell was taken.
    Allowed,
    /// The call does not fit; it may be retried after this long.
    Limited {
        /// Time until a cell is available.
        retry_after: Duration,
    },
}

/// Counts calls against limits. Implementations must be atomic per key: two replicas (or
/// two tasks) checking the same key never both take the last cell.
#[async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Takes one cell of `rule` for `key`, if one is available.
    async fn check(&self, rule: &LimitRule, key: &str) -> Result<LimitOutcome, GuardError>;

    /// Forgets counters of rules no longer in `live` (called after a configuration change).
    fn retain(&self, live: &LimitsConfig) {
        let _ = live;
    }
}

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Identifies one rule's quota: a change of rate or burst starts fresh counters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct QuotaKey {
    id: String,
    period: Duration,
    burst: u32,
}

/// In-process GCRA counters on `governor`.
pub struct GovernorStore<C: Clock = DefaultClock> {
    clock: C,
    limiters: RwLock<HashMap<QuotaKey, Arc<Keyed<C>>>>,
    checks: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for GovernorStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernorStore").finish_non_exhaustive()
    }
}

impl GovernorStore<DefaultClock> {
    /// Counters on the system's monotonic clock.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for GovernorStore<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

/// How often (in checks) idle keys are dropped from the counters.
const RETAIN_EVERY: u64 = 4096;

impl<C: Clock + Clone + Send + Sync + 'static> GovernorStore<C>
where
    C::Instant: Send + Sync,
{
    /// Counters on `clock` (for tests: `governor::clock::FakeRelativeClock`).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }

    fn limiter(&self, rule: &LimitRule) -> Result<Arc<Keyed<C>>, GuardError> {
        let period = rule
            .period()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let burst = rule
            .burst()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let key = QuotaKey {
            id: rule.id.clone(),
            period,
            burst: burst.get(),
        };
        if let Some(found) = self.limiters.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(found);
        }
        let quota = Quota::with_period(period)
            .ok_or_else(|| GuardError::Config(format!("limit `{}` has a zero period", rule.id)))?
            .allow_burst(burst);
        let mut map = self
            .limiters
            .write()
            .map_err(|_| GuardError::Config("rate limiter state is poisoned".into()))?;
        let limiter = map.entry(key).or_insert_with(|| {
            Arc::new(RateLimiter::new(
                quota,
                DefaultKeyedStateStore::default(),
                self.clock.clone(),
            ))
        });
        Ok(Arc::clone(limiter))
    }
}

#[async_trait]
impl<C: Clock + Clone + Send + Sync + 'static> RateLimitStore for GovernorStore<C>
where
    C::Instant: Send + Sync,
{
    async fn check(&self, rule: &LimitRule, key: &str) -> Result<LimitOutcome, GuardError> {
        let limiter = self.limiter(rule)?;
        let outcome = match limiter.check_key(&key.to_owned()) {
            Ok(()) => LimitOutcome::Allowed,
            Err(not_until) => LimitOutcome::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            limiter.retain_recent();
        }
        Ok(outcome)
    }

    fn retain(&self, live: &LimitsConfig) {
        if let Ok(mut map) = self.limiters.write() {
            map.retain(|k, _| live.limits.iter().any(|r| r.id == k.id));
        }
    }
}

/// Rejects calls over any applicable limit of the live configuration.
pub struct RateLimitGuard {
    source: Arc<dyn LimitsSource>,
    store: Arc<dyn RateLimitStore>,
    last: ArcSwap<LimitsConfig>,
}

impl std::fmt::Debug for RateLimitGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitGuard").finish_non_exhaustive()
    }
}

impl RateLimitGuard {
    /// Applies the limits of `source` with counters in `store`.
    pub fn new(source: Arc<dyn LimitsSource>, store: Arc<dyn RateLimitStore>) -> Self {
        let last = ArcSwap::new(source.limits());
        Self {
            source,
            store,
            last,
        }
    }
}

#[async_trait]
impl Guard for RateLimitGuard {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        let config = self.source.limits();
        if !Arc::ptr_eq(&config, &self.last.load()) {
            self.store.retain(&config);
            self.last.store(Arc::clone(&config));
        }
        for rule in &config.limits {
            if !rule.applies_to(call) {
                continue;
            }
            let Some(key) = rule.key_for(call) else {
                continue;
            };
            if let LimitOutcome::Limited { retry_after } = self.store.check(rule, &key).await? {
                metrics::counter!("fortress_rate_limited_total", "limit" => rule.id.clone())
                    .increment(1);
                return Ok(Verdict::Reject(
                    Denial::new(
                        DenialKind::RateLimited,
                        format!("rate limit `{}` exceeded", rule.id),
                    )
                    .with_retry_after(retry_after),
                ));
            }
        }
        Ok(Verdict::Admit(None))
    }
}
