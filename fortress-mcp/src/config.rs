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
//!
//!     [[upstream]]
//!     name = "zendesk"
//!     kind = "rest"
//!     definition = "zendesk"
//!     settings = { subdomain = "acme", email = "agent@acme.example" }
//! "#).unwrap();
//! assert_eq!(config.upstream.len(), 3);
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::server::ServerConfig;
use crate::upstream::Upstream;
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
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            path: default_path(),
            allowed_origins: Vec::new(),
            allow_loopback_origins: true,
            max_body_bytes: default_body(),
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
            ..ServerConfig::default()
        }
    }

    /// Starts the upstreams (stdio children are spawned now) and forms the virtual server.
    /// Must run inside a tokio runtime.
    pub fn virtual_server(&self) -> Result<VirtualServer, ConfigError> {
        let mut upstreams: Vec<Arc<dyn Upstream>> = Vec::new();
        for u in &self.upstream {
            let timeout = Duration::from_secs(u.request_timeout_secs);
            if u.kind.is_some() {
                upstreams.push(rest_upstream(u, timeout)?);
                continue;
            }
            match (&u.command, &u.url) {
                (Some(command), None) => {
                    let mut config = StdioConfig::new(command.clone(), u.args.clone());
                    config.env = u.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    config.cwd = u.cwd.clone();
                    config.request_timeout = timeout;
                    upstreams.push(Arc::new(StdioUpstream::spawn(u.name.clone(), config)));
                }
                (None, Some(url)) => {
                    let mut config = HttpConfig::new(url.clone());
                    config.request_timeout = timeout;
                    let upstream = HttpUpstream::new(u.name.clone(), config).map_err(|e| {
                        ConfigError::Upstream {
                            name: u.name.clone(),
                            message: e.message,
                        }
                    })?;
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
