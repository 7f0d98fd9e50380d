//! The configuration file (TOML) of the `fortress-mcp` binary.
//!
//! ```
//! let config: fortress_mcp::config::Config = toml::from_str(r#"
//!     [server]
//!     listen = "127.0.0.1:0"
//!
//!     [[upstream]]
//!     name = "everything"
//!     command = "npx"
//!     args = ["@modelcontextprotocol/server-everything"]
//!
//!     [[upstream]]
//!     name = "remote"
//!     url = "http://127.0.0.1:3001/mcp"
//!     credential = { header = "authorization", value = "Bearer {credential}", per_user = true }
//!
//!     [[upstream]]
//!     name = "zendesk"
//!     kind = "rest"
//!     definition = "zendesk"
//!     settings = { subdomain = "acme", email = "agent@acme.example" }
//! "#).unwrap();
//! assert_eq!(config.upstream.len(), 3);
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fortress_core::audit::settings::AuditSettings;
use fortress_core::audit::store::SqliteDurability;
use fortress_core::audit::{Acknowledge, WhenFull};
use serde::Deserialize;

use crate::server::ServerConfig;
use fortress_core::vault::Vault;

use crate::upstream::Upstream;
use crate::upstream::credential::{self, CredentialSource, HeaderTemplate};
use crate::upstream::credentialed::CredentialedStdio;
use crate::upstream::http::{HttpConfig, HttpUpstream};
use crate::upstream::stdio::{StdioConfig, StdioUpstream};
use crate::virtual_server::{Naming, VirtualServer, VirtualServerError};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this format.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// An upstream is neither stdio nor HTTP, or both.
    #[error("upstream {0:?} needs exactly one of `command` or `url`")]
    UpstreamKind(String),
    /// An HTTP upstream's URL is unusable.
    #[error("upstream {name:?}: {message}")]
    Upstream {
        /// The upstream.
        name: String,
        /// Why.
        message: String,
    },
    /// The virtual server cannot be formed.
    #[error(transparent)]
    VirtualServer(#[from] VirtualServerError),
    /// A governance setting cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing endpoint.
    #[serde(default)]
    pub server: ServerSection,
    /// How virtual names are formed.
    #[serde(default)]
    pub naming: NamingSection,
    /// The upstream MCP servers.
    #[serde(default)]
    pub upstream: Vec<UpstreamSection>,
    /// Where state lives (keys, audit, pins, vault).
    #[serde(default)]
    pub data: DataSection,
    /// Client authentication.
    #[serde(default)]
    pub auth: AuthSection,
    /// Policy (Cedar) and rate limits.
    #[serde(default)]
    pub policy: PolicySection,
    /// The credential vault.
    #[serde(default)]
    pub vault: Option<VaultSection>,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditSection,
    /// Redaction of results.
    #[serde(default)]
    pub redaction: RedactionSection,
    /// Tool-definition pinning.
    #[serde(default)]
    pub pinning: PinningSection,
    /// Kill switches.
    #[serde(default)]
    pub kill_switch: KillSwitchSection,
    /// Several replicas behind a load balancer.
    #[serde(default)]
    pub cluster: ClusterSection,
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The data directory (default `.fortress-data/mcp`).
    #[serde(default = "default_data_dir")]
    pub dir: PathBuf,
    /// A `postgres://` URL: the database every replica shares for keys, the audit trail,
    /// tool pins, kill switches and (unless `[vault]` names its own) the vault. Without
    /// it, state lives in SQLite files in `dir`.
    #[serde(default)]
    pub database_url: Option<String>,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dir: default_data_dir(),
            database_url: None,
        }
    }
}

/// `[cluster]`: replicas sharing `[data] database_url`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// A `redis://` URL: changes (kill switches, key revocations) are announced there and
    /// reach every replica at once. Without it, replicas poll the database.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis channel, so deployments sharing one Redis stay apart (default
    /// `fortress`).
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
    /// How often each replica re-reads shared state from the database, in milliseconds
    /// (default 1000): the bound on propagation when Redis is unavailable.
    #[serde(default = "default_kill_poll")]
    pub poll_ms: u64,
    /// The environment variable holding the key that seals legacy session ids (else a key
    /// kept in the data directory, `session.key`). Every replica needs the same key.
    #[serde(default = "default_session_key_env")]
    pub session_key_env: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            redis_url: None,
            prefix: default_cluster_prefix(),
            poll_ms: default_kill_poll(),
            session_key_env: default_session_key_env(),
        }
    }
}

