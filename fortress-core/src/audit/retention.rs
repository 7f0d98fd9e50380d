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

use chrono::{DateTime, Duration, Utc};

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
