//! The demo's connectors as the dashboard manages them (Management → Connectors).
//!
//! Connectors are added and removed while the demo serves. An added connector's tools
//! appear in the virtual server's lists at once (clients are sent
//! `notifications/tools/list_changed`); a removed one's disappear and calls to them are
//! refused. The admin API deletes a removed connector's vault credentials in the same
//! request, so re-adding it needs a credential again.
//!
//! A connector is a REST connector, from a built-in definition or an uploaded TOML one:
//!
//! ```json
//! {"name": "crm", "kind": "rest", "config": {"definition": "salesforce",
//!   "settings": {"instance": "acme"}}}
//! {"name": "tickets", "kind": "rest", "config": {"definition_toml": "name = \"tickets\"\n…",
//!   "base_url": "https://tickets.example.com"}}
//! ```
//!
//! A built-in `zendesk` connector without a `base_url` is the demo helpdesk: it points at
//! the mock, and the demo puts the mock's API token in the vault for it (at start, and
//! when it is added again). The set is kept in [`CONNECTORS_FILE`] in the data directory,
//! so a restart serves the same connectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use fortress_core::admin::directory::{ConnectorDirectory, ConnectorSummary, DirectoryError};
use fortress_core::admin::sources::SourceError;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, Vault};
use serde::Deserialize;

use crate::connector::{BUILTIN, Definition, RestOptions, RestUpstream, builtin};
use crate::upstream::Upstream;
use crate::virtual_server::VirtualServer;

/// The file in the data directory that keeps the set of connectors.
pub const CONNECTORS_FILE: &str = "connectors.json";
/// The largest uploaded definition accepted (bytes).
const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// The built-in definition served by the demo helpdesk.
const HELPDESK_DEFINITION: &str = "zendesk";

/// The demo helpdesk that a `zendesk` connector without a base URL is bound to.
#[derive(Clone)]
pub struct Helpdesk {
    /// The mock's base URL.
    pub base_url: String,
    /// The agent the API token belongs to.
    pub email: String,
    /// The mock's API token (put in the vault for each connector bound to it).
    pub token: Secret,
}

impl std::fmt::Debug for Helpdesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helpdesk")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A connector's `config`: where its definition comes from, and its instance settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorConfig {
    /// A built-in definition's name.
    #[serde(default)]
    definition: Option<String>,
    /// An uploaded definition's TOML text.
    #[serde(default)]
    definition_toml: Option<String>,
    /// Replaces the definition's base URL.
    #[serde(default)]
    base_url: Option<String>,
    /// Values for the definition's settings.
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

/// A connector ready to be served.
struct Built {
    summary: ConnectorSummary,
    upstream: Arc<dyn Upstream>,
    /// Whether it is the demo helpdesk (its token comes from the demo).
    helpdesk: bool,
}

/// The connectors of a running demo: served by its virtual server, kept in its data dir.
pub struct DemoConnectors {
    server: Arc<VirtualServer>,
    vault: Arc<dyn Vault>,
    workspace: WorkspaceId,
    helpdesk: Helpdesk,
    file: PathBuf,
    // One change at a time, so the served set, this list and the file agree.
    connectors: tokio::sync::Mutex<Vec<ConnectorSummary>>,
}

impl std::fmt::Debug for DemoConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConnectors")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid(message.into())
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> DirectoryError {
    DirectoryError::Backend(SourceError(Box::new(e)))
}

/// Names are namespaces (`{name}__{tool}`) and vault slots: short, lower case, no `__`.
fn check_name(name: &str) -> Result<(), DirectoryError> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.contains("__")
        && !name.starts_with(['-', '_']);
    if plain {
        Ok(())
    } else {
        Err(invalid(format!(
            "connector name {name:?}: use 1 to 64 lower-case letters, digits, '-' or '_' \
             (not starting with '-' or '_', no \"__\")"
        )))
    }
}

