//! The demo's connectors as the dashboard sees them (Management → Connectors).
//!
//! The demo's connectors are fixed at start, so adding one is refused with a pointer to
//! the configuration. Removing one deletes its vault credentials at once: its calls then
//! fail closed (no credential to inject) until the demo is restarted.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fortress_core::admin::directory::{ConnectorDirectory, ConnectorSummary, DirectoryError};
use fortress_core::admin::sources::SourceError;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::Vault;

/// The connectors of a running demo, over the demo's vault.
pub struct DemoConnectors {
    vault: Arc<dyn Vault>,
    workspace: WorkspaceId,
    connectors: Mutex<Vec<ConnectorSummary>>,
}

impl DemoConnectors {
    /// `connectors`, whose credentials sit in `vault` under `workspace`.
    pub fn new(
        vault: Arc<dyn Vault>,
        workspace: WorkspaceId,
        connectors: Vec<ConnectorSummary>,
    ) -> Self {
        Self {
            vault,
            workspace,
            connectors: Mutex::new(connectors),
        }
    }

    fn connectors(&self) -> std::sync::MutexGuard<'_, Vec<ConnectorSummary>> {
        self.connectors.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn vault_failed(e: fortress_core::vault::VaultError) -> DirectoryError {
    DirectoryError::Backend(SourceError(Box::new(e)))
}

#[async_trait]
impl ConnectorDirectory for DemoConnectors {
    async fn list(&self) -> Result<Vec<ConnectorSummary>, DirectoryError> {
        Ok(self.connectors().clone())
    }

    async fn add(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        Err(DirectoryError::Invalid(format!(
            "the demo's connectors are fixed; add {:?} to a `fortress-mcp serve` configuration",
            connector.name
        )))
    }

    async fn remove(&self, name: &str) -> Result<ConnectorSummary, DirectoryError> {
        let removed = {
            let mut connectors = self.connectors();
            let at = connectors
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| DirectoryError::NotFound(format!("connector {name:?}")))?;
            connectors.remove(at)
        };
        let slots = self
            .vault
            .list(&self.workspace)
            .await
            .map_err(vault_failed)?;
        for info in slots.into_iter().filter(|c| c.slot.connector == name) {
            self.vault.delete(&info.slot).await.map_err(vault_failed)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::secret::Secret;
    use fortress_core::vault::{CredentialSlot, MemoryVault};

    fn summary(name: &str) -> ConnectorSummary {
        ConnectorSummary {
            name: name.into(),
            kind: "rest".into(),
            config: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn removing_a_connector_deletes_its_credentials_only() {
        let vault = Arc::new(MemoryVault::new());
        let local = WorkspaceId::new("local");
        let zendesk = CredentialSlot::workspace(local.clone(), "zendesk");
        let other = CredentialSlot::workspace(local.clone(), "salesforce");
        vault
            .put(&zendesk, Secret::from_text("zd".into()))
            .await
            .unwrap();
        vault
            .put(&other, Secret::from_text("sf".into()))
            .await
            .unwrap();
        let directory = DemoConnectors::new(
            vault.clone(),
            local.clone(),
            vec![summary("zendesk"), summary("salesforce")],
        );

        let removed = directory.remove("zendesk").await.unwrap();
        assert_eq!(removed.name, "zendesk");
        let names: Vec<String> = directory
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["salesforce"]);
        let left: Vec<String> = vault
            .list(&local)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.slot.connector)
            .collect();
        assert_eq!(left, ["salesforce"]);
        assert!(matches!(
            directory.remove("zendesk").await,
            Err(DirectoryError::NotFound(_))
        ));
        assert!(matches!(
            directory.add(summary("github")).await,
            Err(DirectoryError::Invalid(_))
        ));
    }
}
