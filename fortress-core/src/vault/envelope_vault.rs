//! The default [`Vault`]: envelope encryption over a [`CredentialStore`].
//!
//! Every put seals the secret under a fresh single-use data key (AES-256-GCM, random nonce,
//! AAD = workspace, connector, user, version) and wraps the data key under the workspace's
//! KEK, derived from the root key its [`KeyProvider`] supplies. KEK encryptions are counted
//! per workspace; past the configured threshold the vault moves the workspace to a new KEK
//! generation and rewraps its data keys, long before the 2^32 random-nonce limit.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::secret::Secret;
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::keys::{ManagedKeys, RootKey};
//! use fortress_core::vault::{CredentialSlot, EnvelopeVault, Vault};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let keys = Arc::new(ManagedKeys::new(RootKey::generate()));
//! let vault = EnvelopeVault::open_sqlite(dir.path(), keys, Arc::new(MemoryAuditSink::new())).await.unwrap();
//! let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
//! vault.put(&slot, Secret::from("token-1")).await.unwrap();
//! assert_eq!(vault.resolve(&slot).await.unwrap().secret().expose(), b"token-1");
//! # });
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use serde_json::json;

use super::cache::{CacheKey, DataKeyCache};
use super::envelope::{self, CryptoError, DataKey, SymmetricKey};
use super::keys::{KeyProvider, RootKey, derive_kek};
use super::lifecycle::LifecycleAudit;
use super::store::{CredentialStore, KekUsage, PgStore, SqliteStore, StoredCredential};
use super::{Credential, CredentialInfo, CredentialSlot, CredentialState, Vault, VaultError};
use crate::audit::{AuditSink, SubjectRef};
use crate::secret::Secret;
use crate::subject::WorkspaceId;

/// NIST SP 800-38D caps a key used with random 96-bit nonces at 2^32 encryptions.
pub const NIST_RANDOM_NONCE_LIMIT: u64 = 1 << 32;

/// The longest connector or user id the vault accepts.
const MAX_NAME_LEN: usize = 256;
/// The largest secret the vault stores (credentials are tokens, keys, small JSON documents).
const MAX_SECRET_LEN: usize = 64 * 1024;
/// Conditional writes retried when another writer updates the same slot concurrently.
const WRITE_ATTEMPTS: usize = 8;

/// Tuning of an [`EnvelopeVault`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VaultOptions {
    /// KEK encryptions after which the workspace moves to a new KEK generation.
    pub rotate_kek_after: u64,
    /// How long an unwrapped data key stays cached (zero disables the cache).
    pub data_key_cache_ttl: Duration,
    /// How many unwrapped data keys may be cached at once.
    pub data_key_cache_capacity: usize,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            // Half the NIST limit: counters are reserved before use and a crash can waste
            // some, and rotation must finish well before the limit.
            rotate_kek_after: NIST_RANDOM_NONCE_LIMIT / 2,
            data_key_cache_ttl: Duration::from_secs(30),
            data_key_cache_capacity: 10_000,
        }
    }
}

impl VaultOptions {
    /// Rotates a workspace's KEK after `n` encryptions (clamped to 1..=2^32).
    #[must_use]
    pub fn with_rotate_kek_after(mut self, n: u64) -> Self {
        self.rotate_kek_after = n.clamp(1, NIST_RANDOM_NONCE_LIMIT);
        self
    }

    /// Caches unwrapped data keys for `ttl` (zero: never cache).
    #[must_use]
    pub fn with_data_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.data_key_cache_ttl = ttl;
        self
    }

    /// Caches at most `capacity` data keys.
    #[must_use]
    pub fn with_data_key_cache_capacity(mut self, capacity: usize) -> Self {
        self.data_key_cache_capacity = capacity;
        self
    }
}

/// The default vault for the SOHO and Bank tiers: envelope encryption over SQLite or
/// PostgreSQL, lifecycle events to the audit trail.
pub struct EnvelopeVault {
    store: Arc<dyn CredentialStore>,
    keys: Arc<dyn KeyProvider>,
    audit: LifecycleAudit,
    cache: DataKeyCache,
    options: VaultOptions,
}

impl EnvelopeVault {
    /// A vault over any store, with default options.
    pub fn new(
        store: Arc<dyn CredentialStore>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        let options = VaultOptions::default();
        Self {
            store,
            keys,
            audit: LifecycleAudit::new(audit),
            cache: DataKeyCache::new(options.data_key_cache_ttl, options.data_key_cache_capacity),
            options,
        }
    }

