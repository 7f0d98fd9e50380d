//! One [`Vault`] for all three tiers: Zero Trust workspaces are served by a
//! [`ZeroTrustVault`] (fetched per request, never stored), every other workspace by the
//! stored vault (an [`EnvelopeVault`](super::EnvelopeVault) whose key provider tells SOHO
//! from Bank workspaces).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Credential, CredentialInfo, CredentialSlot, Vault, VaultError, ZeroTrustVault};
use crate::secret::Secret;
use crate::subject::WorkspaceId;

/// Routes each workspace to the vault of its tier.
pub struct TieredVault {
    stored: Arc<dyn Vault>,
    zero_trust: ZeroTrustVault,
}

impl TieredVault {
    /// Zero Trust workspaces go to `zero_trust`, the rest to `stored`.
    pub fn new(stored: Arc<dyn Vault>, zero_trust: ZeroTrustVault) -> Self {
        Self { stored, zero_trust }
    }

    fn route(&self, workspace: &WorkspaceId) -> &dyn Vault {
        if self.zero_trust.serves(workspace) {
            &self.zero_trust
        } else {
            self.stored.as_ref()
        }
    }
}

impl std::fmt::Debug for TieredVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredVault")
            .field("zero_trust", &self.zero_trust)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Vault for TieredVault {
    async fn put(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.route(&slot.workspace).put(slot, secret).await
    }
    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError> {
        self.route(&slot.workspace).resolve(slot).await
    }
    async fn rotate(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.route(&slot.workspace).rotate(slot, secret).await
    }
    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        self.route(&slot.workspace).revoke(slot).await
    }
    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        self.route(&slot.workspace).delete(slot).await
    }
    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        self.route(workspace).list(workspace).await
    }
    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        self.route(workspace).delete_workspace(workspace).await
    }
}
