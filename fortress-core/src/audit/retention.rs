//! Retention per tier: events older than the tier's promise (SOHO 90 days, Bank one year,
//! Zero Trust seven years) are permanently deleted, down to a checkpoint boundary, and
//! the checkpoint there stays as the anchor, so the remaining chain still verifies.
//!
//! ```
//! use chrono::{Duration, Utc};
//! use fortress_core::audit::retention::cutoff_for;
//! use fortress_core::tier::Tier;
//!
//! let now = Utc::now();
//! assert_eq!(now - cutoff_for(Tier::Soho, now), Duration::days(90));
//! ```

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::task::JoinHandle;

use super::SubjectRef;
use super::store::{AuditStore, PurgeReport, StoreError};
use crate::subject::SubjectKind;
use crate::tier::Tier;

/// The oldest instant a tier still keeps at `now`.
pub fn cutoff_for(tier: Tier, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(i64::from(tier.audit_retention_days()))
}

/// The actor recorded for purges the gateway runs on its own schedule.
pub fn system_actor() -> SubjectRef {
    SubjectRef {
        id: "fortress".into(),
        kind: SubjectKind::App,
    }
}

/// Purges what `tier` no longer keeps at `now`, recording the purge as `actor`.
pub async fn purge_expired(
    store: &dyn AuditStore,
    tier: Tier,
    now: DateTime<Utc>,
    actor: SubjectRef,
) -> Result<PurgeReport, StoreError> {
    store.purge_before(cutoff_for(tier, now), actor).await
}

/// Runs [`purge_expired`] for `tier` now and then every `every`, as the gateway's own
/// [`system_actor`], until the task is aborted. A failed purge is logged and retried at
/// the next tick (the events stay, so nothing is lost by retrying).
pub fn spawn_retention(
    store: Arc<dyn AuditStore>,
    tier: Tier,
    every: std::time::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match purge_expired(store.as_ref(), tier, Utc::now(), system_actor()).await {
                Ok(report) if report.deleted_events > 0 => tracing::info!(
                    tier = %tier,
                    deleted_events = report.deleted_events,
                    anchor = report.anchor,
                    "audit retention purge"
                ),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, tier = %tier, "audit retention purge failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::audit::checkpoint::Checkpoint;
    use crate::audit::query::{AuditPage, AuditQuery};
    use crate::audit::row::{EncodedEvent, StoredEvent};
    use crate::audit::store::AppendReceipt;

    #[derive(Default)]
    struct Cutoffs(Mutex<Vec<DateTime<Utc>>>, tokio::sync::Notify);

    #[async_trait]
    impl AuditStore for Cutoffs {
        async fn append(&self, _: Vec<EncodedEvent>, _: bool) -> Result<AppendReceipt, StoreError> {
            Err(StoreError::ReadOnly)
        }
        async fn events_after(&self, _: u64, _: u32) -> Result<Vec<StoredEvent>, StoreError> {
            Ok(Vec::new())
        }
        async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
            Ok(Vec::new())
        }
        async fn query(&self, _: &AuditQuery) -> Result<AuditPage, StoreError> {
            Err(StoreError::ReadOnly)
        }
        async fn purge_before(
            &self,
            cutoff: DateTime<Utc>,
            actor: SubjectRef,
        ) -> Result<PurgeReport, StoreError> {
            assert_eq!(actor, system_actor());
            self.0.lock().unwrap().push(cutoff);
            self.1.notify_one();
            Ok(PurgeReport::default())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_purges_at_the_tier_cutoff_on_every_tick() {
        let store = Arc::new(Cutoffs::default());
        let task = spawn_retention(
            store.clone(),
            Tier::Bank,
            std::time::Duration::from_secs(3600),
        );
        for _ in 0..3 {
            store.1.notified().await;
        }
        task.abort();
        let cutoffs = store.0.lock().unwrap().clone();
        assert!(cutoffs.len() >= 3);
        let age = Utc::now() - cutoffs[0];
        assert!(
            age >= Duration::days(365) && age < Duration::days(366),
            "{age}"
        );
    }
}
