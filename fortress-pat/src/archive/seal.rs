//! Archive objects sealed with the core vault's envelope encryption.
//!
//! Each workspace has a current data key (AES-256, random), wrapped by the workspace's
//! archive key-encryption key — derived from the root key its tier's
//! [`KeyProvider`](fortress_core::vault::keys::KeyProvider) supplies (the SOHO master key, or
//! the Bank customer's own key, so withdrawing that key makes the archive unreadable).
//! An object carries its wrapped data key, so objects are self-contained and no key
//! database is needed. The data key is replaced every hour and after [`ROTATE_AFTER`]
//! objects, far below the 2^32 random-nonce limit of AES-GCM.
//!
//! ```text
//! "FPA1" | KEK generation (u32 BE) | wrapped data key (12-byte nonce, 48 bytes) | nonce (12) | ciphertext ‖ tag
//! ```
//!
//! The object's associated data is its key (`<workspace>/<date>/<request id>.request`) and
//! the header, so an object moved to another key, or given another wrapped key, fails to
//! open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fortress_core::subject::WorkspaceId;
use fortress_core::vault::VaultError;
use fortress_core::vault::envelope::{self, NONCE_LEN, Sealed, SymmetricKey, TAG_LEN};
use fortress_core::vault::keys::{KeyProvider, derive_purpose_kek};

use super::ArchiveError;

/// The KEK purpose label of the archive (independent of the credential vault's KEKs).
pub const KEK_PURPOSE: &str = "pat-archive";
/// Objects sealed under one data key before a fresh one is made.
pub const ROTATE_AFTER: u64 = 1 << 24;
/// How long one data key is used at most.
const KEY_LIFETIME: Duration = Duration::from_secs(3600);
/// The archive KEK generation (the KEK wraps one data key an hour, so it never nears the
/// nonce limit; the field lets a later generation coexist with this one).
const KEK_GENERATION: u32 = 1;

const MAGIC: &[u8; 4] = b"FPA1";
const WRAPPED_LEN: usize = envelope::KEY_LEN + TAG_LEN;
const HEADER_LEN: usize = MAGIC.len() + 4 + NONCE_LEN + WRAPPED_LEN;

struct CurrentKey {
    key: SymmetricKey,
    header: Vec<u8>,
    uses: u64,
    made: Instant,
}

/// Seals and opens archive objects under per-workspace envelope keys.
pub struct ArchiveSealer {
    keys: Arc<dyn KeyProvider>,
    current: Mutex<HashMap<WorkspaceId, CurrentKey>>,
}

impl ArchiveSealer {
    /// Uses the tier's key provider (the same one the credential vault uses).
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Self {
            keys,
            current: Mutex::new(HashMap::new()),
        }
    }

    /// Encrypts `plaintext` for `workspace`, bound to `object_key`.
    pub async fn seal(
        &self,
        workspace: &WorkspaceId,
        object_key: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ArchiveError> {
        let (key, header) = match self.take_current(workspace) {
            Some(current) => current,
            None => self.new_data_key(workspace).await?,
        };
        let sealed = envelope::seal(&key, &object_aad(object_key, &header), plaintext)
            .map_err(|_| ArchiveError::Crypto)?;
        let mut out = Vec::with_capacity(header.len() + NONCE_LEN + sealed.ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&sealed.ciphertext);
        Ok(out)
    }

    /// Decrypts an object of `workspace` stored under `object_key`.
    pub async fn open(
        &self,
        workspace: &WorkspaceId,
        object_key: &str,
        object: &[u8],
    ) -> Result<Vec<u8>, ArchiveError> {
        if object.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || &object[..MAGIC.len()] != MAGIC {
            return Err(ArchiveError::Crypto);
        }
        let (header, body) = object.split_at(HEADER_LEN);
        let generation = u32::from_be_bytes(
            header[MAGIC.len()..MAGIC.len() + 4]
                .try_into()
                .map_err(|_| ArchiveError::Crypto)?,
        );
        let wrap_at = MAGIC.len() + 4;
        let wrapped = Sealed::from_parts(
            &header[wrap_at..wrap_at + NONCE_LEN],
            header[wrap_at + NONCE_LEN..].to_vec(),
        )
        .map_err(|_| ArchiveError::Crypto)?;
        let root = self.keys.root_key(workspace).await.map_err(key_error)?;
        let kek = derive_purpose_kek(&root, KEK_PURPOSE, workspace, generation);
        let key = envelope::unwrap_key_with(&kek, &wrapped, &data_key_aad(workspace, generation))
            .map_err(|_| ArchiveError::Crypto)?;
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let sealed =
            Sealed::from_parts(nonce, ciphertext.to_vec()).map_err(|_| ArchiveError::Crypto)?;
        let plain = envelope::open(&key, &object_aad(object_key, header), &sealed)
            .map_err(|_| ArchiveError::Crypto)?;
        Ok(plain.to_vec())
    }

    /// The workspace's current data key, counted as used once, unless it is due for
    /// replacement.
    fn take_current(&self, workspace: &WorkspaceId) -> Option<(SymmetricKey, Vec<u8>)> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let entry = current.get_mut(workspace)?;
        if entry.uses >= ROTATE_AFTER || entry.made.elapsed() >= KEY_LIFETIME {
            current.remove(workspace);
            return None;
        }
        entry.uses += 1;
        Some((entry.key.clone(), entry.header.clone()))
    }

    /// Makes, wraps and installs a fresh data key for the workspace.
    async fn new_data_key(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<(SymmetricKey, Vec<u8>), ArchiveError> {
        let root = self.keys.root_key(workspace).await.map_err(key_error)?;
        let kek = derive_purpose_kek(&root, KEK_PURPOSE, workspace, KEK_GENERATION);
        let key = SymmetricKey::generate();
        let wrapped = envelope::wrap_key_with(&kek, &key, &data_key_aad(workspace, KEK_GENERATION))
            .map_err(|_| ArchiveError::Crypto)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&KEK_GENERATION.to_be_bytes());
        header.extend_from_slice(&wrapped.nonce);
        header.extend_from_slice(&wrapped.ciphertext);
        debug_assert_eq!(header.len(), HEADER_LEN);
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                workspace.clone(),
                CurrentKey {
                    key: key.clone(),
                    header: header.clone(),
                    uses: 1,
                    made: Instant::now(),
                },
            );
        Ok((key, header))
    }
}

