//! Retention: archived calls are deleted once older than their workspace's tier keeps
//! them (SOHO 90 days, Bank one year, Zero Trust seven years), judged by the date in the
//! object key (`<workspace>/<YYYY-MM-DD>/…`), so a purge needs no object metadata and a
//! test can construct old dates.

use std::collections::HashMap;

use chrono::NaiveDate;
use fortress_core::tier::Tier;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use super::ArchiveError;

/// How long each workspace's archive is kept.
#[derive(Clone, Debug)]
pub struct Retention {
    /// The deployment's tier, for every workspace not listed.
    pub default: Tier,
    /// Workspaces on another tier.
    pub workspaces: HashMap<String, Tier>,
}

impl Retention {
    /// Every workspace on `tier`.
    pub fn new(tier: Tier) -> Self {
        Self {
            default: tier,
            workspaces: HashMap::new(),
        }
    }

    /// Days a workspace's calls are kept.
    pub fn days(&self, workspace: &str) -> u32 {
        self.workspaces
            .get(workspace)
            .copied()
            .unwrap_or(self.default)
            .audit_retention_days()
    }

    /// Whether a call archived on `day` has outlived its retention on `today`.
    pub fn expired(&self, workspace: &str, day: NaiveDate, today: NaiveDate) -> bool {
        (today - day).num_days() > i64::from(self.days(workspace))
    }
}

/// What a purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Day folders (`<workspace>/<date>`) removed.
    pub days: u64,
    /// Objects deleted.
    pub objects: u64,
}

/// Deletes every object whose day has outlived its workspace's retention on `today`.
/// Folders that are not dates are left alone.
pub async fn purge(
    store: &dyn ObjectStore,
    retention: &Retention,
    today: NaiveDate,
) -> Result<PurgeReport, ArchiveError> {
    let mut report = PurgeReport::default();
    let workspaces = store
        .list_with_delimiter(None)
        .await
        .map_err(ArchiveError::storage)?;
    for workspace in workspaces.common_prefixes {
        let Some(name) = workspace.filename().map(str::to_owned) else {
            continue;
        };
        let days = store
            .list_with_delimiter(Some(&workspace))
            .await
            .map_err(ArchiveError::storage)?;
        for day_prefix in days.common_prefixes {
            let Some(day) = day_prefix
                .filename()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            if !retention.expired(&name, day, today) {
                continue;
            }
            report.objects += delete_all(store, &day_prefix).await?;
            report.days += 1;
        }
    }
    Ok(report)
}

async fn delete_all(store: &dyn ObjectStore, prefix: &Path) -> Result<u64, ArchiveError> {
    let objects: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(ArchiveError::storage)?;
    let mut deleted = 0;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => return Err(ArchiveError::storage(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn tiers_keep_what_they_promise() {
        let mut retention = Retention::new(Tier::Soho);
        retention.workspaces.insert("bank".into(), Tier::Bank);
        retention.workspaces.insert("zt".into(), Tier::ZeroTrust);
        let today = day("2030-06-30");
        assert!(!retention.expired("acme", today - chrono::Days::new(90), today));
        assert!(retention.expired("acme", today - chrono::Days::new(91), today));
        assert!(!retention.expired("bank", today - chrono::Days::new(365), today));
        assert!(retention.expired("bank", today - chrono::Days::new(366), today));
        assert!(!retention.expired("zt", today - chrono::Days::new(7 * 365), today));
        assert!(retention.expired("zt", today - chrono::Days::new(7 * 365 + 1), today));
    }

    #[tokio::test]
    async fn purge_deletes_only_expired_days() {
        let store = InMemory::new();
        let keys = [
            "acme/2030-01-01/a.request",
            "acme/2030-01-01/a.response",
            "acme/2030-06-01/b.request",
            "bank/2030-01-01/c.request",
            "acme/not-a-date/d.request",
        ];
        for key in keys {
            store
                .put(&Path::from(key), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let mut retention = Retention::new(Tier::Soho);
        retention.workspaces.insert("bank".into(), Tier::Bank);
        let report = purge(&store, &retention, day("2030-06-30")).await.unwrap();
        assert_eq!(
            report,
            PurgeReport {
                days: 1,
                objects: 2
            }
        );
        let left: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let mut left = left;
        left.sort();
        assert_eq!(
            left,
            [
                "acme/2030-06-01/b.request",
                "acme/not-a-date/d.request",
                "bank/2030-01-01/c.request"
            ]
        );
    }
}
