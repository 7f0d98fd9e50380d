//! The shared [`LimitStore`]: rate buckets and budget counters in Redis, so replicas that
//! share one Redis enforce one limit.
//!
//! Admission and settlement are each one Lua script (`admit.lua`, `settle.lua`), which
//! Redis runs atomically: check every bucket and budget, then take from all or none. The
//! scripts read the time from Redis (`TIME`), so replicas with skewed clocks agree on
//! GCRA arrival times. Keys:
//!
//! - `{prefix}:rate:{scope}:{dimension}:{id}` — a bucket's theoretical arrival time (µs),
//!   expiring once the bucket is full again;
//! - `{prefix}:budget:{scope}:{window}:{period}:{id}` — a hash of `used_tokens`,
//!   `used_micros`, `reserved_tokens`, `reserved_micros`, expiring after its period; with
//!   `…:leases` (a sorted set of the reservations in flight by lease expiry) and `…:res`
//!   (what each reserved). A replica that dies between admission and settlement leaves its
//!   reservations behind; admission releases them once their lease (default one hour,
//!   [`RedisLimitStore::with_lease`]) has expired, and a late settlement of a released
//!   reservation only adds its usage.
//!
//! All keys of one call are touched by one script, so a Redis Cluster needs the prefix to
//! carry a hash tag (for example `{fortress}:pat`). Connections and commands time out
//! after 2 s; a failure refuses the call (the guard fails closed) and the connection is
//! re-established in the background.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra;
use super::store::{
    Admission, BudgetKey, BudgetUse, Consumption, Demand, LimitStore, RateKey, RateState, Refusal,
    Settlement, StoreError,
};

/// The default reservation lease: an hour, past the upstream's longest answer.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(3600);

/// How long one Redis connection attempt or command may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Rate buckets and budget counters in Redis.
#[derive(Clone)]
pub struct RedisLimitStore {
    connection: ConnectionManager,
    prefix: String,
    lease: Duration,
    admit: Script,
    settle: Script,
    seed: Script,
}

fn backend(error: redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn secs(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

impl RedisLimitStore {
    /// Connects to `url` (`redis://…` or `rediss://…`); every key starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        // Admission waits on Redis: a slow or absent Redis must fail closed quickly rather
        // than hold requests (the client's default retries take minutes).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            lease: DEFAULT_LEASE,
            admit: Script::new(include_str!("admit.lua")),
            settle: Script::new(include_str!("settle.lua")),
            seed: Script::new(include_str!("seed.lua")),
        })
    }

    /// How long a reservation holds if its call never settles (its replica died): longer
    /// than any call can run, since a call outliving its lease no longer counts.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn rate_key(&self, key: &RateKey) -> String {
        format!(
            "{}:rate:{}:{}:{}",
            self.prefix,
            key.scope.as_str(),
            key.dimension.header(),
            key.id
        )
    }

    fn budget_key(&self, key: &BudgetKey) -> String {
        format!(
            "{}:budget:{}:{}:{}:{}",
            self.prefix,
            key.scope.as_str(),
            key.window.as_str(),
            key.period,
            key.id
        )
    }
}

/// `-1` for no cap.
fn cap(max: Option<u64>) -> i64 {
    max.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX))
}

#[async_trait]
impl LimitStore for RedisLimitStore {
    async fn admit(&self, demand: &Demand) -> Result<Admission, StoreError> {
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(demand.rates.len())
            .arg(demand.budgets.len())
            .arg(&demand.request_id)
            .arg(u64::try_from(demand.lease.unwrap_or(self.lease).as_micros()).unwrap_or(u64::MAX));
        for rate in &demand.rates {
            invocation
                .key(self.rate_key(&rate.key))
                .arg(gcra::interval_us(rate.per_minute))
                .arg(rate.amount);
        }
        for budget in &demand.budgets {
            invocation
                .key(self.budget_key(&budget.key))
                .arg(cap(budget.max_tokens))
                .arg(cap(budget.max_micros))
                .arg(budget.reserve.tokens)
                .arg(budget.reserve.micros)
                .arg(secs(budget.ttl));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(backend)?;
        if reply.len() != 4 + 2 * demand.rates.len() {
            return Err(StoreError::Protocol(format!(
                "admission script returned {} values",
                reply.len()
            )));
        }
        let as_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let refusal = match (reply[1], reply[2]) {
            (0, 0) => None,
            (b, _) if b > 0 => Some(Refusal::Budget {
                index: as_u64(b - 1) as usize,
            }),
            (_, r) => Some(Refusal::Rate {
                index: as_u64(r - 1) as usize,
                retry_after: Duration::from_micros(as_u64(reply[3])),
            }),
        };
        let rates = reply[4..]
            .chunks(2)
            .map(|pair| RateState {
                remaining: as_u64(pair[0]),
                reset_after: Duration::from_micros(as_u64(pair[1])),
            })
            .collect();
        Ok(Admission { refusal, rates })
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let rates: Vec<_> = settlement.rates.iter().filter(|r| r.refund != 0).collect();
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(rates.len())
            .arg(settlement.budgets.len())
            .arg(&settlement.request_id);
        for rate in &rates {
            invocation
                .key(self.rate_key(&rate.key))
                .arg(gcra::interval_us(rate.per_minute))
                .arg(rate.refund);
        }
        for budget in &settlement.budgets {
            invocation
                .key(self.budget_key(&budget.key))
                .arg(budget.used.tokens)
                .arg(budget.used.micros)
                .arg(secs(budget.ttl));
        }
        let mut connection = self.connection.clone();
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn budget(&self, key: &BudgetKey) -> Result<BudgetUse, StoreError> {
        let mut connection = self.connection.clone();
        let values: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.budget_key(key))
            .arg("used_tokens")
            .arg("used_micros")
            .arg("reserved_tokens")
            .arg("reserved_micros")
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        let at = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
        Ok(BudgetUse {
            used: Consumption {
                tokens: at(0),
                micros: at(1),
            },
            reserved: Consumption {
                tokens: at(2),
                micros: at(3),
            },
        })
    }

    async fn seed(
        &self,
        key: &BudgetKey,
        used: Consumption,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .seed
            .key(self.budget_key(key))
            .arg(used.tokens)
            .arg(used.micros)
            .arg(secs(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