fn default_cluster_prefix() -> String {
    "fortress".into()
}

fn default_session_key_env() -> String {
    "FORTRESS_MCP_SESSION_KEY".into()
}

/// `[auth]`: how clients authenticate. With no method enabled every request is refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Accept gateway API keys (`fmk_…`; default true).
    #[serde(default = "yes")]
    pub api_keys: bool,
    /// The environment variable holding the key pepper (else `<data>/pepper`).
    #[serde(default = "default_pepper_env")]
    pub pepper_env: String,
    /// Map unauthenticated loopback clients to `anonymous_subject` (default false).
    #[serde(default)]
    pub anonymous: bool,
    /// The subject of anonymous loopback clients.
    #[serde(default = "default_anonymous_subject")]
    pub anonymous_subject: String,
    /// Its workspace.
    #[serde(default = "default_anonymous_workspace")]
    pub anonymous_workspace: String,
    /// Its groups.
    #[serde(default)]
    pub anonymous_groups: Vec<String>,
    /// The resource identifier in the Protected Resource Metadata (default: the URL the
    /// client used).
    #[serde(default)]
    pub resource: Option<String>,
    /// The public origin (`https://mcp.example.com`) when behind a proxy.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Scopes advertised in the metadata.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// OAuth 2.1 resource-server mode.
    #[serde(default)]
    pub oauth: Option<crate::auth::OAuthConfig>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            api_keys: true,
            pepper_env: default_pepper_env(),
            anonymous: false,
            anonymous_subject: default_anonymous_subject(),
            anonymous_workspace: default_anonymous_workspace(),
            anonymous_groups: Vec::new(),
            resource: None,
            public_url: None,
            scopes_supported: Vec::new(),
            oauth: None,
        }
    }
}

/// `[policy]`: Cedar policies (deny everything when none are given).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// A directory of `*.cedar`, `*.cedarschema` and `limits.toml`, reloaded on change.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Individual files (`.cedar`, `.cedarschema`, `limits.toml`), read at start.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// How often the directory is checked for changes (default 2 s).
    #[serde(default)]
    pub reload_secs: Option<u64>,
    /// Whether callers see the reasons (`@reason`) of a denial (default false).
    #[serde(default)]
    pub show_reasons: bool,
}

/// `[vault]`: the envelope-encrypted credential vault (SQLite in the data directory, or
/// PostgreSQL). Without it, no connector credential is available.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// File holding the master key (else the `FORTRESS_MASTER_KEY` variable).
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// A `postgres://` URL instead of SQLite (default: `[data] database_url`).
    #[serde(default)]
    pub database_url: Option<String>,
}

/// `[audit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Sign checkpoints with the Ed25519 key in the data directory (default true).
    #[serde(default = "yes")]
    pub sign: bool,
    /// Environment variable holding the key that digests tool arguments (else a key kept
    /// in the data directory).
    #[serde(default)]
    pub argument_key_env: Option<String>,
    /// What an acknowledged event survives: `power_loss` (default) or `process_crash`.
    #[serde(default)]
    pub durability: SqliteDurability,
    /// When the queue is full: `backpressure` (default) or `fail_closed`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// When a call's event counts as recorded: `durable` (default) or `queued`.
    #[serde(default)]
    pub acknowledge: Acknowledge,
    /// Publish signed checkpoints to an external anchor file (default true).
    #[serde(default = "yes")]
    pub anchor: bool,
    /// The anchor file (default: beside the data directory).
    #[serde(default)]
    pub anchor_file: Option<PathBuf>,
    /// Workspaces whose events record tool arguments, redacted (default: none).
    #[serde(default)]
    pub redacted_arguments: BTreeSet<String>,
}

