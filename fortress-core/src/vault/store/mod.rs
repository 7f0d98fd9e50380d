//! Storage of sealed credentials: the [`CredentialStore`] trait and its SQLite (embedded
//! default) and PostgreSQL backends.
//!
//! A store only ever sees ciphertext: the secret sealed under its data key, the data key
//! wrapped under the workspace KEK, and metadata. It keeps one row per slot (the current
//! version), so a rotation replaces the previous ciphertext in the same write, and it counts
//! KEK encryptions per workspace so the vault can rotate keys before the nonce limit.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::store::{CredentialStore, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path()).await.unwrap();
//! let usage = store.reserve_wraps(&WorkspaceId::new("acme"), 1).await.unwrap();
//! assert_eq!((usage.generation, usage.wraps), (1, 1));
//! # });
//! ```

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::envelope::Sealed;
use super::{CredentialInfo, CredentialSlot, CredentialState, VaultError};
use crate::subject::WorkspaceId;

pub use postgres::{PgPurge, PgStore};
pub use sqlite::{SQLITE_FILE, SqliteStore};

/// The name of the credentials table in both backends.
pub const CREDENTIALS_TABLE: &str = "fortress_vault_credentials";
/// The name of the KEK usage table in both backends.
pub const KEKS_TABLE: &str = "fortress_vault_keks";

/// One stored credential: metadata and ciphertext, never plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredential {
    /// Where it lives.
    pub slot: CredentialSlot,
    /// Current version.
    pub version: u32,
    /// Active or revoked.
    pub state: CredentialState,
    /// When this version was written (or its state last changed).
    pub updated_at: DateTime<Utc>,
    /// The KEK generation that wrapped the data key.
    pub kek_generation: u32,
    /// The data key, sealed under the KEK.
    pub wrapped_key: Sealed,
    /// The secret, sealed under the data key.
    pub secret: Sealed,
}

impl StoredCredential {
    /// What may be known without the value.
    pub fn info(&self) -> CredentialInfo {
        CredentialInfo {
            slot: self.slot.clone(),
            version: self.version,
            state: self.state,
            updated_at: self.updated_at,
        }
    }
}

/// How much a workspace's current KEK has been used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KekUsage {
    /// The current KEK generation (starts at 1).
    pub generation: u32,
    /// Encryptions performed under it so far (including any just reserved).
    pub wraps: u64,
}

/// Persists sealed credentials and KEK usage counters. Implementations must make each
/// method atomic: the vault relies on conditional writes for concurrency across replicas.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The slot's current row.
    async fn get(&self, slot: &CredentialSlot) -> Result<Option<StoredCredential>, VaultError>;

    /// Writes `record` as the slot's current version if the stored version is still
    /// `previous` (`None`: the slot is empty). Returns `false` if another writer won.
    async fn write(
        &self,
        record: &StoredCredential,
        previous: Option<u32>,
    ) -> Result<bool, VaultError>;

    /// Sets the state of the slot; `false` when there is no such slot.
    async fn set_state(
        &self,
        slot: &CredentialSlot,
        state: CredentialState,
        at: DateTime<Utc>,
    ) -> Result<bool, VaultError>;

    /// Replaces the wrapped data key of `slot`/`version`, if it is still wrapped under
    /// `from_generation`.
    async fn rewrap(
        &self,
        slot: &CredentialSlot,
        version: u32,
        from_generation: u32,
        to_generation: u32,
        wrapped_key: &Sealed,
    ) -> Result<bool, VaultError>;

    /// Overwrites and deletes the slot's row, leaving no recoverable ciphertext where the
    /// backend allows it; `false` when there is no such slot.
    async fn delete(&self, slot: &CredentialSlot) -> Result<bool, VaultError>;

    /// The workspace's credentials, without their ciphertext.
    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError>;

    /// Rows of the workspace whose data key is wrapped under a generation older than `current`.
    async fn stale_wraps(
        &self,
        workspace: &WorkspaceId,
        current: u32,
    ) -> Result<Vec<StoredCredential>, VaultError>;

    /// Overwrites and deletes every row of the workspace and its KEK counter; returns the
    /// number of credentials deleted.
    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError>;

    /// Atomically counts `count` encryptions under the workspace's current KEK (creating
    /// generation 1 on first use) and returns the usage including them.
    async fn reserve_wraps(
        &self,
        workspace: &WorkspaceId,
        count: u64,
    ) -> Result<KekUsage, VaultError>;

    /// Moves the workspace to generation `from + 1` with a zero counter, unless another
    /// writer already moved it; returns the current generation.
    async fn advance_generation(
        &self,
        workspace: &WorkspaceId,
        from: u32,
    ) -> Result<u32, VaultError>;

    /// The workspace's KEK usage, if it has used a KEK yet.
    async fn kek_usage(&self, workspace: &WorkspaceId) -> Result<Option<KekUsage>, VaultError>;
}

