//! The configuration file of `fortress-pat serve`, and the assembly of a gateway from it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = ".fortress-data/pat"
//!
//! [upstream]
//! base_url = "https://api.anthropic.com"
//!
//! [[credentials]]            # each workspace's Anthropic key, put in the vault at start
//! workspace = "acme"
//! env = "ANTHROPIC_API_KEY"
//!
//! [[policy.allow]]
//! principal = "anyone"       # or "group:NAME", "subject:ID"
//! action = "*"
//! resource = "model:claude-sonnet*"
//!
//! [[limits.budgets]]
//! scope = "user"
//! window = "day"
//! max_usd = 5.0
//!
//! [ledger]                   # where limits and metering live (defaults shown)
//! # database = "postgres://fortress@db/fortress"   # default: database_url, else SQLite data_dir/usage.db
//! # redis = "redis://127.0.0.1:6379"              # default: limits in this process
//! redis_prefix = "fortress:pat"
//! flush_interval_ms = 1000
//! reservation_lease_secs = 3600
//!
//! [vault]                    # persistent envelope vault in data_dir; the tier's keys
//! tier = "soho"
//! master_key_file = "/etc/fortress/master.key"   # else FORTRESS_MASTER_KEY
//!
//! [archive]                  # encrypted request/response archive (see docs/pat.md)
//! url = "s3://bucket/prefix" # default <data_dir>/archive
//!
//! [admin]                    # the dashboard, at /admin on the same listener
//! owner = "owner"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fortress_core::admin::archive::ArchiveReader;
use fortress_core::admin::embedded::{EmbeddedAdmin, SharedDeployment};
use fortress_core::admin::policy_editor::PolicyEditor;
use fortress_core::audit::AuditSink;
use fortress_core::audit::keys::{Ed25519KeyProvider, default_key_path};
use fortress_core::audit::settings::{AuditSettings, open_trail};
use fortress_core::cluster::policies::SharedPolicies;
use fortress_core::policy::{
    AllowListPolicy, AllowRule, CedarEngine, PolicyDocuments, PolicyEngine,
};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::tier::Tier;
use fortress_core::vault::cli::refuse_key_inside;
use fortress_core::vault::keys::{KeyFileProvider, KeyProvider, ManagedKeys};
use fortress_core::vault::store::PgStore;
use fortress_core::vault::{CredentialSlot, EnvelopeVault, Vault, VaultError};
use serde::Deserialize;

use crate::archive::{
    self, ArchiveError, ArchiveLocation, ArchiveOptions, ArchiveSealer, Archiver, Retention,
    S3Settings,
};
use crate::dashboard::{AdminSection, PatDashboard, PatManaged, mount_embedded};
use crate::keys::KeyStore;
use crate::limits::{
    Ledger, LimitStore, LimitsConfig, MemoryLimitStore, MeterStore, Metering, RedisLimitStore,
    SqlMeterStore,
};
use crate::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use crate::upstream::{Upstream, UpstreamConfig};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where keys, audit and the pepper live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// HTTPS (TLS 1.3) certificate and key.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The Claude API.
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// Anthropic keys per workspace.
    #[serde(default)]
    pub credentials: Vec<CredentialSource>,
    /// Policy.
    #[serde(default)]
    pub policy: PolicySection,
    /// Budgets, rate limits, prices.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Where rate limits, budgets and metering are kept.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// The persistent vault and the tier's keys.
    #[serde(default)]
    pub vault: VaultSection,
    /// The encrypted request/response archive (none: not archived).
    #[serde(default)]
    pub archive: Option<ArchiveSection>,
    /// The environment variable holding the key pepper (else `data_dir/pepper`).
    #[serde(default = "default_pepper_env")]
    pub pepper_env: String,
    /// The admin dashboard (none: not mounted).
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// A `postgres://` URL: the database replicas share for gateway keys and the
    /// dashboard's accounts, audit trail and kill switches (else files in `data_dir`).
    #[serde(default)]
    pub database_url: Option<String>,
    /// Replicas sharing `database_url`: the Redis change bus and the poll interval.
    #[serde(default)]
    pub cluster: fortress_core::cluster::ClusterSettings,
    /// The audit trail: durability, full-queue policy, acknowledgement, anchoring.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Serving threads: 0 (default) serves on the shared multi-thread runtime; N > 0 runs N
    /// single-threaded runtimes with `SO_REUSEPORT` listeners (`fortress_core::workers`).
    #[serde(default)]
    pub workers: fortress_core::workers::WorkerCount,
}

/// A policy engine and, when its documents are editable, the dashboard's editor of them.
type EngineAndEditor = (Arc<dyn PolicyEngine>, Option<Arc<PolicyEditor>>);