impl AuditSection {
    /// The core's settings for the trail.
    pub fn settings(&self) -> AuditSettings {
        AuditSettings {
            durability: self.durability,
            when_full: self.when_full,
            acknowledge: self.acknowledge,
            anchor_file: self.anchor_file.clone(),
            anchor: self.anchor,
            redacted_arguments: self.redacted_arguments.clone(),
        }
    }
}

impl Default for AuditSection {
    fn default() -> Self {
        let trail = AuditSettings::default();
        Self {
            sign: true,
            argument_key_env: None,
            durability: trail.durability,
            when_full: trail.when_full,
            acknowledge: trail.acknowledge,
            anchor: trail.anchor,
            anchor_file: trail.anchor_file,
            redacted_arguments: trail.redacted_arguments,
        }
    }
}

/// `[redaction]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSection {
    /// Redact tool results, resources and prompts (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A redaction rules file (TOML, `fortress_core::redact::RedactionConfig`).
    #[serde(default)]
    pub rules: Option<PathBuf>,
}

impl Default for RedactionSection {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: None,
        }
    }
}

/// `[pinning]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinningSection {
    /// `require_approval` (default), `trust_on_first_use`, or `off`.
    #[serde(default = "default_pin_mode")]
    pub mode: String,
}

impl Default for PinningSection {
    fn default() -> Self {
        Self {
            mode: default_pin_mode(),
        }
    }
}

/// `[kill_switch]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchSection {
    /// The file `fortress-mcp kill` writes (default `<data>/kill-switches.json`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How often it is read, in milliseconds (default 1000).
    #[serde(default = "default_kill_poll")]
    pub poll_ms: u64,
}

impl Default for KillSwitchSection {
    fn default() -> Self {
        Self {
            file: None,
            poll_ms: default_kill_poll(),
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1:8080`: loopback only, as the spec advises).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The MCP endpoint path (default `/mcp`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Extra allowed `Origin`s (loopback origins are always allowed unless disabled).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether loopback origins are allowed (default true).
    #[serde(default = "yes")]
    pub allow_loopback_origins: bool,
    /// Largest request body in bytes (default 4 MiB).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Serve HTTPS (TLS 1.3 only) with this certificate chain and key.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Serving threads: 0 (default) serves on the shared multi-thread runtime; N > 0 runs N
    /// single-threaded runtimes with `SO_REUSEPORT` listeners (`fortress_core::workers`).
    #[serde(default)]
    pub workers: fortress_core::workers::WorkerCount,
}

/// `[server.tls]`: PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            path: default_path(),
            allowed_origins: Vec::new(),
            allow_loopback_origins: true,
            max_body_bytes: default_body(),
            tls: None,
            workers: fortress_core::workers::WorkerCount::default(),
        }
    }
}

/// `[naming]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingSection {
    /// Separator between upstream name and item name (default `__`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Whether to prefix at all (default true; off only with one upstream).
    #[serde(default = "yes")]
    pub prefix: bool,
}

impl Default for NamingSection {
    fn default() -> Self {
        Self {
            separator: default_separator(),
            prefix: true,
        }
    }
}

/// `[[upstream]]`: a stdio upstream (`command`) or a Streamable HTTP one (`url`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Namespace prefix and connector name.
    pub name: String,
    /// Program to spawn (stdio).
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the program.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory for the program.
    pub cwd: Option<PathBuf>,
    /// MCP endpoint URL (Streamable HTTP).
    pub url: Option<String>,
    /// Seconds one request may take (default 60).
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// `"rest"` for a declarative REST connector; absent for MCP servers.
    #[serde(default)]
    pub kind: Option<String>,
    /// REST connector: a built-in definition (`zendesk`, `salesforce`) or a `.toml` file.
    #[serde(default)]
    pub definition: Option<String>,
    /// REST connector: replaces the definition's base URL (a regional host, a mock).
    #[serde(default)]
    pub base_url: Option<String>,
    /// REST connector: values for the definition's settings (never secrets: the
    /// credential comes from the vault).
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// The connector's vault credential and where it goes (REST connectors always take
    /// one, per workspace unless this says `per_user`).
    #[serde(default)]
    pub credential: Option<UpstreamCredentialSection>,
}

/// `[upstream.credential]`: the vault credential of an upstream (slot: the workspace's,
/// or each user's own), resolved for each call.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentialSection {
    /// Each user's own credential instead of the workspace's (default false).
    #[serde(default)]
    pub per_user: bool,
    /// HTTP upstream: the header that carries it (e.g. `authorization`).
    #[serde(default)]
    pub header: Option<String>,
    /// HTTP upstream: the header value, with `{credential}` once (default `{credential}`).
    #[serde(default)]
    pub value: Option<String>,
    /// stdio upstream: the environment variable that carries it (one child per slot).
    #[serde(default)]
    pub env: Option<String>,
}

impl UpstreamSection {
    /// Whether calls need this upstream's vault credential per call, and per user.
    pub fn credential_per_user(&self) -> Option<bool> {
        match (&self.kind, &self.credential) {
            (Some(_), c) => Some(c.as_ref().is_some_and(|c| c.per_user)),
            (None, Some(c)) => Some(c.per_user),
            (None, None) => None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".fortress-data/mcp")
}
fn default_pepper_env() -> String {
    "FORTRESS_MCP_PEPPER".into()
}
fn default_anonymous_subject() -> String {
    "local-user".into()
}
fn default_anonymous_workspace() -> String {
    "local".into()
}
fn default_pin_mode() -> String {
    "require_approval".into()
}
fn default_kill_poll() -> u64 {
    1000
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_path() -> String {
    "/mcp".into()
}
fn default_body() -> usize {
    4 * 1024 * 1024
}
fn default_separator() -> String {
    "__".into()
}
fn default_timeout() -> u64 {
    60
}
fn yes() -> bool {
    true
}

impl Config {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(toml::from_str(&text)?)
    }

    /// The endpoint settings.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            path: self.server.path.clone(),
            allowed_origins: self.server.allowed_origins.clone(),
            allow_loopback_origins: self.server.allow_loopback_origins,
            max_body_bytes: self.server.max_body_bytes,
            tls: self.server.tls.is_some(),
            ..ServerConfig::default()
        }
    }

