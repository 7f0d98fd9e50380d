//! The admin dashboard mounted in PAT Fortress: the `[admin]` section and the assembly of
//! the shared [`AdminServer`] over the gateway's own stores.
//!
//! ```toml
//! [admin]
//! # listen = "127.0.0.1:8081"   # its own listener; omitted: the gateway's, under `path`
//! path = "/admin"
//! owner = "owner"               # created with a random password (printed once) on first start
//! workspace = "default"         # the workspace admin events and credentials belong to
//! ```
//!
//! The gateway's audit sink becomes the embedded durable store observed by the dashboard
//! (Status Board, live Traffic Feed, `/metrics`), and its guard consults the kill switch
//! the dashboard flips.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use fortress_core::audit::settings::AuditSettings;
use fortress_core::admin::api::AdminState;
use fortress_core::admin::embedded::{EmbedError, EmbeddedAdmin};
use fortress_core::admin::policy_editor::PolicyEditor;
use fortress_core::admin::{AdminServer, bootstrap_owner};
use fortress_core::audit::{AuditSink, DurableAuditSink};
use fortress_core::guard::KillSwitch;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::Vault;
use serde::Deserialize;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fortress_core::admin::billing::{Money, UsageLine};
use fortress_core::admin::sources::{SourceError, UsageSource};

use crate::admin_keys::PatKeyDirectory;
use crate::keys::KeyStore;
use crate::limits::Ledger;

/// The `[admin]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Its own listener; when absent the dashboard answers under `path` on the gateway's.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The path prefix on the gateway's listener.
    #[serde(default = "default_path")]
    pub path: String,
    /// The owner account created on first start.
    #[serde(default = "default_owner")]
    pub owner: String,
    /// The workspace admin events and managed credentials belong to.
    #[serde(default = "default_workspace")]
    pub workspace: String,
    /// Whether `/metrics` answers without logging in.
    #[serde(default = "default_true")]
    pub open_metrics: bool,
}

fn default_path() -> String {
    "/admin".into()
}
fn default_owner() -> String {
    "owner".into()
}
fn default_workspace() -> String {
    "default".into()
}
fn default_true() -> bool {
    true
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: None,
            path: default_path(),
            owner: default_owner(),
            workspace: default_workspace(),
            open_metrics: true,
        }
    }
}

/// Why the dashboard could not be mounted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The embedded stores could not be opened.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The owner account could not be created.
    #[error("owner account: {0}")]
    Owner(String),
}

/// The dashboard's side of a PAT gateway, and what the gateway must share with it.
pub struct PatDashboard {
    /// The dashboard.
    pub server: AdminServer,
    /// The owner's password when the account was just created (show it once).
    pub owner_password: Option<Secret>,
    /// The owner account's name.
    pub owner: String,
    /// The audit sink the gateway's stack records into.
    pub audit: Arc<dyn AuditSink>,
    /// The kill switch the gateway's guard consults.
    pub kill_switch: Arc<KillSwitch>,
    /// The durable sink underneath (flush and shut down at exit).
    pub durable: Arc<DurableAuditSink>,
    /// Where it is mounted.
    pub section: AdminSection,
}

/// What the dashboard manages in a PAT gateway.
#[derive(Clone)]
pub struct PatManaged {
    /// The gateway keys.
    pub keys: KeyStore,
    /// The vault of Anthropic keys.
    pub vault: Arc<dyn Vault>,
    /// The policy editor, when the policy is a Cedar set.
    pub policy: Option<Arc<PolicyEditor>>,
    /// Whether the dashboard is served over TLS (cookies marked `Secure`).
    pub tls: bool,
    /// The ledger whose metering is the Billing page's Claude usage.
    pub ledger: Option<Arc<Ledger>>,
}

/// Claude usage for the Billing page, from the ledger's daily metering (kept in memory
/// since the gateway started).
pub struct LedgerUsage(pub Arc<Ledger>);

#[async_trait]
impl UsageSource for LedgerUsage {
    async fn usage(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<UsageLine>, SourceError> {
        // Metering is per UTC day (`YYYY-MM-DD`), so whole days inside the period count.
        let first = from.format("%Y-%m-%d").to_string();
        let last = (until - chrono::Duration::microseconds(1))
            .format("%Y-%m-%d")
            .to_string();
        Ok(self
            .0
            .meter()
            .into_iter()
            .filter(|(key, _)| key.day >= first && key.day <= last)
            .map(|(key, row)| UsageLine {
                user: key.user,
                team: Some(key.team).filter(|t| !t.is_empty()),
                model: key.model,
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
                cache_creation_tokens: row.cache_creation_input_tokens,
                cache_read_tokens: row.cache_read_input_tokens,
                cost: Money::from_micros(i64::try_from(row.cost_micros).unwrap_or(i64::MAX)),
            })
            .collect())
    }
}

/// Gives a dashboard's `state` the PAT gateway's keys, vault, policy editor and Claude
/// usage — also for a dashboard shared with other gateways.
pub fn manage(state: AdminState, managed: PatManaged) -> AdminState {
    let mut state = state
        .with_vault(managed.vault)
        .with_keys(Arc::new(PatKeyDirectory::new(managed.keys)));
    if let Some(editor) = managed.policy {
        state = state.with_policy_editor(editor);
    }
    if let Some(ledger) = managed.ledger {
        state = state.with_usage(Arc::new(LedgerUsage(ledger)));
    }
    state.secure_cookies = managed.tls;
    state
}

/// Opens the embedded admin stores in `data_dir` and assembles the dashboard.
pub async fn mount(
    data_dir: &Path,
    section: AdminSection,
    managed: PatManaged,
) -> Result<PatDashboard, DashboardError> {
    mount_with(data_dir, section, managed, &AuditSettings::default()).await
}

/// Like [`mount`], with the deployment's `[audit]` settings.
pub async fn mount_with(
    data_dir: &Path,
    section: AdminSection,
    managed: PatManaged,
    audit: &AuditSettings,
) -> Result<PatDashboard, DashboardError> {
    let embedded = EmbeddedAdmin::open_with(
        data_dir,
        WorkspaceId::new(section.workspace.clone()),
        audit,
    )
    .await?;
    let mut state = manage(embedded.state, managed);
    state.open_metrics = section.open_metrics;
    let owner_password = bootstrap_owner(&state.accounts, &section.owner)
        .await
        .map_err(|e| DashboardError::Owner(e.to_string()))?;
    Ok(PatDashboard {
        server: AdminServer::new(state),
        owner_password,
        owner: section.owner.clone(),
        audit: embedded.audit,
        kill_switch: embedded.kill_switch,
        durable: embedded.durable,
        section,
    })
}