/// Where one store (`[ledger]`, `[vault]`) keeps its rows.
#[derive(Debug, PartialEq, Eq)]
enum StoreDatabase<'a> {
    /// The top-level `database_url`, over the one pool the other stores use.
    Shared,
    /// A database of its own (`postgres://…`).
    Own(&'a str),
    /// SQLite in the data directory.
    Embedded,
}

/// A gateway and, when `[admin]` is configured, its dashboard.
pub struct Gateway {
    /// The PAT service.
    pub service: PatService,
    /// The dashboard.
    pub dashboard: Option<PatDashboard>,
    /// The archive, when configured (its maintenance is the binary's to start).
    pub archive: Option<Archiver>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".fortress-data/pat")
}
fn default_pepper_env() -> String {
    "FORTRESS_PAT_PEPPER".into()
}

/// Where the ledger keeps its state.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// A `postgres://` URL for metering (default: the top-level `database_url`, else
    /// SQLite `usage.db` in the data directory).
    #[serde(default)]
    pub database: Option<String>,
    /// A `redis://` URL: rate limits and budget reservations shared by every replica
    /// using it (default: in this process).
    #[serde(default)]
    pub redis: Option<String>,
    /// The prefix of every Redis key.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// How often metering is written to the database.
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// With Redis: how long a budget reservation holds when its gateway dies before
    /// settling it (longer than any answer can stream).
    #[serde(default = "default_lease_secs")]
    pub reservation_lease_secs: u64,
}

fn default_redis_prefix() -> String {
    "fortress:pat".into()
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_lease_secs() -> u64 {
    3600
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            database: None,
            redis: None,
            redis_prefix: default_redis_prefix(),
            flush_interval_ms: default_flush_ms(),
            reservation_lease_secs: default_lease_secs(),
        }
    }
}

/// `[vault]`: the persistent envelope vault of Anthropic keys (SQLite `vault.sqlite3` in
/// the data directory, or PostgreSQL) and the tier whose keys protect it and the archive.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// `soho` (default: service-managed master key), `bank` or `zero_trust` (customer-held
    /// keys, one `<workspace>.key` file per workspace in `key_dir`).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// SOHO: file holding the master key (else the `FORTRESS_MASTER_KEY` variable). Never
    /// inside the data directory.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Bank and Zero Trust: the directory of customer key files. Never inside the data
    /// directory.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// A `postgres://` URL instead of SQLite (default: the top-level `database_url`, else
    /// SQLite).
    #[serde(default)]
    pub database_url: Option<String>,
}

/// `[archive]`: the encrypted request/response archive.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    /// `s3://bucket/prefix`, `file:///dir` or a directory (default `<data_dir>/archive`).
    #[serde(default)]
    pub url: Option<String>,
    /// S3-compatible endpoint (else `AWS_ENDPOINT` or AWS itself).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 region (else `AWS_DEFAULT_REGION`/`AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Environment variable holding the S3 access key id (else `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the S3 secret access key (else
    /// `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// A vault connector of the admin workspace (`[admin] workspace`, else `default`)
    /// holding the S3 keys as JSON `{"access_key_id": …, "secret_access_key": …}`;
    /// takes precedence over the environment.
    #[serde(default)]
    pub credentials_connector: Option<String>,
    /// Calls queued for the writers before hand-overs wait (default 4096).
    #[serde(default)]
    pub queue: Option<usize>,
    /// Where objects the store refuses are spooled, sealed (default
    /// `<data_dir>/archive-spool`).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Seconds between spool retries and retention purges (default 300).
    #[serde(default)]
    pub maintenance_secs: Option<u64>,
    /// Workspaces on another tier than the deployment's (`acme = "bank"`), for retention.
    #[serde(default)]
    pub workspace_tiers: std::collections::HashMap<String, Tier>,
}

/// S3 keys kept in the vault.
#[derive(Deserialize)]
struct VaultS3Keys {
    access_key_id: String,
    secret_access_key: String,
}

/// PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Upstream settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Base URL.
    #[serde(default = "default_base")]
    pub base_url: String,
    /// Connect timeout.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Response-head timeout.
    #[serde(default = "default_response")]
    pub response_timeout_secs: u64,
}

fn default_base() -> String {
    "https://api.anthropic.com".into()
}
fn default_connect() -> u64 {
    10
}
fn default_response() -> u64 {
    600
}

impl Default for UpstreamSection {
    fn default() -> Self {
        Self {
            base_url: default_base(),
            connect_timeout_secs: default_connect(),
            response_timeout_secs: default_response(),
        }
    }
}

