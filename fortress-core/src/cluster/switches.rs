//! Kill switches shared by replicas: a table in the shared database (the source of
//! truth), announcements on the bus, and the follower that mirrors the table into each
//! replica's [`KillSwitch`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::cluster::switches::SharedSwitches;
//! use fortress_core::db::Database;
//! use fortress_core::guard::{KillSwitch, KillTarget};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let db = Database::sqlite_memory().await.unwrap();
//! let shared = SharedSwitches::open(db, None).await.unwrap();
//! let here = KillSwitch::new(Arc::new(MemoryAuditSink::new()));
//! let there = KillSwitch::new(Arc::new(MemoryAuditSink::new()));
//! let ops = Subject::user("ops", WorkspaceId::new("acme"));
//! shared.engage(&here, KillTarget::connector("zendesk"), &ops, "incident 7").await.unwrap();
//! // Another replica catches up from the table (at once when the bus announced it).
//! shared.sync(&there).await.unwrap();
//! assert!(there.is_engaged(&KillTarget::connector("zendesk")));
//! # });
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};

use super::{Change, ChangeHandler, ClusterBus};
use crate::db::Database;
use crate::guard::kill_switch::{Engagement, KillSwitch, KillSwitchError, KillTarget};
use crate::on_database;
use crate::subject::Subject;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fortress_kill_switches (
    target     TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    engaged_by TEXT NOT NULL,
    since_ms   BIGINT NOT NULL
)";

/// Why a shared kill-switch operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedSwitchError {
    /// The database failed.
    #[error("kill switch table unavailable")]
    Database(#[from] sqlx::Error),
    /// A stored row is unreadable.
    #[error("kill switch row {0:?} is malformed")]
    Malformed(String),
    /// The local switch refused (for example the change could not be audited).
    #[error(transparent)]
    Switch(#[from] KillSwitchError),
}

/// The kill-switch table and the bus that announces its changes.
#[derive(Clone, Debug)]
pub struct SharedSwitches {
    db: Database,
    bus: Option<ClusterBus>,
}

impl SharedSwitches {
    /// Opens the table in `db` (creating it if needed); changes are announced on `bus`.
    pub async fn open(db: Database, bus: Option<ClusterBus>) -> Result<Self, SharedSwitchError> {
        db.migrate("fortress_kill_switches", SCHEMA).await?;
        Ok(Self { db, bus })
    }

    /// Every engaged switch, as stored.
    pub async fn load(&self) -> Result<Vec<(KillTarget, Engagement)>, SharedSwitchError> {
        let rows: Vec<(String, String, String, String, i64)> = on_database!(&self.db, pool =>
            sqlx::query_as(
                "SELECT target, spec, reason, engaged_by, since_ms FROM fortress_kill_switches ORDER BY target",
            )
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(|(key, spec, reason, by, since)| {
                let target: KillTarget = serde_json::from_str(&spec)
                    .map_err(|_| SharedSwitchError::Malformed(key.clone()))?;
                let since = Utc
                    .timestamp_millis_opt(since)
                    .single()
                    .ok_or_else(|| SharedSwitchError::Malformed(key.clone()))?;
                Ok((target, Engagement { reason, by, since }))
            })
            .collect()
    }

    /// Engages `target` on `local` (audited there), stores it and announces it.
    pub async fn engage(
        &self,
        local: &KillSwitch,
        target: KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<(), SharedSwitchError> {
        // An engage stays in force even when it could not be audited: store it anyway.
        let audited = local.engage(target.clone(), actor, reason).await;
        let engagement = local
            .engaged()
            .into_iter()
            .find(|(t, _)| *t == target)
            .map(|(_, e)| e)
            .ok_or(KillSwitchError::Poisoned)?;
        self.store(&target, &engagement).await?;
        self.announce().await;
        Ok(audited?)
    }

    /// Releases `target` on `local` (audited first), removes it and announces it; returns
    /// whether it was engaged anywhere.
    pub async fn release(
        &self,
        local: &KillSwitch,
        target: &KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<bool, SharedSwitchError> {
        // Make the local view current so the release is audited even when another replica
        // engaged the switch.
        self.sync(local).await?;
        let released = local.release(target, actor, reason).await?;
        let key = target.to_string();
        let deleted = on_database!(&self.db, pool =>
            sqlx::query("DELETE FROM fortress_kill_switches WHERE target = $1")
                .bind(&key)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
        self.announce().await;
        Ok(released || deleted > 0)
    }

    /// Makes `local` match the table once.
    pub async fn sync(&self, local: &KillSwitch) -> Result<(), SharedSwitchError> {
        local.mirror(self.load().await?)?;
        Ok(())
    }

    /// A [`ChangeHandler`] that keeps `local` in step with the table (for [`super::follow`]).
    pub fn follower(&self, local: Arc<KillSwitch>) -> Arc<dyn ChangeHandler> {
        Arc::new(Follower {
            shared: self.clone(),
            local,
        })
    }

    /// The bus, if any.
    pub fn bus(&self) -> Option<&ClusterBus> {
        self.bus.as_ref()
    }

    async fn store(
        &self,
        target: &KillTarget,
        engagement: &Engagement,
    ) -> Result<(), SharedSwitchError> {
        let spec = serde_json::to_string(target)
            .map_err(|_| SharedSwitchError::Malformed(target.to_string()))?;
        on_database!(&self.db, pool => sqlx::query(
            "INSERT INTO fortress_kill_switches (target, spec, reason, engaged_by, since_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target) DO UPDATE SET \
             spec = excluded.spec, reason = excluded.reason, engaged_by = excluded.engaged_by, \
             since_ms = excluded.since_ms",
        )
        .bind(target.to_string())
        .bind(spec)
        .bind(&engagement.reason)
        .bind(&engagement.by)
        .bind(engagement.since.timestamp_millis())
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    async fn announce(&self) {
        if let Some(bus) = &self.bus {
            bus.publish(&Change::KillSwitches).await;
        }
    }
}

struct Follower {
    shared: SharedSwitches,
    local: Arc<KillSwitch>,
}

impl Follower {
    async fn refresh(&self) {
        if let Err(error) = self.shared.sync(&self.local).await {
            // The switches in force stay as they are.
            tracing::error!(%error, "kill switch table unreadable; switches unchanged");
        }
    }
}

#[async_trait]
impl ChangeHandler for Follower {
    async fn on_change(&self, change: &Change) {
        if matches!(change, Change::KillSwitches | Change::Resync) {
            self.refresh().await;
        }
    }

    async fn on_poll(&self) {
        self.refresh().await;
    }
}
