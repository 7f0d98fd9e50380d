//! Metering: what each settled call consumed, per key, user, team and model per day.
//!
//! [`Metering::record`] only adds to an in-memory aggregate (one map entry per row, not
//! per call), so the request path never waits on a database. A background task writes
//! the aggregate to the [`MeterStore`] every flush interval, in one transaction; when the
//! write fails the rows go back into the aggregate and are retried, with an error logged
//! and `fortress_pat_meter_flush_failures_total` counted — nothing is dropped silently.
//! Reads merge the store with what is not yet written, so figures are exact at any time.
//! Call [`Metering::flush`] before the process exits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Notify, RwLock};

use super::rules::Principal;
use super::store::BudgetKey;
use crate::api::Usage;

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

impl MeterRow {
    /// One request's usage and cost.
    pub fn of(usage: &Usage, cost_micros: u64) -> Self {
        Self {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            cost_micros,
        }
    }

    /// Adds another row.
    pub fn add(&mut self, other: &MeterRow) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cost_micros += other.cost_micros;
    }

    /// All tokens, as budgets count them.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
    }
}

/// Who created a Message Batch, and the reservation its creation holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOwner {
    /// The creator.
    pub principal: Principal,
    /// The creating call's request id (names the reservation).
    pub request_id: String,
    /// The budget counters reserved, in the order of the creating call's demand.
    pub budgets: Vec<BudgetKey>,
}

/// Why metering could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeterError {
    /// The database failed.
    #[error("metering store unavailable")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The configuration names no usable store.
    #[error("metering store: {0}")]
    Config(String),
}

/// Where metering rows are kept.
#[async_trait]
pub trait MeterStore: Send + Sync + 'static {
    /// Adds every row (a delta) to the stored totals, all or nothing.
    async fn add(&self, rows: &[(MeterKey, MeterRow)]) -> Result<(), MeterError>;

    /// The rows whose day lies in `first..=last` (`YYYY-MM-DD`).
    async fn rows(&self, first: &str, last: &str) -> Result<Vec<(MeterKey, MeterRow)>, MeterError>;

    /// Marks a Message Batch's results as metered: `true` the first time only.
    async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError>;

    /// Remembers who created a Message Batch and what it reserved (its usage is theirs).
    async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError>;

    /// Who created a Message Batch, if it was created through this gateway.
    async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError>;
}

#[async_trait]
impl<T: MeterStore + ?Sized> MeterStore for Arc<T> {
    async fn add(&self, rows: &[(MeterKey, MeterRow)]) -> Result<(), MeterError> {
        (**self).add(rows).await
    }
    async fn rows(&self, first: &str, last: &str) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        (**self).rows(first, last).await
    }
    async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError> {
        (**self).claim_batch(batch).await
    }
    async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError> {
        (**self).set_batch_owner(batch, owner).await
    }
    async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError> {
        (**self).batch_owner(batch).await
    }
}

/// Metering kept in memory (lost at exit): for tests and embedding without a data dir.
#[derive(Default)]
pub struct MemoryMeterStore {
    rows: Mutex<HashMap<MeterKey, MeterRow>>,
    batches: Mutex<std::collections::HashSet<String>>,
    owners: Mutex<HashMap<String, BatchOwner>>,
}

#[async_trait]
impl MeterStore for MemoryMeterStore {
    async fn add(&self, rows: &[(MeterKey, MeterRow)]) -> Result<(), MeterError> {
        let mut stored = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for (key, row) in rows {
            stored.entry(key.clone()).or_default().add(row);
        }
        Ok(())
    }

    async fn rows(&self, first: &str, last: &str) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        let stored = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        Ok(stored
            .iter()
            .filter(|(k, _)| k.day.as_str() >= first && k.day.as_str() <= last)
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }

    async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError> {
        Ok(self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(batch.to_owned()))
    }

    async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError> {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(batch.to_owned(), owner.clone());
        Ok(())
    }

    async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError> {
        Ok(self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(batch)
            .cloned())
    }
}

/// Distinct rows pending before the writer is woken early.
const EAGER_ROWS: usize = 1024;

struct Inner {
    store: Arc<dyn MeterStore>,
    pending: Mutex<HashMap<MeterKey, MeterRow>>,
    /// Held for writing while a flush moves rows from `pending` to the store, so a read
    /// never sees a row in neither or in both.
    gate: RwLock<()>,
    wake: Notify,
}

/// The write-behind buffer in front of a [`MeterStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Metering {
    inner: Arc<Inner>,
}

