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
//! [admin]                    # the dashboard, at /admin on the same listener
//! owner = "owner"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fortress_core::admin::policy_editor::PolicyEditor;
use fortress_core::audit::AuditSink;
use fortress_core::audit::keys::{Ed25519KeyProvider, default_key_path};
use fortress_core::audit::settings::{AuditSettings, open_trail};
use fortress_core::policy::{
    AllowListPolicy, AllowRule, CedarEngine, PolicyDocuments, PolicyEngine,
};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use serde::Deserialize;

use crate::archive::{Archiver, LocalDirStore, WorkspaceAesGcm};
use crate::dashboard::{AdminSection, PatDashboard, PatManaged, mount_with};
use crate::keys::KeyStore;
use crate::limits::{Ledger, LimitsConfig};
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
    /// The encrypted request/response archive.
    #[serde(default)]
    pub archive: Option<ArchiveSection>,
    /// The environment variable holding the key pepper (else `data_dir/pepper`).
    #[serde(default = "default_pepper_env")]
    pub pepper_env: String,
    /// The admin dashboard (none: not mounted).
    #[serde(default)]
    pub admin: Option<AdminSection>,
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

/// A gateway and, when `[admin]` is configured, its dashboard.
pub struct Gateway {
    /// The PAT service.
    pub service: PatService,
    /// The dashboard.
    pub dashboard: Option<PatDashboard>,
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

/// Archive settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    /// Directory of the sealed objects.
    pub dir: PathBuf,
    /// Environment variable holding the 256-bit master key (64 hex digits).
    pub key_env: String,
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
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::Read {
            path: self.data_dir.clone(),
            source,
        })?;
        KeyStore::open(&self.data_dir, crate::keys::FORMAT, self.pepper()?)
            .await
            .map_err(|e| ConfigError::Invalid(format!("key store: {e}")))
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

    /// The policy engine and, for a Cedar directory, its editor.
    fn policy_engine(&self) -> Result<EngineAndEditor, ConfigError> {
        let Some(dir) = &self.policy.cedar_dir else {
            return Ok((Arc::new(self.policy()?), None));
        };
        let docs = PolicyDocuments::from_dir(dir)
            .map_err(|e| ConfigError::Invalid(format!("policy directory: {e}")))?;
        let engine = Arc::new(
            CedarEngine::new(&docs).map_err(|e| ConfigError::Invalid(format!("policy: {e}")))?,
        );
        let editor = PolicyEditor::new(engine.clone(), docs).persist_to(dir);
        Ok((engine, Some(Arc::new(editor))))
    }

    async fn assemble(&self, with_dashboard: bool) -> Result<Gateway, ConfigError> {
        let keys = self.key_store().await?;
        let vault = MemoryVault::new();
        for source in &self.credentials {
            let secret = match (&source.env, &source.file) {
                (Some(var), _) => std::env::var(var).map(Secret::from_text).map_err(|_| {
                    ConfigError::Invalid(format!("environment variable {var} is not set"))
                })?,
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map(Secret::from_text)
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
            vault
                .put(&slot, secret)
                .await
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let vault: Arc<dyn Vault> = Arc::new(vault);
        let (policy, editor) = self.policy_engine()?;
        let ledger = Arc::new(Ledger::new(self.limits.clone()));
        let dashboard = match (&self.admin, with_dashboard) {
            (Some(section), true) => Some(
                mount_with(
                    &self.data_dir,
                    section.clone(),
                    PatManaged {
                        keys: keys.clone(),
                        vault: vault.clone(),
                        policy: editor,
                        tls: self.tls.is_some(),
                        ledger: Some(ledger.clone()),
                    },
                    &self.audit,
                )
                .await
                .map_err(|e| ConfigError::Invalid(format!("admin: {e}")))?,
            ),
            _ => None,
        };
        let audit: Arc<dyn AuditSink> = match &dashboard {
            Some(d) => d.audit.clone(),
            None => self.open_audit().await?,
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
                archive: self.archive()?,
            },
            dashboard.as_ref().map(|d| d.kill_switch.clone()),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Gateway { service, dashboard })
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
    fn archive(&self) -> Result<Option<Archiver>, ConfigError> {
        let Some(section) = &self.archive else {
            return Ok(None);
        };
        let key = std::env::var(&section.key_env).map_err(|_| {
            ConfigError::Invalid(format!(
                "environment variable {} is not set",
                section.key_env
            ))
        })?;
        let key = hex::decode(key.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| ConfigError::Invalid("archive key must be 64 hex digits".into()))?;
        Ok(Some(Archiver::start(
            Arc::new(WorkspaceAesGcm::new(Secret::new(key))),
            Arc::new(LocalDirStore::new(section.dir.clone())),
            4096,
        )))
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
        let text = format!(
            "data_dir = {:?}\n[upstream]\nbase_url = {:?}\n[[credentials]]\nworkspace = \"acme\"\nfile = {:?}\n[policy]\ncedar_dir = {:?}\n[admin]\nworkspace = \"acme\"\n",
            dir.path().join("data"),
            mock.base_url(),
            key_file,
            policy
        );
        let config = Config::parse(&text).unwrap();
        let gateway = config.build_gateway().await.unwrap();
        let dashboard = gateway.dashboard.unwrap();
        // The owner is created once, with a password to print.
        assert!(dashboard.owner_password.is_some());
        let state = dashboard.server.state();
        assert!(state.store.is_some() && state.keys.is_some() && state.vault.is_some());
        let editor = state
            .policy
            .as_ref()
            .expect("a Cedar directory gets the editor");
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
        let plain = Config::parse(&format!("data_dir = {:?}\n", dir.path().join("plain")))
            .unwrap()
            .build_gateway()
            .await
            .unwrap();
        assert!(plain.dashboard.is_none());
        dashboard.durable.shutdown().await.unwrap();
    }
}