    /// The deployment's vault: PostgreSQL when `database_url` is given, else the embedded
    /// `vault.sqlite3` in `data_dir` (created if needed). The one place both gateways and
    /// the `vault` command choose the backend from a URL (a gateway that already holds the
    /// shared PostgreSQL pool builds the store on that pool instead).
    pub async fn open(
        data_dir: &Path,
        database_url: Option<&str>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, VaultError> {
        match database_url {
            Some(url) => Self::open_postgres(url, keys, audit).await,
            None => Self::open_sqlite(data_dir, keys, audit).await,
        }
    }

    /// The embedded default: `vault.sqlite3` in `data_dir`.
    pub async fn open_sqlite(
        data_dir: impl AsRef<Path>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, VaultError> {
        let store = SqliteStore::open(data_dir.as_ref()).await?;
        Ok(Self::new(Arc::new(store), keys, audit))
    }

    /// The scale-out backend: a `postgres://` URL.
    pub async fn open_postgres(
        url: &str,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, VaultError> {
        let store = PgStore::connect(url).await?;
        Ok(Self::new(Arc::new(store), keys, audit))
    }

    /// Replaces the tuning (and empties the data-key cache).
    #[must_use]
    pub fn with_options(mut self, options: VaultOptions) -> Self {
        self.cache = DataKeyCache::new(options.data_key_cache_ttl, options.data_key_cache_capacity);
        self.options = options;
        self
    }

    /// Attributes lifecycle events to `actor` (for example the admin using the CLI).
    #[must_use]
    pub fn with_actor(mut self, actor: SubjectRef) -> Self {
        self.audit = self.audit.with_actor(actor);
        self
    }

    /// The store (for operations and tests; it only ever holds ciphertext).
    pub fn store(&self) -> &Arc<dyn CredentialStore> {
        &self.store
    }

    /// How many unwrapped data keys are cached right now.
    pub fn cached_data_keys(&self) -> usize {
        self.cache.len()
    }

    /// Drops (and zeroizes) every cached data key of a workspace, for example when its
    /// customer key has been withdrawn and nothing may decrypt from now on.
    pub fn forget_cached_keys(&self, workspace: &WorkspaceId) {
        self.cache.evict_workspace(workspace);
    }

    /// The workspace's KEK generation and usage, if it has stored anything yet.
    pub async fn kek_usage(&self, workspace: &WorkspaceId) -> Result<Option<KekUsage>, VaultError> {
        self.store.kek_usage(workspace).await
    }

    /// Moves the workspace to a new KEK generation now and rewraps every data key.
    /// Returns the new generation.
    pub async fn rotate_workspace_key(&self, workspace: &WorkspaceId) -> Result<u32, VaultError> {
        let root = self.keys.root_key(workspace).await?;
        let current = match self.store.kek_usage(workspace).await? {
            Some(usage) => usage.generation,
            None => self.store.reserve_wraps(workspace, 0).await?.generation,
        };
        self.rotate_kek(workspace, &root, current).await
    }

    async fn rotate_kek(
        &self,
        workspace: &WorkspaceId,
        root: &RootKey,
        from: u32,
    ) -> Result<u32, VaultError> {
        let current = self.store.advance_generation(workspace, from).await?;
        let rewrapped = self.rewrap_stale(workspace, root, current).await?;
        self.audit
            .workspace_changed(
                "credential.kek_rotate",
                workspace,
                [
                    ("generation", json!(current)),
                    ("rewrapped", json!(rewrapped)),
                    ("key_source", json!(self.keys.source(workspace))),
                ],
            )
            .await?;
        Ok(current)
    }

    /// Rewraps data keys still under an older generation; returns how many moved.
    async fn rewrap_stale(
        &self,
        workspace: &WorkspaceId,
        root: &RootKey,
        current: u32,
    ) -> Result<usize, VaultError> {
        let rows = self.store.stale_wraps(workspace, current).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let usage = self
            .store
            .reserve_wraps(workspace, rows.len() as u64)
            .await?;
        let kek = derive_kek(root, workspace, usage.generation);
        let mut moved = 0;
        for row in rows {
            let old = derive_kek(root, workspace, row.kek_generation);
            let data_key = envelope::unwrap_data_key(
                &old,
                &row.wrapped_key,
                &row.slot,
                row.version,
                row.kek_generation,
            )
            .map_err(|e| crypto(&row.slot, &e))?;
            let wrapped =
                envelope::wrap_key(&kek, &data_key, &row.slot, row.version, usage.generation)
                    .map_err(|e| crypto(&row.slot, &e))?;
            // `false`: the row changed meanwhile (rotated, deleted); its new wrap is current.
            if self
                .store
                .rewrap(
                    &row.slot,
                    row.version,
                    row.kek_generation,
                    usage.generation,
                    &wrapped,
                )
                .await?
            {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Reserves one KEK encryption, rotating first when the current KEK has done its share.
    async fn reserve_wrap(
        &self,
        workspace: &WorkspaceId,
        root: &RootKey,
    ) -> Result<u32, VaultError> {
        let limit = self.options.rotate_kek_after;
        let usage = self.store.reserve_wraps(workspace, 1).await?;
        if usage.wraps <= limit {
            return Ok(usage.generation);
        }
        self.rotate_kek(workspace, root, usage.generation).await?;
        let usage = self.store.reserve_wraps(workspace, 1).await?;
        if usage.wraps <= limit {
            return Ok(usage.generation);
        }
        Err(VaultError::Config(format!(
            "KEK rotation threshold {limit} is too small for the number of credentials in workspace {workspace}"
        )))
    }

    async fn write_version(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
        must_exist: bool,
        action: &str,
    ) -> Result<CredentialInfo, VaultError> {
        validate_slot(slot)?;
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            return Err(VaultError::Config(format!(
                "a credential must be 1 to {MAX_SECRET_LEN} bytes long (got {})",
                secret.len()
            )));
        }
        let root = self.keys.root_key(&slot.workspace).await?;
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.get(slot).await?;
            if must_exist && current.is_none() {
                return Err(VaultError::NotFound(slot.clone()));
            }
            let previous = current.as_ref().map(|c| c.version);
            let version = match previous {
                None => 1,
                Some(v) => v.checked_add(1).ok_or_else(|| {
                    VaultError::Config(format!("credential {slot} has run out of versions"))
                })?,
            };
            let generation = self.reserve_wrap(&slot.workspace, &root).await?;
            let kek = derive_kek(&root, &slot.workspace, generation);
            let record = seal_record(&kek, slot, version, generation, &secret)?;
            if self.store.write(&record, previous).await? {
                self.cache.evict_slot(slot);
                self.audit
                    .slot_changed(
                        action,
                        slot,
                        [
                            ("version", json!(version)),
                            ("kek_generation", json!(generation)),
                            ("key_source", json!(self.keys.source(&slot.workspace))),
                        ],
                    )
                    .await?;
                return Ok(record.info());
            }
        }
        Err(VaultError::Backend(
            format!("credential {slot} kept changing concurrently; try again").into(),
        ))
    }

    async fn data_key(&self, row: &StoredCredential) -> Result<SymmetricKey, VaultError> {
        let cache_key = CacheKey {
            slot: row.slot.clone(),
            version: row.version,
            wrap_nonce: row.wrapped_key.nonce,
        };
        if let Some(key) = self.cache.get(&cache_key, Instant::now()) {
            return Ok(key);
        }
        let workspace = &row.slot.workspace;
        let root = self.keys.root_key(workspace).await?;
        let kek = derive_kek(&root, workspace, row.kek_generation);
        let key = envelope::unwrap_data_key(
            &kek,
            &row.wrapped_key,
            &row.slot,
            row.version,
            row.kek_generation,
        )
        .map_err(|e| crypto(&row.slot, &e))?;
        self.cache.insert(cache_key, key.clone(), Instant::now());
        Ok(key)
    }
}

fn seal_record(
    kek: &SymmetricKey,
    slot: &CredentialSlot,
    version: u32,
    generation: u32,
    secret: &Secret,
) -> Result<StoredCredential, VaultError> {
    let data_key = DataKey::generate();
    let wrapped_key = envelope::wrap_data_key(kek, &data_key, slot, version, generation)
        .map_err(|e| crypto(slot, &e))?;
    let sealed = data_key
        .seal_secret(slot, version, secret.expose())
        .map_err(|e| crypto(slot, &e))?;
    Ok(StoredCredential {
        slot: slot.clone(),
        version,
        state: CredentialState::Active,
        // PostgreSQL keeps microseconds; round here so every backend reports the same time.
        updated_at: Utc::now().trunc_subsecs(6),
        kek_generation: generation,
        wrapped_key,
        secret: sealed,
    })
}

fn crypto(slot: &CredentialSlot, error: &CryptoError) -> VaultError {
    VaultError::Crypto {
        slot: slot.clone(),
        reason: error.to_string(),
    }
}

/// Refuses slots that could be confused with one another or abuse storage.
pub(crate) fn validate_slot(slot: &CredentialSlot) -> Result<(), VaultError> {
    let bad = |what: &str| {
        Err(VaultError::Config(format!(
            "invalid credential slot: {what}"
        )))
    };
    if slot.workspace.as_str().is_empty() || slot.workspace.as_str().len() > MAX_NAME_LEN {
        return bad("workspace id must be 1 to 256 bytes");
    }
    if slot.connector.is_empty() || slot.connector.len() > MAX_NAME_LEN {
        return bad("connector must be 1 to 256 bytes");
    }
    if let Some(user) = &slot.user {
        if user.is_empty() || user.len() > MAX_NAME_LEN {
            return bad("user id must be 1 to 256 bytes");
        }
    }
    let names = [
        slot.workspace.as_str(),
        slot.connector.as_str(),
        slot.user.as_deref().unwrap_or(""),
    ];
    if names.iter().any(|n| n.chars().any(char::is_control)) {
        return bad("names cannot contain control characters");
    }
    Ok(())
}

#[async_trait]
impl Vault for EnvelopeVault {
    async fn put(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.write_version(slot, secret, false, "credential.put")
            .await
    }

    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError> {
        validate_slot(slot)?;
        let row = self
            .store
            .get(slot)
            .await?
            .ok_or_else(|| VaultError::NotFound(slot.clone()))?;
        if row.state == CredentialState::Revoked {
            return Err(VaultError::Revoked(slot.clone()));
        }
        let data_key = self.data_key(&row).await?;
        let mut plaintext = envelope::open(
            &data_key,
            &envelope::secret_aad(slot, row.version),
            &row.secret,
        )
        .map_err(|e| crypto(slot, &e))?;
        // Move the bytes out of the zeroizing buffer without copying them.
        let secret = Secret::new(std::mem::take(&mut *plaintext));
        Ok(Credential::new(slot.clone(), row.version, secret))
    }

    async fn rotate(
        &self,
        slot: &CredentialSlot,
        secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.write_version(slot, secret, true, "credential.rotate")
            .await
    }

    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        validate_slot(slot)?;
        if !self
            .store
            .set_state(slot, CredentialState::Revoked, Utc::now().trunc_subsecs(6))
            .await?
        {
            return Err(VaultError::NotFound(slot.clone()));
        }
        self.cache.evict_slot(slot);
        self.audit.slot_changed("credential.revoke", slot, []).await
    }

    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        validate_slot(slot)?;
        if !self.store.delete(slot).await? {
            return Err(VaultError::NotFound(slot.clone()));
        }
        self.cache.evict_slot(slot);
        self.audit.slot_changed("credential.delete", slot, []).await
    }

    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        self.store.list(workspace).await
    }

    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        let deleted = self.store.delete_workspace(workspace).await?;
        self.cache.evict_workspace(workspace);
        let key_destroyed = self.keys.destroy(workspace).await?;
        self.audit
            .workspace_changed(
                "credential.delete_workspace",
                workspace,
                [
                    ("deleted", json!(deleted)),
                    ("key_destroyed", json!(key_destroyed)),
                    ("key_source", json!(self.keys.source(workspace))),
                ],
            )
            .await?;
        Ok(deleted)
    }
}

