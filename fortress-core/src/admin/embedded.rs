//! The dashboard over the embedded default storage, opened the same way by both binaries.
//!
//! In one data directory: admin accounts (`admin.sqlite3`), the hash-chained audit store
//! (`audit.sqlite3`, checkpoints signed with the deployment's audit key), and the engaged
//! kill switches (`kill_switches.json`). [`EmbeddedAdmin::open`] returns the sink the
//! gateway's stack must record into (the durable sink, observed by the Status Board, the
//! Traffic Feed and `/metrics`) and the kill switch its guard must consult.
//!
//! [`EmbeddedAdmin::open_shared`] opens the same dashboard over the PostgreSQL database
//! replicas share: accounts and sessions, the audit trail and the kill switches live
//! there (a login on one replica is valid on all; a switch flipped on one stops all).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::accounts::{AccountError, AccountStore};
use super::api::AdminState;
use super::switches::{BoardError, KillSwitchBoard};
use crate::audit::keys::{Ed25519KeyProvider, KeyError, default_key_path};
use crate::audit::settings::{AuditSettings, OpenedTrail, open_shared_trail, open_trail};
use crate::audit::store::StoreError;
use crate::audit::{AuditSink, DurableAuditSink};
use crate::cluster::switches::{SharedSwitchError, SharedSwitches};
use crate::cluster::{ClusterBus, follow};
use crate::db::Database;
use crate::guard::KillSwitch;
use crate::subject::WorkspaceId;

/// The workspace of both products' demos: one name, so a dashboard watching both gateways
/// counts the same users for billing and its workspace kill switch stops both.
pub const DEMO_WORKSPACE: &str = "demo";

/// The file of engaged kill switches in the data directory.
pub const KILL_SWITCH_FILE: &str = "kill_switches.json";
/// The admin accounts database in the data directory.
pub const ACCOUNTS_FILE: &str = "admin.sqlite3";

/// Why the embedded storage could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The data directory could not be created.
    #[error("data directory cannot be created")]
    DataDir(#[source] std::io::Error),
    /// The audit signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The audit store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account store failed to open.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The kill switch state could not be restored.
    #[error(transparent)]
    KillSwitch(#[from] BoardError),
    /// The shared kill-switch table could not be opened.
    #[error(transparent)]
    SharedSwitches(#[from] SharedSwitchError),
    /// The shared database is not PostgreSQL.
    #[error("the shared database must be PostgreSQL")]
    NotShared,
}

/// What a gateway takes from a dashboard that may watch several gateways: the sink its
/// stack records into (durable, observed by the dashboard) and the kill switch its guard
/// consults. The one who opened the [`EmbeddedAdmin`] flushes and shuts the sink down.
#[derive(Clone)]
pub struct SharedAdmin {
    /// The sink for the gateway's stack.
    pub audit: Arc<dyn AuditSink>,
    /// The kill switch for the gateway's guard.
    pub kill_switch: Arc<KillSwitch>,
}

impl std::fmt::Debug for SharedAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAdmin").finish_non_exhaustive()
    }
}

/// The dashboard's state and what the gateway must share with it.
pub struct EmbeddedAdmin {
    /// The dashboard's state (store, kill switches and activity set).
    pub state: AdminState,
    /// The sink for the gateway's stack: durable, and observed by the dashboard.
    pub audit: Arc<dyn AuditSink>,
    /// The kill switch for the gateway's guard (the one the dashboard flips).
    pub kill_switch: Arc<KillSwitch>,
    /// The durable sink underneath, to flush and shut down at exit.
    pub durable: Arc<DurableAuditSink>,
    /// Background tasks (the kill-switch follower of a shared deployment); abort at exit.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The shared state a replicated deployment's dashboard opens over.
#[derive(Clone, Debug)]
pub struct SharedDeployment {
    /// The PostgreSQL database every replica shares.
    pub database: Database,
    /// The change bus (Redis), if configured.
    pub bus: Option<ClusterBus>,
    /// How often the shared kill switches are re-read without announcements.
    pub poll: Duration,
}

impl EmbeddedAdmin {
    /// Opens (creating if needed) the embedded stores in `data_dir`; admin events belong
    /// to `workspace`.
    pub async fn open(data_dir: &Path, workspace: WorkspaceId) -> Result<Self, EmbedError> {
        Self::open_with(data_dir, workspace, &AuditSettings::default()).await
    }