impl DemoConnectors {
    /// Serves through `server` the connectors kept in `data_dir` (on first start, the demo
    /// helpdesk alone), putting the helpdesk's token in `vault` under `workspace` for each
    /// connector bound to it. A kept connector that no longer builds is skipped with a
    /// warning, so one bad entry does not stop the demo.
    pub async fn open(
        data_dir: &Path,
        server: Arc<VirtualServer>,
        vault: Arc<dyn Vault>,
        workspace: WorkspaceId,
        helpdesk: Helpdesk,
    ) -> Result<Self, DirectoryError> {
        let file = data_dir.join(CONNECTORS_FILE);
        let kept: Vec<ConnectorSummary> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{} is not a connector list: {e}", file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![helpdesk_connector()],
            Err(e) => return Err(backend(e)),
        };
        let directory = Self {
            server,
            vault,
            workspace,
            helpdesk,
            file,
            connectors: tokio::sync::Mutex::new(Vec::new()),
        };
        {
            let mut connectors = directory.connectors.lock().await;
            for summary in kept {
                let name = summary.name.clone();
                match directory.serve(summary).await {
                    Ok(summary) => connectors.push(summary),
                    Err(e) => {
                        tracing::warn!(connector = %name, error = %e, "kept connector skipped")
                    }
                }
            }
            directory.persist(&connectors)?;
        }
        Ok(directory)
    }

    /// The names of the connectors served now.
    pub async fn names(&self) -> Vec<String> {
        self.connectors
            .lock()
            .await
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Builds the upstream `summary` describes, without serving it.
    fn build(&self, mut summary: ConnectorSummary) -> Result<Built, DirectoryError> {
        check_name(&summary.name)?;
        if !summary.kind.is_empty() && summary.kind != "rest" {
            return Err(invalid(format!(
                "connector kind {:?} cannot be added here: add a REST connector (a built-in \
                 definition or an uploaded TOML definition)",
                summary.kind
            )));
        }
        summary.kind = "rest".into();
        let config: ConnectorConfig = match &summary.config {
            serde_json::Value::Null => ConnectorConfig::default(),
            value => serde_json::from_value(value.clone())
                .map_err(|e| invalid(format!("connector configuration: {e}")))?,
        };
        let definition = match (&config.definition, &config.definition_toml) {
            (Some(name), None) => builtin(name).ok_or_else(|| {
                invalid(format!(
                    "no built-in connector definition is named {name:?} (built-in: {}); \
                     upload a TOML definition as \"definition_toml\" instead",
                    BUILTIN.map(|(n, _)| n).join(", ")
                ))
            })?,
            (None, Some(text)) => {
                if text.len() > MAX_DEFINITION_BYTES {
                    return Err(invalid(format!(
                        "the uploaded definition is larger than {MAX_DEFINITION_BYTES} bytes"
                    )));
                }
                Arc::new(
                    Definition::from_toml(text)
                        .map_err(|e| invalid(format!("the uploaded definition is invalid: {e}")))?,
                )
            }
            _ => {
                return Err(invalid(
                    "give either \"definition\" (a built-in name) or \"definition_toml\" \
                     (an uploaded definition)",
                ));
            }
        };
        let helpdesk =
            config.definition.as_deref() == Some(HELPDESK_DEFINITION) && config.base_url.is_none();
        let mut options = RestOptions {
            base_url: config.base_url.clone(),
            settings: config.settings.clone(),
            ..RestOptions::default()
        };
        if helpdesk {
            options.base_url = Some(self.helpdesk.base_url.clone());
            options
                .settings
                .entry("email".into())
                .or_insert_with(|| self.helpdesk.email.clone());
        }
        let upstream = RestUpstream::new(summary.name.clone(), definition, options)
            .map_err(|e| invalid(format!("connector {:?}: {e}", summary.name)))?;
        Ok(Built {
            summary,
            upstream: Arc::new(upstream),
            helpdesk,
        })
    }

    /// Builds and serves `summary`; the helpdesk gets the mock's token.
    async fn serve(&self, summary: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        let built = self.build(summary)?;
        self.server
            .add_upstream(built.upstream)
            .map_err(|e| invalid(e.to_string()))?;
        if built.helpdesk {
            let slot = CredentialSlot::workspace(self.workspace.clone(), &built.summary.name);
            if let Err(e) = self.vault.put(&slot, self.helpdesk.token.clone()).await {
                let _ = self.server.remove_upstream(&built.summary.name);
                return Err(backend(e));
            }
        }
        Ok(built.summary)
    }

    /// Writes the set (to a temporary file, then renamed over the old one).
    fn persist(&self, connectors: &[ConnectorSummary]) -> Result<(), DirectoryError> {
        let text = serde_json::to_vec_pretty(connectors).map_err(backend)?;
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(backend)?;
        std::fs::rename(&tmp, &self.file).map_err(backend)
    }
}

/// The demo helpdesk as a kept connector.
fn helpdesk_connector() -> ConnectorSummary {
    ConnectorSummary {
        name: super::DEMO_CONNECTOR.into(),
        kind: "rest".into(),
        config: serde_json::json!({ "definition": HELPDESK_DEFINITION }),
    }
}

fn exists(name: &str) -> DirectoryError {
    invalid(format!(
        "a connector named {name:?} already exists; remove it first"
    ))
}

#[async_trait]
impl ConnectorDirectory for DemoConnectors {
    async fn list(&self) -> Result<Vec<ConnectorSummary>, DirectoryError> {
        Ok(self.connectors.lock().await.clone())
    }

    async fn check(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        if self
            .connectors
            .lock()
            .await
            .iter()
            .any(|c| c.name == connector.name)
        {
            return Err(exists(&connector.name));
        }
        Ok(self.build(connector)?.summary)
    }

    async fn add(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        let mut connectors = self.connectors.lock().await;
        if connectors.iter().any(|c| c.name == connector.name) {
            return Err(exists(&connector.name));
        }
        let added = self.serve(connector).await?;
        connectors.push(added.clone());
        if let Err(e) = self.persist(&connectors) {
            connectors.pop();
            let _ = self.server.remove_upstream(&added.name);
            return Err(e);
        }
        Ok(added)
    }