#[async_trait]
impl<S: CredentialStore + ?Sized> CredentialStore for std::sync::Arc<S> {
    async fn get(&self, slot: &CredentialSlot) -> Result<Option<StoredCredential>, VaultError> {
        (**self).get(slot).await
    }
    async fn write(
        &self,
        record: &StoredCredential,
        previous: Option<u32>,
    ) -> Result<bool, VaultError> {
        (**self).write(record, previous).await
    }
    async fn set_state(
        &self,
        slot: &CredentialSlot,
        state: CredentialState,
        at: DateTime<Utc>,
    ) -> Result<bool, VaultError> {
        (**self).set_state(slot, state, at).await
    }
    async fn rewrap(
        &self,
        slot: &CredentialSlot,
        version: u32,
        from_generation: u32,
        to_generation: u32,
        wrapped_key: &Sealed,
    ) -> Result<bool, VaultError> {
        (**self)
            .rewrap(slot, version, from_generation, to_generation, wrapped_key)
            .await
    }
    async fn delete(&self, slot: &CredentialSlot) -> Result<bool, VaultError> {
        (**self).delete(slot).await
    }
    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        (**self).list(workspace).await
    }
    async fn stale_wraps(
        &self,
        workspace: &WorkspaceId,
        current: u32,
    ) -> Result<Vec<StoredCredential>, VaultError> {
        (**self).stale_wraps(workspace, current).await
    }
    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        (**self).delete_workspace(workspace).await
    }
    async fn reserve_wraps(
        &self,
        workspace: &WorkspaceId,
        count: u64,
    ) -> Result<KekUsage, VaultError> {
        (**self).reserve_wraps(workspace, count).await
    }
    async fn advance_generation(
        &self,
        workspace: &WorkspaceId,
        from: u32,
    ) -> Result<u32, VaultError> {
        (**self).advance_generation(workspace, from).await
    }
    async fn kek_usage(&self, workspace: &WorkspaceId) -> Result<Option<KekUsage>, VaultError> {
        (**self).kek_usage(workspace).await
    }
}

/// The columns both backends store, in `SELECT` order.
pub(crate) type Columns = (
    String,
    String,
    String,
    i64,
    String,
    DateTime<Utc>,
    i64,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

/// The column list matching [`Columns`].
pub(crate) const COLUMNS: &str = "workspace, connector, user_slot, version, state, updated_at, kek_generation, key_nonce, wrapped_key, nonce, ciphertext";

/// The stored form of the optional user: the empty string means "workspace-wide"
/// (empty user ids are refused by the vault, so the two cannot be confused).
pub(crate) fn user_column(slot: &CredentialSlot) -> &str {
    slot.user.as_deref().unwrap_or("")
}

pub(crate) fn state_column(state: CredentialState) -> &'static str {
    match state {
        CredentialState::Active => "active",
        CredentialState::Revoked => "revoked",
    }
}

pub(crate) fn from_columns(columns: Columns) -> Result<StoredCredential, VaultError> {
    let (
        workspace,
        connector,
        user,
        version,
        state,
        updated_at,
        generation,
        key_nonce,
        wrapped_key,
        nonce,
        ciphertext,
    ) = columns;
    let state = match state.as_str() {
        "active" => CredentialState::Active,
        "revoked" => CredentialState::Revoked,
        _ => return Err(corrupt("unknown credential state")),
    };
    Ok(StoredCredential {
        slot: CredentialSlot {
            workspace: WorkspaceId::new(workspace),
            connector,
            user: (!user.is_empty()).then_some(user),
        },
        version: u32::try_from(version).map_err(|_| corrupt("version out of range"))?,
        state,
        updated_at,
        kek_generation: u32::try_from(generation)
            .map_err(|_| corrupt("key generation out of range"))?,
        wrapped_key: Sealed::from_parts(&key_nonce, wrapped_key)
            .map_err(|_| corrupt("malformed wrapped key"))?,
        secret: Sealed::from_parts(&nonce, ciphertext)
            .map_err(|_| corrupt("malformed ciphertext"))?,
    })
}

pub(crate) fn usage_from(generation: i64, wraps: i64) -> Result<KekUsage, VaultError> {
    Ok(KekUsage {
        generation: u32::try_from(generation)
            .map_err(|_| corrupt("key generation out of range"))?,
        wraps: u64::try_from(wraps).map_err(|_| corrupt("negative key usage"))?,
    })
}

pub(crate) fn corrupt(what: &'static str) -> VaultError {
    VaultError::Backend(format!("stored credential is corrupt: {what}").into())
}

pub(crate) fn backend(e: sqlx::Error) -> VaultError {
    VaultError::Backend(Box::new(e))
}

pub(crate) fn to_i64(n: u64) -> Result<i64, VaultError> {
    i64::try_from(n).map_err(|_| VaultError::Config("counter out of range".into()))
}