    /// Like [`open`](Self::open), with the deployment's `[audit]` settings (durability,
    /// full-queue policy, acknowledgement, checkpoint anchor).
    pub async fn open_with(
        data_dir: &Path,
        workspace: WorkspaceId,
        audit_settings: &AuditSettings,
    ) -> Result<Self, EmbedError> {
        std::fs::create_dir_all(data_dir).map_err(EmbedError::DataDir)?;
        let signer = Ed25519KeyProvider::load_or_create(&default_key_path(data_dir))?;
        let OpenedTrail {
            store,
            sink: durable,
        } = open_trail(data_dir, Some(Arc::new(signer)), audit_settings).await?;
        let accounts = AccountStore::open(&data_dir.join(ACCOUNTS_FILE)).await?;
        let state = AdminState::new(accounts, durable.clone(), workspace).with_store(store);
        let audit = state.observe(durable.clone());
        let kill_switch = Arc::new(KillSwitch::new(audit.clone()));
        let board = KillSwitchBoard::open(kill_switch.clone(), &data_dir.join(KILL_SWITCH_FILE))?;
        let mut state = state.with_kill_switches(board);
        // Admin actions are observed too, so `/metrics` counts them.
        state.audit = audit.clone();
        Ok(Self {
            state,
            audit,
            kill_switch,
            durable,
            tasks: Vec::new(),
        })
    }

    /// Opens the dashboard over `shared` (accounts, audit trail, kill switches in the
    /// shared database); the audit signing key still comes from beside `data_dir`.
    /// Starts the follower that applies kill switches flipped on other replicas.
    pub async fn open_shared(
        data_dir: &Path,
        workspace: WorkspaceId,
        shared: SharedDeployment,
    ) -> Result<Self, EmbedError> {
        Self::open_shared_with(data_dir, workspace, shared, &AuditSettings::default()).await
    }

    /// Like [`open_shared`](Self::open_shared), with the deployment's `[audit]` settings
    /// (full-queue policy and acknowledgement; durability and anchoring are SQLite's).
    pub async fn open_shared_with(
        data_dir: &Path,
        workspace: WorkspaceId,
        shared: SharedDeployment,
        audit_settings: &AuditSettings,
    ) -> Result<Self, EmbedError> {
        std::fs::create_dir_all(data_dir).map_err(EmbedError::DataDir)?;
        let pool = shared
            .database
            .postgres_pool()
            .ok_or(EmbedError::NotShared)?
            .clone();
        let signer = Ed25519KeyProvider::load_or_create(&default_key_path(data_dir))?;
        let OpenedTrail {
            store,
            sink: durable,
        } = open_shared_trail(pool, Some(Arc::new(signer)), audit_settings).await?;
        let accounts = AccountStore::with_database(shared.database.clone()).await?;
        let state = AdminState::new(accounts, durable.clone(), workspace).with_store(store);
        let audit = state.observe(durable.clone());
        let kill_switch = Arc::new(KillSwitch::new(audit.clone()));
        let switches = SharedSwitches::open(shared.database, shared.bus.clone()).await?;
        let board = KillSwitchBoard::shared(kill_switch.clone(), switches.clone()).await?;
        let follower = follow(
            shared.bus.as_ref(),
            shared.poll,
            switches.follower(kill_switch.clone()),
        );
        let mut state = state.with_kill_switches(board);
        state.audit = audit.clone();
        Ok(Self {
            state,
            audit,
            kill_switch,
            durable,
            tasks: vec![follower],
        })
    }

    /// The pieces to hand to each gateway this dashboard watches.
    pub fn shared(&self) -> SharedAdmin {
        SharedAdmin {
            audit: self.audit.clone(),
            kill_switch: self.kill_switch.clone(),
        }
    }
}