/// Where a workspace's Anthropic key comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// Workspace.
    pub workspace: String,
    /// An environment variable holding the key.
    #[serde(default)]
    pub env: Option<String>,
    /// A file holding the key.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Allow rules (deny by default).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The rules.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// Whether callers see why policy denied.
    #[serde(default)]
    pub show_reasons: bool,
    /// A directory of Cedar documents (`*.cedar`, `*.cedarschema`, `limits.toml`) to use
    /// instead of the allow rules; the dashboard's policy editor writes back to it.
    #[serde(default)]
    pub cedar_dir: Option<PathBuf>,
}

/// One allow rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// `anyone`, `group:NAME` or `subject:ID`.
    pub principal: String,
    /// Action name or `*`.
    pub action: String,
    /// Resource pattern (`model:claude-*`, `workspace:*`, `endpoint:GET /v1/files`).
    pub resource: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Invalid TOML or field.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// The allow-list policy.
    pub fn policy(&self) -> Result<AllowListPolicy, ConfigError> {
        let rules = self
            .policy
            .allow
            .iter()
            .map(|e| {
                let p = e.principal.as_str();
                if p == "anyone" {
                    Ok(AllowRule::anyone(&e.action, &e.resource))
                } else if let Some(g) = p.strip_prefix("group:") {
                    Ok(AllowRule::group(g, &e.action, &e.resource))
                } else if let Some(s) = p.strip_prefix("subject:") {
                    Ok(AllowRule::subject(s, &e.action, &e.resource))
                } else {
                    Err(ConfigError::Invalid(format!("unknown principal {p:?}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowListPolicy::new(rules))
    }

    /// The key pepper: from the environment, else a random one kept in the data directory.
    pub fn pepper(&self) -> Result<Secret, ConfigError> {
        fortress_core::keys::load_or_create_pepper(&self.data_dir, &self.pepper_env).map_err(
            |source| ConfigError::Read {
                path: self.data_dir.join("pepper"),
                source,
            },
        )
    }

    /// Opens the key store.
    pub async fn key_store(&self) -> Result<KeyStore, ConfigError> {
        let shared = self.shared_database().await?;
        self.key_store_on(shared).await
    }

    /// The key store, in the shared database when there is one.
    async fn key_store_on(
        &self,
        shared: Option<fortress_core::db::Database>,
    ) -> Result<KeyStore, ConfigError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::Read {
            path: self.data_dir.clone(),
            source,
        })?;
        match shared {
            Some(db) => KeyStore::with_database(db, crate::keys::FORMAT, self.pepper()?).await,
            None => KeyStore::open(&self.data_dir, crate::keys::FORMAT, self.pepper()?).await,
        }
        .map_err(|e| ConfigError::Invalid(format!("key store: {e}")))
    }

    /// Where a store with the explicit URL `explicit` keeps its rows: an explicit URL
    /// equal to `database_url`, or none while `database_url` is set, means the shared pool.
    fn store_database<'a>(&'a self, explicit: Option<&'a str>) -> StoreDatabase<'a> {
        match (explicit, self.database_url.as_deref()) {
            (Some(url), Some(shared)) if url == shared => StoreDatabase::Shared,
            (Some(url), _) => StoreDatabase::Own(url),
            (None, Some(_)) => StoreDatabase::Shared,
            (None, None) => StoreDatabase::Embedded,
        }
    }

    /// The database of `database_url` (PostgreSQL only), if configured.
    async fn shared_database(&self) -> Result<Option<fortress_core::db::Database>, ConfigError> {
        match &self.database_url {
            Some(url) if fortress_core::db::is_postgres_url(url) => {
                fortress_core::db::Database::connect(url)
                    .await
                    .map(Some)
                    .map_err(|e| ConfigError::Invalid(format!("database_url: {e}")))
            }
            Some(_) => Err(ConfigError::Invalid(
                "database_url: expected a postgres:// URL".into(),
            )),
            None => Ok(None),
        }
    }

    /// Builds the whole gateway (without the dashboard).
    pub async fn build(&self) -> Result<PatService, ConfigError> {
        Ok(self.assemble(false).await?.service)
    }

    /// Builds the gateway and, when `[admin]` is configured, the dashboard sharing its
    /// audit trail, kill switch, keys, vault and policy.
    pub async fn build_gateway(&self) -> Result<Gateway, ConfigError> {
        self.assemble(true).await
    }

    /// The policy engine and, for a Cedar directory, its editor. With replicas
    /// (`cluster`), the set lives in the shared database: the directory only seeds it
    /// when it is empty, edits are saved there and announced, and a follower keeps this
    /// replica on the newest stored set.
    async fn policy_engine(
        &self,
        cluster: Option<&SharedDeployment>,
    ) -> Result<EngineAndEditor, ConfigError> {
        let Some(dir) = &self.policy.cedar_dir else {
            return Ok((Arc::new(self.policy()?), None));
        };
        let docs = PolicyDocuments::from_dir(dir)
            .map_err(|e| ConfigError::Invalid(format!("policy directory: {e}")))?;
        let engine = Arc::new(
            CedarEngine::new(&docs).map_err(|e| ConfigError::Invalid(format!("policy: {e}")))?,
        );
        let editor = PolicyEditor::new(engine.clone(), docs).persist_to(dir);
        let Some(cluster) = cluster else {
            return Ok((engine, Some(Arc::new(editor))));
        };
        let (editor, follower) = SharedPolicies::join(
            editor,
            cluster.database.clone(),
            crate::PAT_POLICY_SET,
            cluster.bus.clone(),
            cluster.poll,
        )
        .await
        .map_err(|e| ConfigError::Invalid(format!("policy store: {e}")))?;
        // Runs as long as the process: the replica follows every later change.
        drop(follower);
        Ok((engine, Some(editor)))
    }

    /// The key provider of the deployment's tier (shared by the vault and the archive).
    pub fn key_provider(&self) -> Result<Arc<dyn KeyProvider>, ConfigError> {
        let vault_error = |e: VaultError| ConfigError::Invalid(format!("vault: {e}"));
        match self.tier() {
            Tier::Soho => {
                if let Some(file) = &self.vault.master_key_file {
                    refuse_key_inside(file, &self.data_dir).map_err(vault_error)?;
                }
                let keys = ManagedKeys::load(self.vault.master_key_file.as_deref())
                    .map_err(vault_error)?;
                Ok(Arc::new(keys))
            }
            tier => {
                let dir = self.vault.key_dir.as_ref().ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "the {tier} tier needs [vault] key_dir (customer-held keys)"
                    ))
                })?;
                refuse_key_inside(dir, &self.data_dir).map_err(vault_error)?;
                Ok(Arc::new(KeyFileProvider::new(dir)))
            }
        }
    }

    /// The deployment's tier (`[vault] tier`, default SOHO).
    pub fn tier(&self) -> Tier {
        self.vault.tier.unwrap_or(Tier::Soho)
    }

    /// Opens the persistent vault: `vault.sqlite3` in the data directory (the same one
    /// `fortress-pat vault --data-dir` manages), or PostgreSQL (`[vault] database_url`,
    /// else the top-level `database_url`).
    pub async fn open_vault(
        &self,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<EnvelopeVault, ConfigError> {
        let shared = self.shared_database().await?;
        self.open_vault_on(keys, audit, shared.as_ref()).await
    }

    /// [`open_vault`](Self::open_vault) over the shared database's pool, when it is the
    /// vault's database.
    async fn open_vault_on(
        &self,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
        shared: Option<&fortress_core::db::Database>,
    ) -> Result<EnvelopeVault, ConfigError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::Read {
            path: self.data_dir.clone(),
            source,
        })?;
        let pool = shared.and_then(fortress_core::db::Database::postgres_pool);
        let choice = self.store_database(self.vault.database_url.as_deref());
        if let (StoreDatabase::Shared, Some(pool)) = (&choice, pool) {
            return PgStore::from_pool(pool.clone())
                .await
                .map(|store| EnvelopeVault::new(Arc::new(store), keys, audit))
                .map_err(|e| ConfigError::Invalid(format!("vault: {e}")));
        }
        let url = match choice {
            StoreDatabase::Own(url) => Some(url),
            StoreDatabase::Shared => self.database_url.as_deref(),
            StoreDatabase::Embedded => None,
        };
        EnvelopeVault::open(&self.data_dir, url, keys, audit)
            .await
            .map_err(|e| ConfigError::Invalid(format!("vault: {e}")))
    }

    /// Stores the configured `[[credentials]]` (a new version only when a value changed).
    async fn store_credentials(&self, vault: &dyn Vault) -> Result<(), ConfigError> {
        for source in &self.credentials {
            let secret = match (&source.env, &source.file) {
                (Some(var), _) => std::env::var(var).map(Secret::from_text).map_err(|_| {
                    ConfigError::Invalid(format!("environment variable {var} is not set"))
                })?,
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map(|text| Secret::from_text(text.trim_end().to_owned()))
                    .map_err(|source| ConfigError::Read {
                        path: file.clone(),
                        source,
                    })?,
                (None, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "credentials for {} need env or file",
                        source.workspace
                    )));
                }
            };
            let slot = CredentialSlot::workspace(
                WorkspaceId::new(source.workspace.clone()),
                ANTHROPIC_CONNECTOR,
            );
            let unchanged = match vault.resolve(&slot).await {
                Ok(current) => bool::from(subtle::ConstantTimeEq::ct_eq(
                    current.secret().expose(),
                    secret.expose(),
                )),
                Err(_) => false,
            };
            if !unchanged {
                vault
                    .put(&slot, secret)
                    .await
                    .map_err(|e| ConfigError::Invalid(format!("vault: {e}")))?;
            }
        }
        Ok(())
    }

    async fn assemble(&self, with_dashboard: bool) -> Result<Gateway, ConfigError> {
        // One pool and one bus for every shared store of this process.
        let cluster = self.shared_deployment().await?;
        let database = cluster.as_ref().map(|c| c.database.clone());
        let keys = self.key_store_on(database.clone()).await?;
        let embedded = match (&self.admin, with_dashboard) {
            (Some(section), true) => Some(
                match cluster.clone() {
                    // Accounts, audit trail and kill switches in the database replicas share.
                    Some(shared) => {
                        EmbeddedAdmin::open_shared_with(
                            &self.data_dir,
                            WorkspaceId::new(section.workspace.clone()),
                            shared,
                            &self.audit,
                        )
                        .await
                    }
                    None => {
                        EmbeddedAdmin::open_with(
                            &self.data_dir,
                            WorkspaceId::new(section.workspace.clone()),
                            &self.audit,
                        )
                        .await
                    }
                }
                .map_err(|e| ConfigError::Invalid(format!("admin: {e}")))?,
            ),
            _ => None,
        };
        let audit: Arc<dyn AuditSink> = match &embedded {
            Some(e) => e.audit.clone(),
            None => self.open_audit().await?,
        };
        let key_provider = self.key_provider()?;
        let vault: Arc<dyn Vault> = Arc::new(
            self.open_vault_on(key_provider.clone(), audit.clone(), database.as_ref())
                .await?,
        );
        self.store_credentials(vault.as_ref()).await?;
        let archive = self.archive(key_provider, vault.as_ref()).await?;
        let (policy, editor) = self.policy_engine(cluster.as_ref()).await?;
        let ledger = Arc::new(self.ledger_on(database.as_ref()).await?);
        let dashboard = match (embedded, &self.admin) {
            (Some(embedded), Some(section)) => Some(
                mount_embedded(
                    embedded,
                    section.clone(),
                    PatManaged {
                        keys: keys.clone(),
                        vault: vault.clone(),
                        policy: editor,
                        tls: self.tls.is_some(),
                        ledger: Some(ledger.clone()),
                        archive: archive
                            .clone()
                            .map(|a| Arc::new(a) as Arc<dyn ArchiveReader>),
                    },
                )
                .await
                .map_err(|e| ConfigError::Invalid(format!("admin: {e}")))?,
            ),
            _ => None,
        };
        let upstream = Upstream::new(&UpstreamConfig {
            base_url: self.upstream.base_url.clone(),
            connect_timeout: Duration::from_secs(self.upstream.connect_timeout_secs),
            response_timeout: Duration::from_secs(self.upstream.response_timeout_secs),
            extra_roots: None,
        })
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let service = PatService::with_kill_switch(
            PatParts {
                keys,
                ledger,
                policy,
                vault,
                redactor: Arc::new(PatternRedactor::basic()),
                audit,
                upstream,
                archive: archive.clone(),
            },
            dashboard.as_ref().map(|d| d.kill_switch.clone()),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Gateway {
            service,
            dashboard,
            archive,
        })
    }

    /// How often the archive retries its spool and purges by retention.
    pub fn archive_maintenance(&self) -> Duration {
        let secs = self
            .archive
            .as_ref()
            .and_then(|a| a.maintenance_secs)
            .unwrap_or(300);
        Duration::from_secs(secs.max(1))
    }

    /// The ledger over the configured stores, with this month's budgets restored from
    /// the metering.
    pub async fn ledger(&self) -> Result<Ledger, ConfigError> {
        let shared = self.shared_database().await?;
        self.ledger_on(shared.as_ref()).await
    }

    /// [`ledger`](Self::ledger), metering into the shared database's pool when it is the
    /// ledger's database.
    async fn ledger_on(
        &self,
        shared: Option<&fortress_core::db::Database>,
    ) -> Result<Ledger, ConfigError> {
        let section = &self.ledger;
        let invalid =
            |e: crate::limits::MeterError| ConfigError::Invalid(format!("ledger database: {e}"));
        let meter: Arc<dyn MeterStore> =
            match (self.store_database(section.database.as_deref()), shared) {
                (StoreDatabase::Shared, Some(db)) => {
                    Arc::new(SqlMeterStore::over(db.clone()).await.map_err(invalid)?)
                }
                (StoreDatabase::Own(url), _) => {
                    Arc::new(SqlMeterStore::connect(url).await.map_err(invalid)?)
                }
                (StoreDatabase::Shared, None) => {
                    let url = self.database_url.as_deref().unwrap_or_default();
                    Arc::new(SqlMeterStore::connect(url).await.map_err(invalid)?)
                }
                (StoreDatabase::Embedded, _) => Arc::new(
                    SqlMeterStore::open_sqlite(&self.data_dir.join("usage.db"))
                        .await
                        .map_err(|e| ConfigError::Invalid(format!("ledger database: {e}")))?,
                ),
            };
        let store: Arc<dyn LimitStore> = match &section.redis {
            Some(url) => Arc::new(
                RedisLimitStore::connect(url, &section.redis_prefix)
                    .await
                    .map_err(|e| ConfigError::Invalid(format!("ledger redis: {e}")))?
                    .with_lease(Duration::from_secs(section.reservation_lease_secs.max(1))),
            ),
            None => Arc::new(MemoryLimitStore::new()),
        };
        let metering = Metering::new(
            meter,
            Duration::from_millis(section.flush_interval_ms.max(1)),
        );
        let ledger = Ledger::with_backends(self.limits.clone(), store, metering);
        ledger
            .restore()
            .await
            .map_err(|e| ConfigError::Invalid(format!("ledger restore: {e}")))?;
        Ok(ledger)
    }

    /// What replicas share, when `database_url` is set: the database (one pool), the
    /// change bus and the poll interval.
    async fn shared_deployment(&self) -> Result<Option<SharedDeployment>, ConfigError> {
        let Some(database) = self.shared_database().await? else {
            return Ok(None);
        };
        let bus = self
            .cluster
            .bus()
            .map_err(|e| ConfigError::Invalid(format!("cluster.redis_url: {e}")))?;
        Ok(Some(SharedDeployment {
            database,
            bus,
            poll: self.cluster.poll(),
        }))
    }

    /// The signed, chained audit trail in the data directory, with the `[audit]` settings.
    async fn open_audit(&self) -> Result<Arc<dyn AuditSink>, ConfigError> {
        let invalid = |e: String| ConfigError::Invalid(format!("audit: {e}"));
        std::fs::create_dir_all(&self.data_dir).map_err(|e| invalid(e.to_string()))?;
        let signer = Ed25519KeyProvider::load_or_create(&default_key_path(&self.data_dir))
            .map_err(|e| invalid(e.to_string()))?;
        let trail = open_trail(&self.data_dir, Some(Arc::new(signer)), &self.audit)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        Ok(trail.sink)
    }

    /// The archive, when `[archive]` is configured.
    pub async fn archive(
        &self,
        keys: Arc<dyn KeyProvider>,
        vault: &dyn Vault,
    ) -> Result<Option<Archiver>, ConfigError> {
        let Some(section) = &self.archive else {
            return Ok(None);
        };
        let invalid = |e: ArchiveError| ConfigError::Invalid(e.to_string());
        let location = match &section.url {
            Some(url) => ArchiveLocation::parse(url).map_err(invalid)?,
            None => ArchiveLocation::Local(self.data_dir.join("archive")),
        };
        let store = archive::store::open(&location, self.s3_settings(section, vault).await?)
            .map_err(invalid)?;
        let spool_dir = section
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("archive-spool"));
        let spool = archive::store::local(&spool_dir).map_err(invalid)?;
        let mut retention = Retention::new(self.tier());
        retention.workspaces = section.workspace_tiers.clone();
        Ok(Some(Archiver::start(
            Arc::new(ArchiveSealer::new(keys)),
            store,
            Some(spool),
            ArchiveOptions {
                capacity: section.queue.unwrap_or(4096),
                retention,
            },
        )))
    }

    /// S3 settings from the section, its environment variables and the vault.
    async fn s3_settings(
        &self,
        section: &ArchiveSection,
        vault: &dyn Vault,
    ) -> Result<S3Settings, ConfigError> {
        let env = |var: &Option<String>| -> Result<Option<Secret>, ConfigError> {
            match var {
                Some(var) => std::env::var(var)
                    .map(|v| Some(Secret::from_text(v)))
                    .map_err(|_| {
                        ConfigError::Invalid(format!("environment variable {var} is not set"))
                    }),
                None => Ok(None),
            }
        };
        let mut settings = S3Settings {
            endpoint: section.endpoint.clone(),
            region: section.region.clone(),
            access_key_id: env(&section.access_key_id_env)?,
            secret_access_key: env(&section.secret_access_key_env)?,
        };
        if let Some(connector) = &section.credentials_connector {
            let workspace = self
                .admin
                .as_ref()
                .map(|a| a.workspace.clone())
                .unwrap_or_else(|| "default".into());
            let slot = CredentialSlot::workspace(WorkspaceId::new(workspace), connector.clone());
            let credential = vault.resolve(&slot).await.map_err(|e| {
                ConfigError::Invalid(format!("archive S3 credentials ({slot}): {e}"))
            })?;
            // The error never quotes the value.
            let keys: VaultS3Keys = serde_json::from_slice(credential.secret().expose())
                .map_err(|_| {
                    ConfigError::Invalid(format!(
                        "archive S3 credentials ({slot}) must be JSON with access_key_id and secret_access_key"
                    ))
                })?;
            settings.access_key_id = Some(Secret::from_text(keys.access_key_id));
            settings.secret_access_key = Some(Secret::from_text(keys.secret_access_key));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
            listen = "127.0.0.1:9999"
            [upstream]
            base_url = "http://127.0.0.1:1"
            [[credentials]]
            workspace = "acme"
            env = "X"
            [[policy.allow]]
            principal = "group:eng"
            action = "*"
            resource = "model:claude-*"
            [[limits.budgets]]
            scope = "user"
            window = "day"
            max_usd = 5.0
            [[limits.rates]]
            scope = "key"
            requests_per_minute = 60
        "#;
        let config = Config::parse(text).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.limits.budgets.len(), 1);
        assert_eq!(config.limits.rates[0].requests_per_minute, Some(60));
        assert!(config.policy().is_ok());
        assert!(Config::parse("nonsense = 1").is_err());
        assert!(config.admin.is_none());
        assert!(config.ledger.redis.is_none() && config.ledger.database.is_none());
        let ledger = Config::parse(
            "[ledger]\nredis = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{t}:pat\"\nflush_interval_ms = 50\n",
        )
        .unwrap()
        .ledger;
        assert_eq!(ledger.redis.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(ledger.redis_prefix, "{t}:pat");
        assert_eq!(ledger.flush_interval_ms, 50);
        assert!(Config::parse("[ledger]\nredis_url = \"x\"\n").is_err());
    }

    #[tokio::test]
    async fn the_default_ledger_meters_into_sqlite_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!("data_dir = {:?}\n", dir.path())).unwrap();
        let ledger = config.ledger().await.unwrap();
        let key = crate::limits::MeterKey {
            day: "2026-11-30".into(),
            workspace: "acme".into(),
            key: "k".into(),
            user: "alice".into(),
            team: String::new(),
            model: "m".into(),
        };
        let row = crate::limits::MeterRow {
            requests: 1,
            output_tokens: 5,
            ..Default::default()
        };
        ledger.metering().record(key, row);
        ledger.flush().await.unwrap();
        drop(ledger);
        assert!(dir.path().join("usage.db").exists());
        let reopened = config.ledger().await.unwrap();
        assert_eq!(reopened.meter().await.unwrap()[0].1, row);
        let bad = Config::parse("[ledger]\ndatabase = \"mysql://x\"\n").unwrap();
        assert!(bad.ledger().await.is_err());
    }

    #[test]
    fn ledger_and_vault_default_to_the_shared_database() {
        let shared = "postgres://fortress@db/fortress";
        let config = Config::parse(&format!("database_url = {shared:?}\n")).unwrap();
        assert_eq!(config.store_database(None), StoreDatabase::Shared);
        // Naming the same database explicitly still shares the one pool.
        assert_eq!(config.store_database(Some(shared)), StoreDatabase::Shared);
        let other = "postgres://fortress@metering/usage";
        assert_eq!(
            config.store_database(Some(other)),
            StoreDatabase::Own(other)
        );
        let embedded = Config::parse("").unwrap();
        assert_eq!(embedded.store_database(None), StoreDatabase::Embedded);
        assert_eq!(
            embedded.store_database(Some(other)),
            StoreDatabase::Own(other)
        );
    }

    #[test]
    fn the_admin_section_defaults_to_the_gateway_listener_under_admin() {
        let config = Config::parse("[admin]\nowner = \"root\"\n").unwrap();
        let admin = config.admin.unwrap();
        assert_eq!(admin.listen, None);
        assert_eq!(admin.path, "/admin");
        assert_eq!(admin.owner, "root");
        assert!(admin.open_metrics);
        let own = Config::parse("[admin]\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(own.admin.unwrap().listen.unwrap().port(), 9000);
        assert!(Config::parse("[admin]\npassword = \"x\"\n").is_err());
    }

    #[test]
    fn customer_key_tiers_need_a_key_directory_outside_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("keys")).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        let with = |vault: &str| {
            Config::parse(&format!("data_dir = {data:?}\n[vault]\n{vault}\n")).unwrap()
        };
        let missing = with("tier = \"bank\"").key_provider().err().unwrap();
        assert!(missing.to_string().contains("key_dir"), "{missing}");
        let inside = with(&format!(
            "tier = \"zero_trust\"\nkey_dir = {:?}",
            data.join("keys")
        ));
        assert!(inside.key_provider().is_err());
        let outside = with(&format!(
            "tier = \"bank\"\nkey_dir = {:?}",
            dir.path().join("keys")
        ));
        assert_eq!(outside.tier(), Tier::Bank);
        assert_eq!(
            outside
                .key_provider()
                .unwrap()
                .source(&WorkspaceId::new("w")),
            "key_file"
        );
        assert!(Config::parse("[vault]\ntier = \"gold\"\n").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_with_admin_shares_the_audit_trail_and_the_kill_switch() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(&policy).unwrap();
        std::fs::write(
            policy.join("main.cedar"),
            "permit (principal, action, resource is Model);",
        )
        .unwrap();
        let mock = crate::mock::MockClaude::start("sk-upstream", 8)
            .await
            .unwrap();
        let key_file = dir.path().join("anthropic.key");
        std::fs::write(&key_file, "sk-upstream").unwrap();
        let master = dir.path().join("master.key");
        std::fs::write(
            &master,
            fortress_core::vault::keys::RootKey::generate()
                .to_hex()
                .as_bytes(),
        )
        .unwrap();
        let text = format!(
            "data_dir = {:?}\n[upstream]\nbase_url = {:?}\n[[credentials]]\nworkspace = \"acme\"\nfile = {:?}\n[policy]\ncedar_dir = {:?}\n[vault]\nmaster_key_file = {:?}\n[admin]\nworkspace = \"acme\"\n",
            dir.path().join("data"),
            mock.base_url(),
            key_file,
            policy,
            master
        );
        let config = Config::parse(&text).unwrap();
        let gateway = config.build_gateway().await.unwrap();
        let dashboard = gateway.dashboard.unwrap();
        // The owner is created once, with a password to print.
        assert!(dashboard.owner_password.is_some());
        let state = dashboard.server.state();
        assert!(state.store.is_some() && state.keys.is_some() && state.vault.is_some());
        let set = state
            .policies
            .first()
            .expect("a Cedar directory gets the editor");
        assert_eq!(set.name(), crate::PAT_POLICY_SET);
        let editor = set.editor();
        assert!(editor.documents().documents()[0].text.contains("is Model"));
        // The dashboard's kill switch is the one the gateway consults.
        let board = state.kill_switches.as_ref().unwrap();
        assert!(Arc::ptr_eq(board.switch(), &dashboard.kill_switch));
        // A call through the gateway lands in the dashboard's audit store…
        use fortress_core::admin::directory::KeyRequest;
        use fortress_core::audit::query::{AuditFilter, AuditQuery};
        use fortress_core::guard::KillTarget;
        use fortress_core::subject::Subject;
        let (_, token) = state
            .keys
            .as_ref()
            .unwrap()
            .issue(KeyRequest {
                workspace: "acme".into(),
                subject: "alice".into(),
                app: false,
                name: String::new(),
                team: None,
                groups: vec![],
                scopes: vec![],
                expires_days: None,
            })
            .await
            .unwrap();
        let call = || {
            http::Request::post("/v1/messages")
                .header("x-api-key", token.expose_str().unwrap())
                .header("anthropic-version", "2023-06-01")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
                )))
                .unwrap()
        };
        let answer = gateway.service.handle(call(), None).await;
        assert_eq!(answer.status(), 200);
        http_body_util::BodyExt::collect(answer.into_body())
            .await
            .unwrap();
        let alice = AuditQuery::newest_first(10).with_filter(AuditFilter {
            subject: Some("alice".into()),
            ..AuditFilter::default()
        });
        let page = state.store.as_ref().unwrap().query(&alice).await.unwrap();
        assert_eq!(page.events.len(), 1);
        // …and the dashboard's kill switch stops the next one.
        board
            .engage(
                KillTarget::user("acme", "alice"),
                &Subject::user("owner", fortress_core::subject::WorkspaceId::new("acme")),
                "test",
            )
            .await
            .unwrap();
        assert_eq!(gateway.service.handle(call(), None).await.status(), 403);
        mock.stop();
        // Without the dashboard nothing of it is opened.
        let plain = Config::parse(&format!(
            "data_dir = {:?}\n[vault]\nmaster_key_file = {:?}\n",
            dir.path().join("plain"),
            master
        ))
        .unwrap()
        .build_gateway()
        .await
        .unwrap();
        assert!(plain.dashboard.is_none());
        dashboard.durable.shutdown().await.unwrap();
    }
}