    /// Starts the upstreams (stdio children are spawned now) and forms the virtual server.
    /// Must run inside a tokio runtime. Upstreams with a `credential` need a vault: use
    /// [`virtual_server_with`](Self::virtual_server_with).
    pub fn virtual_server(&self) -> Result<VirtualServer, ConfigError> {
        self.virtual_server_with(None)
    }

    /// [`virtual_server`](Self::virtual_server), resolving upstream credentials from `vault`.
    pub fn virtual_server_with(
        &self,
        vault: Option<Arc<dyn Vault>>,
    ) -> Result<VirtualServer, ConfigError> {
        let mut upstreams: Vec<Arc<dyn Upstream>> = Vec::new();
        for u in &self.upstream {
            let timeout = Duration::from_secs(u.request_timeout_secs);
            if u.kind.is_some() {
                upstreams.push(rest_upstream(u, timeout)?);
                continue;
            }
            let fail = |message: String| ConfigError::Upstream {
                name: u.name.clone(),
                message,
            };
            let source = match &u.credential {
                Some(c) => {
                    let vault = vault
                        .clone()
                        .ok_or_else(|| fail("a credential needs the gateway's vault".into()))?;
                    Some(CredentialSource::new(vault, u.name.clone()).per_user(c.per_user))
                }
                None => None,
            };
            match (&u.command, &u.url) {
                (Some(command), None) => {
                    let mut config = StdioConfig::new(command.clone(), u.args.clone());
                    config.env = u.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    config.cwd = u.cwd.clone();
                    config.request_timeout = timeout;
                    let upstream: Arc<dyn Upstream> = match (source, &u.credential) {
                        (Some(source), Some(c)) => {
                            if c.header.is_some() || c.value.is_some() {
                                return Err(fail(
                                    "a stdio upstream takes its credential in `env`, not a header"
                                        .into(),
                                ));
                            }
                            let variable = c.env.clone().ok_or_else(|| {
                                fail("credential.env names the variable that carries it".into())
                            })?;
                            Arc::new(CredentialedStdio::new(
                                u.name.clone(),
                                config,
                                variable,
                                source,
                            ))
                        }
                        _ => Arc::new(StdioUpstream::spawn(u.name.clone(), config)),
                    };
                    upstreams.push(upstream);
                }
                (None, Some(url)) => {
                    let mut config = HttpConfig::new(url.clone());
                    config.request_timeout = timeout;
                    let mut upstream =
                        HttpUpstream::new(u.name.clone(), config).map_err(|e| fail(e.message))?;
                    if let (Some(source), Some(c)) = (source, &u.credential) {
                        if c.env.is_some() {
                            return Err(fail(
                                "an HTTP upstream takes its credential in `header`, not `env`"
                                    .into(),
                            ));
                        }
                        let header = c.header.as_deref().ok_or_else(|| {
                            fail("credential.header names the header that carries it".into())
                        })?;
                        let value = c.value.as_deref().unwrap_or(credential::PLACEHOLDER);
                        let template = HeaderTemplate::parse(header, value)
                            .map_err(|e| fail(e.to_string()))?;
                        upstream = upstream.with_credential(source, template);
                    }
                    upstreams.push(Arc::new(upstream));
                }
                _ => return Err(ConfigError::UpstreamKind(u.name.clone())),
            }
        }
        let naming = Naming {
            separator: self.naming.separator.clone(),
            prefix: self.naming.prefix,
        };
        Ok(VirtualServer::new(upstreams, naming)?)
    }
}

