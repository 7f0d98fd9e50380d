//! The deployment's audit settings (the `[audit]` section of both binaries) and opening
//! the default trail with them: SQLite in the data directory, signed checkpoints,
//! external anchoring, and the group-committing sink.
//!
//! ```
//! let settings: fortress_core::audit::settings::AuditSettings = toml::from_str(r#"
//!     durability = "process_crash"
//!     when_full = "fail_closed"
//!     redacted_arguments = ["acme"]
//! "#).unwrap();
//! assert!(settings.records_redacted_arguments("acme"));
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::anchor::{AnchoredStore, FileAnchor, default_anchor_path};
use super::keys::KeyProvider;
use super::sink::{Acknowledge, DurableAuditSink, SinkConfig, WhenFull};
use super::store::{
    AuditStore, PostgresAuditStore, SqliteAuditStore, SqliteDurability, StoreError,
};

/// `[audit]` settings shared by both binaries. Every field has a safe default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// What an acknowledged event survives: `power_loss` (default) or `process_crash`.
    pub durability: SqliteDurability,
    /// When the queue is full: `backpressure` (default, callers wait) or `fail_closed`
    /// (the call is refused at once).
    pub when_full: WhenFull,
    /// When a governed call's event counts as recorded: `durable` (default) or `queued`
    /// (explicitly weaker; see [`Acknowledge::Queued`]).
    pub acknowledge: Acknowledge,
    /// Where checkpoints are anchored (default: [`default_anchor_path`]).
    pub anchor_file: Option<PathBuf>,
    /// Publish checkpoints to the anchor file (default true).
    pub anchor: bool,
    /// Workspaces whose tool arguments are recorded, redacted, beside their keyed digest.
    /// Every other workspace's arguments appear only as the digest.
    pub redacted_arguments: BTreeSet<String>,
}

impl AuditSettings {
    /// The sink settings these imply.
    pub fn sink_config(&self) -> SinkConfig {
        SinkConfig {
            when_full: self.when_full,
            acknowledge: self.acknowledge,
            ..SinkConfig::default()
        }
    }

    /// The anchor file for `data_dir`, unless anchoring is off.
    pub fn anchor_path(&self, data_dir: &Path) -> Option<PathBuf> {
        self.anchor.then(|| {
            self.anchor_file
                .clone()
                .unwrap_or_else(|| default_anchor_path(data_dir))
        })
    }

    /// Whether `workspace` opted in to redacted arguments.
    pub fn records_redacted_arguments(&self, workspace: &str) -> bool {
        self.redacted_arguments.contains(workspace)
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            durability: SqliteDurability::default(),
            when_full: WhenFull::default(),
            acknowledge: Acknowledge::default(),
            anchor_file: None,
            anchor: true,
            redacted_arguments: BTreeSet::new(),
        }
    }
}

/// The trail opened by [`open_trail`].
pub struct OpenedTrail {
    /// The store (anchored when anchoring is on), for queries, the dashboard and verify.
    pub store: Arc<dyn AuditStore>,
    /// The sink gateways record into.
    pub sink: Arc<DurableAuditSink>,
}

/// Opens `audit.sqlite3` in `data_dir` with `settings`, signing with `signer` (without
/// one the store is read-only), anchoring checkpoints, and starts the sink on the current
/// tokio runtime.
pub async fn open_trail(
    data_dir: &Path,
    signer: Option<Arc<dyn KeyProvider>>,
    settings: &AuditSettings,
) -> Result<OpenedTrail, StoreError> {
    let mut sqlite = SqliteAuditStore::open_in_with(data_dir, settings.durability).await?;
    if let Some(signer) = signer {
        sqlite = sqlite.with_signer(signer);
    }
    let store: Arc<dyn AuditStore> = match settings.anchor_path(data_dir) {
        Some(path) => Arc::new(AnchoredStore::new(
            Arc::new(sqlite),
            Arc::new(FileAnchor::new(path)),
        )),
        None => Arc::new(sqlite),
    };
    let sink = Arc::new(DurableAuditSink::start(
        store.clone(),
        settings.sink_config(),
    ));
    Ok(OpenedTrail { store, sink })
}

/// Opens the trail replicas share in the PostgreSQL `pool`, signing with `signer`, and
/// starts the sink with `settings`' queue policy and acknowledgement (durability and
/// anchoring are the SQLite trail's settings; PostgreSQL's commit guarantees apply).
pub async fn open_shared_trail(
    pool: sqlx::PgPool,
    signer: Option<Arc<dyn KeyProvider>>,
    settings: &AuditSettings,
) -> Result<OpenedTrail, StoreError> {
    let mut postgres = PostgresAuditStore::from_pool(pool).await?;
    if let Some(signer) = signer {
        postgres = postgres.with_signer(signer);
    }
    let store: Arc<dyn AuditStore> = Arc::new(postgres);
    let sink = Arc::new(DurableAuditSink::start(
        store.clone(),
        settings.sink_config(),
    ));
    Ok(OpenedTrail { store, sink })
}