impl Metering {
    /// Meters into `store`, written every `interval` by a background task (started when
    /// called inside a Tokio runtime; otherwise rows are written on [`flush`](Self::flush)
    /// and reads).
    pub fn new(store: Arc<dyn MeterStore>, interval: Duration) -> Self {
        let inner = Arc::new(Inner {
            store,
            pending: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            wake: Notify::new(),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(writer(Arc::downgrade(&inner), interval));
        }
        Self { inner }
    }

    /// Metering in memory only.
    pub fn in_memory() -> Self {
        Self::new(
            Arc::new(MemoryMeterStore::default()),
            Duration::from_secs(1),
        )
    }

    /// The store behind the buffer.
    pub fn store(&self) -> &Arc<dyn MeterStore> {
        &self.inner.store
    }

    /// Adds a row to the aggregate (never blocks on I/O).
    pub fn record(&self, key: MeterKey, row: MeterRow) {
        let len = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.entry(key).or_default().add(&row);
            pending.len()
        };
        if len >= EAGER_ROWS {
            self.inner.wake.notify_one();
        }
    }

    /// Writes everything pending; on failure it stays pending.
    pub async fn flush(&self) -> Result<(), MeterError> {
        flush(&self.inner).await
    }

    /// Stored and pending rows for days in `first..=last`, sorted.
    pub async fn rows(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        let _gate = self.inner.gate.read().await;
        let mut merged: BTreeMap<MeterKey, MeterRow> = self
            .inner
            .store
            .rows(first, last)
            .await?
            .into_iter()
            .collect();
        let pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, row) in pending.iter() {
            if key.day.as_str() >= first && key.day.as_str() <= last {
                merged.entry(key.clone()).or_default().add(row);
            }
        }
        Ok(merged.into_iter().collect())
    }
}

async fn flush(inner: &Inner) -> Result<(), MeterError> {
    let _gate = inner.gate.write().await;
    let rows: Vec<(MeterKey, MeterRow)> = {
        let mut pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    };
    if rows.is_empty() {
        return Ok(());
    }
    if let Err(error) = inner.store.add(&rows).await {
        // Put them back: the next flush retries them together with newer rows.
        let mut pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, row) in rows {
            pending.entry(key).or_default().add(&row);
        }
        return Err(error);
    }
    metrics::counter!("fortress_pat_meter_rows_written_total").increment(rows.len() as u64);
    Ok(())
}

/// The background writer. It holds the buffer while it waits, so after the [`Metering`]
/// is dropped it writes what is still pending once more, then ends.
async fn writer(inner: Weak<Inner>, interval: Duration) {
    loop {
        let Some(notified) = inner.upgrade() else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = notified.wake.notified() => {}
        }
        if let Err(error) = flush(&notified).await {
            tracing::error!(%error, "metering write failed; rows kept and retried");
            metrics::counter!("fortress_pat_meter_flush_failures_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(day: &str) -> MeterKey {
        MeterKey {
            day: day.into(),
            workspace: "acme".into(),
            key: "k".into(),
            user: "alice".into(),
            team: String::new(),
            model: "m".into(),
        }
    }

    /// Fails the first `n` writes.
    struct Flaky {
        failures: Mutex<u32>,
        inner: MemoryMeterStore,
    }

    #[async_trait]
    impl MeterStore for Flaky {
        async fn add(&self, rows: &[(MeterKey, MeterRow)]) -> Result<(), MeterError> {
            {
                let mut left = self.failures.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(MeterError::Config("down".into()));
                }
            }
            self.inner.add(rows).await
        }
        async fn rows(
            &self,
            first: &str,
            last: &str,
        ) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
            self.inner.rows(first, last).await
        }
        async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError> {
            self.inner.claim_batch(batch).await
        }
        async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError> {
            self.inner.set_batch_owner(batch, owner).await
        }
        async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError> {
            self.inner.batch_owner(batch).await
        }
    }

    #[tokio::test]
    async fn a_failed_write_keeps_the_rows_for_the_next_one() {
        let store = Arc::new(Flaky {
            failures: Mutex::new(1),
            inner: MemoryMeterStore::default(),
        });
        let metering = Metering::new(store.clone(), Duration::from_secs(3600));
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 4,
            ..Usage::default()
        };
        metering.record(key("2026-11-30"), MeterRow::of(&usage, 10));
        metering.record(key("2026-11-30"), MeterRow::of(&usage, 10));
        assert!(metering.flush().await.is_err());
        // Nothing was written, nothing was lost.
        assert!(
            store
                .inner
                .rows("2026-11-01", "2026-11-30")
                .await
                .unwrap()
                .is_empty()
        );
        let rows = metering.rows("2026-11-01", "2026-11-30").await.unwrap();
        assert_eq!(rows[0].1.requests, 2);
        metering.flush().await.unwrap();
        let stored = store.inner.rows("2026-11-01", "2026-11-30").await.unwrap();
        assert_eq!(stored[0].1.requests, 2);
        assert_eq!(stored[0].1.cost_micros, 20);
        // Reads do not count written rows twice, and filter by day.
        let rows = metering.rows("2026-11-30", "2026-11-30").await.unwrap();
        assert_eq!(rows[0].1.tokens(), 14);
        assert!(
            metering
                .rows("2026-12-01", "2026-12-31")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
