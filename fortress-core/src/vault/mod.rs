//! Credentials: the [`Vault`] trait, the per-request [`Credential`] it resolves, and an
//! in-memory vault for tests and examples.
//!
//! A vault stores upstream credentials (SaaS tokens, Anthropic keys) per workspace and
//! connector, optionally per user. [`Vault::resolve`] hands out a [`Credential`] for one
//! request: it lives only while the upstream request is built, is zeroized on drop, and
//! records how long it lived in the `fortress_credential_lifespan_seconds` histogram.
//!
//! Implementations: [`EnvelopeVault`] (the default for the SOHO and Bank tiers: AES-256-GCM
//! envelope encryption over SQLite or PostgreSQL, see [`envelope`], [`keys`], [`store`]),
//! [`ZeroTrustVault`] (fetched per request over mutual TLS, never stored), [`TieredVault`]
//! (routes each workspace to its tier), and [`MemoryVault`] for tests. The [`cli`] module
//! holds the `vault` command of the reference binaries. See `docs/security.md`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use fortress_core::secret::Secret;
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
//!
//! let vault = MemoryVault::new();
//! let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
//! vault.put(&slot, Secret::from("token-1")).await.unwrap();
//! let credential = vault.resolve(&slot).await.unwrap();
//! assert_eq!(credential.secret().expose(), b"token-1");
//! # });
//! ```

mod cache;
pub mod cli;
pub mod envelope;
mod envelope_vault;
pub mod keys;
mod lifecycle;
mod memory;
pub mod store;
mod tiered;
pub mod zero_trust;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::subject::WorkspaceId;

pub use envelope_vault::{EnvelopeVault, NIST_RANDOM_NONCE_LIMIT, VaultOptions};
pub use memory::MemoryVault;
pub use tiered::TieredVault;
pub use zero_trust::{MtlsFetcher, ZeroTrustVault};

/// Where a credential lives: a workspace's connector, optionally one user's own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CredentialSlot {
    /// The owning workspace.
    pub workspace: WorkspaceId,
    /// The connector (or upstream such as `anthropic`) the credential opens.
    pub connector: String,
    /// The user whose personal credential this is; `None` for the workspace's shared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CredentialSlot {
    /// The workspace-wide credential of a connector.
    pub fn workspace(workspace: WorkspaceId, connector: impl Into<String>) -> Self {
        Self {
            workspace,
            connector: connector.into(),
            user: None,
        }
    }

    /// A user's personal credential for a connector.
    pub fn user(
        workspace: WorkspaceId,
        connector: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Self {
            workspace,
            connector: connector.into(),
            user: Some(user.into()),
        }
    }
}

impl fmt::Display for CredentialSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{}/{}/{}", self.workspace, self.connector, user),
            None => write!(f, "{}/{}", self.workspace, self.connector),
        }
    }
}

/// The lifecycle state of a stored credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    /// Usable.
    Active,
    /// Revoked: never handed out again.
    Revoked,
}

/// What may be known about a stored credential without its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialInfo {
    /// Where it lives.
    pub slot: CredentialSlot,
    /// Its current version (1 on first put, +1 per rotation).
    pub version: u32,
    /// Active or revoked.
    pub state: CredentialState,
    /// When the current version was stored.
    pub updated_at: DateTime<Utc>,
}

/// A credential resolved for one request. Zeroized on drop; its lifespan is measured.
pub struct Credential {
    secret: Secret,
    slot: CredentialSlot,
    version: u32,
    resolved_at: Instant,
}

impl Credential {
    /// Wraps a freshly decrypted or fetched secret.
    pub fn new(slot: CredentialSlot, version: u32, secret: Secret) -> Self {
        Self {
            secret,
            slot,
            version,
            resolved_at: Instant::now(),
        }
    }

    /// The secret. Call this only where the upstream request is built.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Where the credential came from.
    pub fn slot(&self) -> &CredentialSlot {
        &self.slot
    }

    /// Which version was resolved.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("slot", &self.slot)
            .field("version", &self.version)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        // The secret zeroizes itself; here we only measure how long it lived.
        metrics::histogram!("fortress_credential_lifespan_seconds")
            .record(self.resolved_at.elapsed().as_secs_f64());
    }
}

/// Why a vault operation failed. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No credential is stored in the slot.
    #[error("no credential for {0}")]
    NotFound(CredentialSlot),
    /// The credential was revoked.
    #[error("credential for {0} is revoked")]
    Revoked(CredentialSlot),
    /// Decryption or authentication failed (tampered data, wrong key, swapped context).
    #[error("credential for {slot} cannot be decrypted: {reason}")]
    Crypto {
        /// The slot.
        slot: CredentialSlot,
        /// What failed, without key material.
        reason: String,
    },
    /// The key needed to decrypt is unavailable (for example a customer key not supplied).
    #[error("key unavailable for workspace {0}")]
    KeyUnavailable(WorkspaceId),
    /// The vault is misconfigured.
    #[error("vault configuration: {0}")]
    Config(String),
    /// Storage or a remote credential endpoint failed.
    #[error("vault backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Stores credentials and resolves them for one request at a time.
#[async_trait]
pub trait Vault: Send + Sync + 'static {
    /// Stores a new credential, or replaces the value of an existing slot as a new version.
    async fn put(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError>;

    /// Resolves the credential for one request. The caller drops it as soon as the
    /// upstream request is built.
    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError>;

    /// Rotates to a new value; the previous version stops resolving once this returns.
    async fn rotate(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError>;

    /// Revokes a credential: it is never handed out again, but its record stays until deleted.
    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError>;

    /// Permanently deletes a credential and its key material.
    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError>;

    /// Lists the credentials of a workspace (never their values).
    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError>;

    /// Permanently deletes every credential of a workspace (termination); returns how many.
    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError>;
}

#[async_trait]
impl<V: Vault + ?Sized> Vault for Arc<V> {
    async fn put(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        (**self).put(slot, secret).await
    }
    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError> {
        (**self).resolve(slot).await
    }
    async fn rotate(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        (**self).rotate(slot, secret).await
    }
    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        (**self).revoke(slot).await
    }
    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        (**self).delete(slot).await
    }
    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        (**self).list(workspace).await
    }
    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        (**self).delete_workspace(workspace).await
    }
}