fn key_error(error: VaultError) -> ArchiveError {
    tracing::error!(%error, "archive key unavailable");
    ArchiveError::KeyUnavailable
}

/// Length-prefixed fields, so no two contexts encode alike.
fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

fn data_key_aad(workspace: &WorkspaceId, generation: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_field(&mut aad, b"fortress-pat-archive/v1 data key");
    put_field(&mut aad, workspace.as_str().as_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

fn object_aad(object_key: &str, header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + object_key.len() + header.len());
    put_field(&mut aad, b"fortress-pat-archive/v1 object");
    put_field(&mut aad, object_key.as_bytes());
    put_field(&mut aad, header);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::vault::keys::{KeyFileProvider, ManagedKeys, RootKey};

    fn new_sealer() -> ArchiveSealer {
        ArchiveSealer::new(Arc::new(ManagedKeys::new(RootKey::generate())))
    }

    #[tokio::test]
    async fn objects_open_only_under_their_own_key_and_workspace() {
        let sealer = new_sealer();
        let acme = WorkspaceId::new("acme");
        let key = "acme/2026-01-01/r1.request";
        let sealed = sealer.seal(&acme, key, b"hello").await.unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(sealer.open(&acme, key, &sealed).await.unwrap(), b"hello");
        // Moved to another object key, or read as another workspace: refused.
        assert!(
            sealer
                .open(&acme, "acme/2026-01-01/r2.request", &sealed)
                .await
                .is_err()
        );
        assert!(
            sealer
                .open(&WorkspaceId::new("other"), key, &sealed)
                .await
                .is_err()
        );
        // Any flipped bit is refused.
        for at in [0, 5, HEADER_LEN - 1, HEADER_LEN + 1, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 1;
            assert!(sealer.open(&acme, key, &tampered).await.is_err(), "{at}");
        }
        assert!(sealer.open(&acme, key, &sealed[..20]).await.is_err());
        // Another master key cannot open it.
        assert!(new_sealer().open(&acme, key, &sealed).await.is_err());
    }

    #[tokio::test]
    async fn one_data_key_per_workspace_until_rotation() {
        let sealer = new_sealer();
        let acme = WorkspaceId::new("acme");
        let a = sealer.seal(&acme, "k1", b"x").await.unwrap();
        let b = sealer.seal(&acme, "k2", b"x").await.unwrap();
        let other = sealer
            .seal(&WorkspaceId::new("beta"), "k3", b"x")
            .await
            .unwrap();
        assert_eq!(a[..HEADER_LEN], b[..HEADER_LEN], "same wrapped data key");
        assert_ne!(a[..HEADER_LEN], other[..HEADER_LEN]);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..], "fresh nonces");
        sealer.current.lock().unwrap().get_mut(&acme).unwrap().uses = ROTATE_AFTER;
        let c = sealer.seal(&acme, "k4", b"x").await.unwrap();
        assert_ne!(a[..HEADER_LEN], c[..HEADER_LEN], "rotated");
        assert_eq!(sealer.open(&acme, "k1", &a).await.unwrap(), b"x");
        assert_eq!(sealer.open(&acme, "k4", &c).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn a_withdrawn_customer_key_shreds_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let provider = KeyFileProvider::new(dir.path());
        let bank = WorkspaceId::new("bank");
        provider.install(&bank, &RootKey::generate()).unwrap();
        let sealer = ArchiveSealer::new(Arc::new(provider.clone()));
        let sealed = sealer.seal(&bank, "k", b"secret").await.unwrap();
        assert_eq!(sealer.open(&bank, "k", &sealed).await.unwrap(), b"secret");
        assert!(provider.destroy(&bank).await.unwrap());
        assert!(matches!(
            sealer.open(&bank, "k", &sealed).await,
            Err(ArchiveError::KeyUnavailable)
        ));
    }
}
