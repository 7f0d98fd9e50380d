//! An in-memory vault for tests and examples. Values are held in `Secret`s (zeroized on
//! drop) but are not encrypted: never use it for real credentials.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::{Credential, CredentialInfo, CredentialSlot, CredentialState, Vault, VaultError};
use crate::secret::Secret;
use crate::subject::WorkspaceId;

struct Entry {
    info: CredentialInfo,
    secret: Secret,
}

/// A vault that keeps credentials in process memory.
#[derive(Default)]
pub struct MemoryVault {
    entries: Mutex<BTreeMap<CredentialSlot, Entry>>,
}

impl MemoryVault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CredentialSlot, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written, so recover.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Vault for MemoryVault {
    async fn put(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        let mut entries = self.lock();
        let version = entries.get(slot).map_or(1, |e| e.info.version + 1);
        let info = CredentialInfo {
            slot: slot.clone(),
            version,
            state: CredentialState::Active,
            updated_at: Utc::now(),
        };
        entries.insert(
            slot.clone(),
            Entry {
                info: info.clone(),
                secret,
            },
        );
        Ok(info)
    }

    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError> {
        let entries = self.lock();
        let entry = entries
            .get(slot)
            .ok_or_else(|| VaultError::NotFound(slot.clone()))?;
        if entry.info.state == CredentialState::Revoked {
            return Err(VaultError::Revoked(slot.clone()));
        }
        Ok(Credential::new(
            slot.clone(),
            entry.info.version,
            entry.secret.clone(),
        ))
    }

    async fn rotate(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        if !self.lock().contains_key(slot) {
            return Err(VaultError::NotFound(slot.clone()));
        }
        self.put(slot, secret).await
    }

    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(slot)
            .ok_or_else(|| VaultError::NotFound(slot.clone()))?;
        entry.info.state = CredentialState::Revoked;
        entry.info.updated_at = Utc::now();
        Ok(())
    }

    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        self.lock()
            .remove(slot)
            .map(drop)
            .ok_or_else(|| VaultError::NotFound(slot.clone()))
    }

    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        Ok(self
            .lock()
            .values()
            .filter(|e| &e.info.slot.workspace == workspace)
            .map(|e| e.info.clone())
            .collect())
    }

    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|slot, _| &slot.workspace != workspace);
        Ok((before - entries.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lifecycle() {
        let vault = MemoryVault::new();
        let ws = WorkspaceId::new("w");
        let slot = CredentialSlot::workspace(ws.clone(), "zendesk");
        assert!(matches!(
            vault.resolve(&slot).await,
            Err(VaultError::NotFound(_))
        ));
        assert_eq!(
            vault.put(&slot, Secret::from("a")).await.unwrap().version,
            1
        );
        assert_eq!(
            vault
                .rotate(&slot, Secret::from("b"))
                .await
                .unwrap()
                .version,
            2
        );
        assert_eq!(vault.resolve(&slot).await.unwrap().secret().expose(), b"b");
        vault.revoke(&slot).await.unwrap();
        assert!(matches!(
            vault.resolve(&slot).await,
            Err(VaultError::Revoked(_))
        ));
        assert_eq!(
            vault.list(&ws).await.unwrap()[0].state,
            CredentialState::Revoked
        );
        vault
            .put(
                &CredentialSlot::user(ws.clone(), "gh", "bob"),
                Secret::from("c"),
            )
            .await
            .unwrap();
        assert_eq!(vault.delete_workspace(&ws).await.unwrap(), 2);
        assert!(vault.list(&ws).await.unwrap().is_empty());
    }
}
