//! The storage seam of the ledger: where rate and budget state lives.
//!
//! The [`Ledger`](super::Ledger) works out *what* a call demands (which buckets, which
//! budgets, how much); a [`LimitStore`] decides atomically whether all of it fits and
//! takes it, then later replaces reservations by real usage. The in-process
//! [`MemoryLimitStore`](super::MemoryLimitStore) serves one gateway; the
//! [`RedisLimitStore`](super::RedisLimitStore) is shared by replicas.

use std::time::Duration;

use async_trait::async_trait;

use super::rules::{Scope, Window};

/// A per-minute rate dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Input tokens (estimated at admission).
    InputTokens,
    /// Output tokens (`max_tokens` at admission).
    OutputTokens,
}

impl Dimension {
    /// The dimension's name in `anthropic-ratelimit-*` headers and store keys.
    pub fn header(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::InputTokens => "input-tokens",
            Self::OutputTokens => "output-tokens",
        }
    }
}

/// One rate bucket: whose, which dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateKey {
    /// Scope.
    pub scope: Scope,
    /// Id within the scope.
    pub id: String,
    /// Dimension.
    pub dimension: Dimension,
}

/// One budget counter: whose, which window, which period of it.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct BudgetKey {
    /// Scope.
    pub scope: Scope,
    /// Id within the scope.
    pub id: String,
    /// Window.
    pub window: Window,
    /// Period (`YYYY-MM-DD` or `YYYY-MM`).
    pub period: String,
}

/// Tokens and micro-USD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consumption {
    /// Tokens (input of all kinds + output).
    pub tokens: u64,
    /// Micro-USD.
    pub micros: u64,
}

/// Take `amount` from a bucket that refills `per_minute` units per minute and holds one
/// minute's worth (GCRA with a burst of the full minute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateDemand {
    /// Bucket.
    pub key: RateKey,
    /// Refill per minute, and capacity.
    pub per_minute: u64,
    /// Units to take.
    pub amount: u64,
}

/// Reserve against a budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetDemand {
    /// Counter.
    pub key: BudgetKey,
    /// Token cap.
    pub max_tokens: Option<u64>,
    /// Micro-USD cap.
    pub max_micros: Option<u64>,
    /// What to reserve.
    pub reserve: Consumption,
    /// How long the counter must be kept (past the end of its period).
    pub ttl: Duration,
}

/// Everything one call demands, admitted all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// The call's request id: its reservations are released by the [`Settlement`] with
    /// the same id, once.
    pub request_id: String,
    /// How long the reservations hold if never settled (`None`: the store's default).
    pub lease: Option<Duration>,
    /// Rate buckets.
    pub rates: Vec<RateDemand>,
    /// Budgets.
    pub budgets: Vec<BudgetDemand>,
}

/// A bucket's state after an admission decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    /// Units left.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset_after: Duration,
}

/// Why a demand was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The budget at this index of [`Demand::budgets`] would be exceeded.
    Budget {
        /// Index.
        index: usize,
    },
    /// The bucket at this index of [`Demand::rates`] is the last to have room.
    Rate {
        /// Index.
        index: usize,
        /// When all buckets would have room.
        retry_after: Duration,
    },
}

/// The answer to a [`Demand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `None`: admitted and taken.
    pub refusal: Option<Refusal>,
    /// Each bucket of [`Demand::rates`], in order.
    pub rates: Vec<RateState>,
}

/// Gives rate units back (negative: takes more, when the estimate was low).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRefund {
    /// Bucket.
    pub key: RateKey,
    /// Its refill per minute.
    pub per_minute: u64,
    /// Units returned.
    pub refund: i64,
}

/// Releases the reservation the same request made against this budget (the `n`-th budget
/// of its [`Demand`] is the `n`-th here), if it still holds, and adds what was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSettlement {
    /// Counter.
    pub key: BudgetKey,
    /// What the call really used.
    pub used: Consumption,
    /// How long the counter must be kept.
    pub ttl: Duration,
}

/// The end of one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    /// The request id its [`Demand`] had (empty when nothing was reserved).
    pub request_id: String,
    /// Rate refunds.
    pub rates: Vec<RateRefund>,
    /// Budget reconciliations.
    pub budgets: Vec<BudgetSettlement>,
}

/// A budget counter's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUse {
    /// Settled usage.
    pub used: Consumption,
    /// Reserved by calls in flight.
    pub reserved: Consumption,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend (for example Redis) failed.
    #[error("limit store unavailable")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend answered something unexpected.
    #[error("limit store answered unexpectedly: {0}")]
    Protocol(String),
}

/// Where rate and budget state lives.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Checks every bucket and budget of `demand`; when all have room, takes from every
    /// bucket and reserves against every budget, atomically.
    async fn admit(&self, demand: &Demand) -> Result<Admission, StoreError>;

    /// Returns rate units and replaces reservations by usage (refund = zero usage).
    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError>;

    /// A budget counter's figures.
    async fn budget(&self, key: &BudgetKey) -> Result<BudgetUse, StoreError>;

    /// Sets a counter's settled usage after a restart, unless it is already known.
    async fn seed(
        &self,
        key: &BudgetKey,
        used: Consumption,
        ttl: Duration,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: LimitStore + ?Sized> LimitStore for std::sync::Arc<T> {
    async fn admit(&self, demand: &Demand) -> Result<Admission, StoreError> {
        (**self).admit(demand).await
    }
    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        (**self).settle(settlement).await
    }
    async fn budget(&self, key: &BudgetKey) -> Result<BudgetUse, StoreError> {
        (**self).budget(key).await
    }
    async fn seed(
        &self,
        key: &BudgetKey,
        used: Consumption,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        (**self).seed(key, used, ttl).await
    }
}