    async fn remove(&self, name: &str) -> Result<ConnectorSummary, DirectoryError> {
        let mut connectors = self.connectors.lock().await;
        let at = connectors
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| DirectoryError::NotFound(format!("connector {name:?}")))?;
        // Stop serving it first: from here on its calls are refused.
        let _ = self.server.remove_upstream(name);
        let removed = connectors.remove(at);
        if let Err(e) = self.persist(&connectors) {
            // Still not served; a restart would bring it back, so say so.
            tracing::error!(connector = %name, error = %e, "the connector list could not be saved");
            return Err(e);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtual_server::Naming;
    use fortress_core::vault::MemoryVault;

    fn helpdesk() -> Helpdesk {
        Helpdesk {
            base_url: "http://127.0.0.1:9".into(),
            email: "agent@helpdesk.example".into(),
            token: Secret::from_text("zd-token".into()),
        }
    }

    async fn open(dir: &Path) -> (DemoConnectors, Arc<VirtualServer>, Arc<MemoryVault>) {
        let server = Arc::new(VirtualServer::managed(Vec::new(), Naming::default()).unwrap());
        let vault = Arc::new(MemoryVault::new());
        let directory = DemoConnectors::open(
            dir,
            server.clone(),
            vault.clone(),
            WorkspaceId::new("demo"),
            helpdesk(),
        )
        .await
        .unwrap();
        (directory, server, vault)
    }

    fn served(server: &VirtualServer) -> Vec<String> {
        server
            .upstreams()
            .iter()
            .map(|u| u.name().to_owned())
            .collect()
    }

    fn summary(name: &str, config: serde_json::Value) -> ConnectorSummary {
        ConnectorSummary {
            name: name.into(),
            kind: "rest".into(),
            config,
        }
    }

    #[tokio::test]
    async fn connectors_are_added_removed_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, server, vault) = open(dir.path()).await;
        assert_eq!(served(&server), ["zendesk"]);
        // The helpdesk got the mock's token.
        let slot = CredentialSlot::workspace(WorkspaceId::new("demo"), "zendesk");
        assert_eq!(
            vault.resolve(&slot).await.unwrap().secret().expose(),
            b"zd-token"
        );
        let mut changes = server.subscribe();

        let crm = summary(
            "crm",
            serde_json::json!({"definition": "salesforce", "settings": {"instance": "acme"}}),
        );
        let checked = directory.check(crm.clone()).await.unwrap();
        assert_eq!(served(&server), ["zendesk"], "a check serves nothing");
        directory.add(checked).await.unwrap();
        assert_eq!(served(&server), ["zendesk", "crm"]);
        assert_eq!(
            changes.recv().await.unwrap().method,
            "notifications/tools/list_changed"
        );
        assert!(matches!(
            directory.add(crm.clone()).await,
            Err(DirectoryError::Invalid(_))
        ));

        directory.remove("zendesk").await.unwrap();
        assert_eq!(served(&server), ["crm"]);
        assert!(matches!(
            directory.remove("zendesk").await,
            Err(DirectoryError::NotFound(_))
        ));

        // A restart serves the kept set: crm, not the removed helpdesk.
        drop(directory);
        let (directory, server, _) = open(dir.path()).await;
        assert_eq!(served(&server), ["crm"]);
        // Re-adding the helpdesk binds it to the mock again.
        directory
            .add(summary(
                "zendesk",
                serde_json::json!({"definition": "zendesk"}),
            ))
            .await
            .unwrap();
        assert_eq!(directory.names().await, ["crm", "zendesk"]);
    }

    #[tokio::test]
    async fn invalid_connectors_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, server, _) = open(dir.path()).await;
        for (connector, reason) in [
            (
                summary("Bad Name", serde_json::json!({"definition": "zendesk"})),
                "connector name",
            ),
            (
                summary("a__b", serde_json::json!({"definition": "zendesk"})),
                "connector name",
            ),
            (
                summary("x", serde_json::json!({"definition": "github"})),
                "no built-in connector definition",
            ),
            (
                summary("x", serde_json::json!({"definition_toml": "name = 3"})),
                "the uploaded definition is invalid",
            ),
            (summary("x", serde_json::json!({})), "give either"),
            (
                summary(
                    "x",
                    serde_json::json!({"definition": "zendesk", "url": "x"}),
                ),
                "unknown field",
            ),
            (
                summary(
                    "x",
                    serde_json::json!({"definition": "salesforce", "settings": {"instance": "no spaces"}}),
                ),
                "instance",
            ),
            (
                ConnectorSummary {
                    kind: "mcp".into(),
                    ..summary("x", serde_json::json!({"definition": "zendesk"}))
                },
                "cannot be added here",
            ),
        ] {
            match directory.check(connector).await {
                Err(DirectoryError::Invalid(message)) => {
                    assert!(message.contains(reason), "{message}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
        assert_eq!(served(&server), ["zendesk"]);
    }
}