/// A `kind = "rest"` upstream.
fn rest_upstream(u: &UpstreamSection, timeout: Duration) -> Result<Arc<dyn Upstream>, ConfigError> {
    let fail = |message: String| ConfigError::Upstream {
        name: u.name.clone(),
        message,
    };
    if u.kind.as_deref() != Some("rest") {
        return Err(fail(format!("unknown kind {:?} (known: rest)", u.kind)));
    }
    if u.command.is_some() || u.url.is_some() {
        return Err(fail(
            "a REST connector takes `definition`, not `command` or `url`".into(),
        ));
    }
    if u.credential
        .as_ref()
        .is_some_and(|c| c.header.is_some() || c.value.is_some() || c.env.is_some())
    {
        return Err(fail(
            "a REST connector's definition says where its credential goes: only `per_user` may be set"
                .into(),
        ));
    }
    let reference = u
        .definition
        .as_deref()
        .ok_or_else(|| fail("a REST connector needs `definition`".into()))?;
    let definition =
        crate::connector::resolve_definition(reference).map_err(|e| fail(e.to_string()))?;
    let options = crate::connector::RestOptions {
        base_url: u.base_url.clone(),
        settings: u.settings.clone(),
        request_timeout: timeout,
        ..crate::connector::RestOptions::default()
    };
    let upstream = crate::connector::RestUpstream::new(u.name.clone(), definition, options)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(upstream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_settings_parse_and_default_to_the_strongest_guarantee() {
        let config: Config = toml::from_str(
            r#"
            [audit]
            durability = "process_crash"
            when_full = "fail_closed"
            acknowledge = "queued"
            anchor_file = "/srv/anchors/mcp.jsonl"
            redacted_arguments = ["acme"]
            "#,
        )
        .unwrap();
        let settings = config.audit.settings();
        assert_eq!(settings.durability, SqliteDurability::ProcessCrash);
        assert_eq!(settings.when_full, WhenFull::FailClosed);
        assert_eq!(settings.acknowledge, Acknowledge::Queued);
        assert!(settings.records_redacted_arguments("acme"));
        assert_eq!(
            settings.anchor_path(Path::new("/data")),
            Some(PathBuf::from("/srv/anchors/mcp.jsonl"))
        );

        let defaults = AuditSection::default().settings();
        assert_eq!(defaults, AuditSettings::default());
        assert_eq!(defaults.durability, SqliteDurability::PowerLoss);
        assert_eq!(defaults.when_full, WhenFull::Backpressure);
        assert_eq!(defaults.acknowledge, Acknowledge::Durable);
        assert!(defaults.anchor_path(Path::new("/data")).is_some());

        let typo = toml::from_str::<Config>("[audit]\ndurability = \"sometimes\"\n");
        assert!(typo.is_err());
    }
}