impl std::fmt::Debug for EnvelopeVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeVault")
            .field("options", &self.options)
            .field("cached_data_keys", &self.cache.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_validated() {
        let ws = WorkspaceId::new("w");
        assert!(validate_slot(&CredentialSlot::workspace(ws.clone(), "zendesk")).is_ok());
        assert!(validate_slot(&CredentialSlot::workspace(ws.clone(), "")).is_err());
        assert!(validate_slot(&CredentialSlot::user(ws.clone(), "gh", "")).is_err());
        assert!(validate_slot(&CredentialSlot::workspace(ws.clone(), "a\nb")).is_err());
        assert!(validate_slot(&CredentialSlot::workspace(WorkspaceId::new(""), "gh")).is_err());
        assert!(validate_slot(&CredentialSlot::workspace(ws, "x".repeat(257))).is_err());
    }

    #[tokio::test]
    async fn open_picks_sqlite_in_the_data_dir_unless_a_database_url_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let keys = || -> Arc<dyn KeyProvider> {
            Arc::new(super::super::keys::ManagedKeys::new(
                super::super::keys::RootKey::generate(),
            ))
        };
        let audit = || Arc::new(crate::audit::MemoryAuditSink::new());
        // A PostgreSQL URL is used, not the data directory (this one does not parse).
        let refused = EnvelopeVault::open(
            &data,
            Some("postgres://127.0.0.1:no-port/none"),
            keys(),
            audit(),
        )
        .await;
        assert!(refused.is_err());
        assert!(!data.join("vault.sqlite3").exists());
        let vault = EnvelopeVault::open(&data, None, keys(), audit())
            .await
            .unwrap();
        let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
        vault.put(&slot, Secret::from("t-1")).await.unwrap();
        assert!(data.join("vault.sqlite3").exists());
    }

    #[test]
    fn rotation_threshold_is_clamped_to_the_nist_limit() {
        assert_eq!(
            VaultOptions::default()
                .with_rotate_kek_after(u64::MAX)
                .rotate_kek_after,
            1 << 32
        );
        assert_eq!(
            VaultOptions::default()
                .with_rotate_kek_after(0)
                .rotate_kek_after,
            1
        );
        assert!(VaultOptions::default().rotate_kek_after < NIST_RANDOM_NONCE_LIMIT);
    }
}
