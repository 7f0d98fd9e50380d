//! Key-encryption keys for the stored tiers: where a workspace's root key comes from, and
//! how key-encryption keys (KEKs) are derived from it.
//!
//! - **SOHO** ([`ManagedKeys`]): one service-held master key, given by file or by the
//!   `FORTRESS_MASTER_KEY` environment variable, never written next to the data. Each
//!   workspace's root key is derived from it with HKDF-SHA256 and the workspace id.
//! - **Bank** ([`KeyFileProvider`] or any [`KeyProvider`] an integrator backs with a KMS):
//!   the customer's own key. Without it nothing of that workspace decrypts; destroying it
//!   crypto-shreds every secret of the workspace.
//!
//! [`KeyRouter`] picks a provider per workspace. The vault derives the KEK of a workspace
//! and generation from the root key ([`derive_kek`]), so KEK rotation needs no new key from
//! the customer, and no KEK is ever stored.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::keys::{KeyProvider, ManagedKeys, RootKey};
//!
//! let master = RootKey::parse(&"11".repeat(32)).unwrap();
//! let keys = ManagedKeys::new(master);
//! let a = keys.root_key(&WorkspaceId::new("a")).await.unwrap();
//! let b = keys.root_key(&WorkspaceId::new("b")).await.unwrap();
//! assert_ne!(a.fingerprint(), b.fingerprint());
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::VaultError;
use super::envelope::{KEY_LEN, SymmetricKey};
use crate::subject::WorkspaceId;

/// The environment variable holding the SOHO master key (64 hex digits or base64).
pub const MASTER_KEY_ENV: &str = "FORTRESS_MASTER_KEY";

/// Root key material of a workspace, from which its KEKs are derived. Zeroized on drop.
#[derive(Clone)]
pub struct RootKey(SymmetricKey);

impl RootKey {
    /// A fresh random key (for `keygen`-style tooling and tests).
    pub fn generate() -> Self {
        Self(SymmetricKey::generate())
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SymmetricKey::from_bytes(bytes))
    }

    /// Parses a 256-bit key written as 64 hex digits or as base64 (surrounding whitespace
    /// is ignored). The error never repeats the input.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        }
        .map(Zeroizing::new);
        decoded
            .and_then(|bytes| SymmetricKey::from_slice(&bytes))
            .map(Self)
            .ok_or_else(|| {
                VaultError::Config(
                    "a key must be 32 bytes written as 64 hex digits or base64".into(),
                )
            })
    }

    /// Reads a key file (see [`RootKey::parse`] for the format).
    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            VaultError::Config(format!(
                "cannot read key file {}: {}",
                path.display(),
                e.kind()
            ))
        })?);
        Self::parse(&text)
    }

    /// Reads the key from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, VaultError> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| {
                VaultError::Config(format!("environment variable {var} is not set"))
            })?);
        Self::parse(&text)
    }

    /// The key as 64 hex digits (for writing a freshly generated key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.bytes()))
    }

    /// A short, non-reversible identifier of the key (first 8 bytes of SHA-256 over a
    /// label and the key), safe to log and compare.
    pub fn fingerprint(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(b"fortress-vault/v1 fingerprint");
        digest.update(self.0.bytes());
        hex::encode(&digest.finalize()[..8])
    }

    pub(crate) fn key(&self) -> &SymmetricKey {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output: extract with `salt`, expand with `info`.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> SymmetricKey {
    let mut extract = hmac_sha256(salt);
    extract.update(ikm);
    let prk: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(extract.finalize().into_bytes().into());
    let mut expand = hmac_sha256(&prk[..]);
    expand.update(info);
    expand.update(&[1]);
    let okm: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(expand.finalize().into_bytes().into());
    SymmetricKey::from_bytes(*okm)
}

/// HMAC-SHA256 keyed with any length of key, without a fallible constructor: the key is
/// hashed when longer than a block and zero-padded otherwise, exactly as HMAC specifies.
fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    const BLOCK: usize = 64;
    let mut block = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(&block[..]))
}

/// The KEK of `workspace` at `generation`, derived from the workspace's root key.
pub fn derive_kek(root: &RootKey, workspace: &WorkspaceId, generation: u32) -> SymmetricKey {
    let mut info = Vec::with_capacity(48 + workspace.as_str().len());
    info.extend_from_slice(b"fortress-vault/v1 kek");
    info.extend_from_slice(&(workspace.as_str().len() as u64).to_be_bytes());
    info.extend_from_slice(workspace.as_str().as_bytes());
    info.extend_from_slice(&generation.to_be_bytes());
    hkdf_sha256(b"fortress-vault/v1 kek salt", root.key().bytes(), &info)
}

/// A KEK of `workspace` at `generation` for another `purpose` than the vault's credentials
/// (for example `pat-archive`). Purposes get independent keys, so each purpose's encryption
/// count stays its own and none collides with [`derive_kek`].
pub fn derive_purpose_kek(
    root: &RootKey,
    purpose: &str,
    workspace: &WorkspaceId,
    generation: u32,
) -> SymmetricKey {
    let mut info = Vec::with_capacity(64 + purpose.len() + workspace.as_str().len());
    info.extend_from_slice(b"fortress-vault/v1 kek/");
    info.extend_from_slice(&(purpose.len() as u64).to_be_bytes());
    info.extend_from_slice(purpose.as_bytes());
    info.extend_from_slice(&(workspace.as_str().len() as u64).to_be_bytes());
    info.extend_from_slice(workspace.as_str().as_bytes());
    info.extend_from_slice(&generation.to_be_bytes());
    hkdf_sha256(b"fortress-vault/v1 kek salt", root.key().bytes(), &info)
}

/// Supplies the root key of a workspace. Implement it to back the Bank tier with a KMS or
/// HSM; the vault calls it whenever a data key must be wrapped or unwrapped (cache misses).
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// The workspace's root key, or [`VaultError::KeyUnavailable`] when the customer has not
    /// supplied it (or has withdrawn it).
    async fn root_key(&self, workspace: &WorkspaceId) -> Result<RootKey, VaultError>;

    /// Destroys the workspace's key if this provider holds it (account termination).
    /// Returns whether a key was destroyed. The default holds nothing and destroys nothing.
    async fn destroy(&self, workspace: &WorkspaceId) -> Result<bool, VaultError> {
        let _ = workspace;
        Ok(false)
    }

    /// A name for the key source, recorded in audit events (`managed`, `key_file`, `kms`).
    fn source(&self, workspace: &WorkspaceId) -> &'static str;
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Arc<P> {
    async fn root_key(&self, workspace: &WorkspaceId) -> Result<RootKey, VaultError> {
        (**self).root_key(workspace).await
    }
    async fn destroy(&self, workspace: &WorkspaceId) -> Result<bool, VaultError> {
        (**self).destroy(workspace).await
    }
    fn source(&self, workspace: &WorkspaceId) -> &'static str {
        (**self).source(workspace)
    }
}

/// SOHO: service-managed keys derived from one master key.
pub struct ManagedKeys {
    master: RootKey,
}

impl ManagedKeys {
    /// Derives every workspace's root key from `master`.
    pub fn new(master: RootKey) -> Self {
        Self { master }
    }

    /// Loads the master key from `file` when given, else from `FORTRESS_MASTER_KEY`.
    pub fn load(file: Option<&Path>) -> Result<Self, VaultError> {
        let master = match file {
            Some(path) => RootKey::from_file(path)?,
            None => RootKey::from_env(MASTER_KEY_ENV)?,
        };
        Ok(Self::new(master))
    }
}

impl fmt::Debug for ManagedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedKeys").finish_non_exhaustive()
    }
}

#[async_trait]
impl KeyProvider for ManagedKeys {
    async fn root_key(&self, workspace: &WorkspaceId) -> Result<RootKey, VaultError> {
        let mut info = b"fortress-vault/v1 managed workspace ".to_vec();
        info.extend_from_slice(workspace.as_str().as_bytes());
        Ok(RootKey(hkdf_sha256(
            b"fortress-vault/v1 managed salt",
            self.master.key().bytes(),
            &info,
        )))
    }

    fn source(&self, _workspace: &WorkspaceId) -> &'static str {
        "managed"
    }
}

/// Bank: one customer key file per workspace, `<dir>/<workspace>.key` (64 hex digits or
/// base64). The file is read on every key use, so removing it makes the workspace
/// unreadable as soon as cached data keys expire; [`KeyProvider::destroy`] overwrites and
/// removes it.
#[derive(Clone, Debug)]
pub struct KeyFileProvider {
    dir: PathBuf,
}

impl KeyFileProvider {
    /// Customer keys live in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The key file of a workspace. Workspace ids that could escape the directory are refused.
    pub fn path_of(&self, workspace: &WorkspaceId) -> Result<PathBuf, VaultError> {
        let id = workspace.as_str();
        let safe = !id.is_empty()
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !safe {
            return Err(VaultError::Config(format!(
                "workspace id {id:?} cannot name a key file (use letters, digits, '-', '_', '.')"
            )));
        }
        Ok(self.dir.join(format!("{id}.key")))
    }

    /// Writes a key file for a workspace (owner-only permissions on Unix).
    pub fn install(&self, workspace: &WorkspaceId, key: &RootKey) -> Result<PathBuf, VaultError> {
        let path = self.path_of(workspace)?;
        let io = |e: std::io::Error| {
            VaultError::Config(format!(
                "cannot write key file {}: {}",
                path.display(),
                e.kind()
            ))
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        file.write_all(key.to_hex().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(path)
    }
}

#[async_trait]
impl KeyProvider for KeyFileProvider {
    async fn root_key(&self, workspace: &WorkspaceId) -> Result<RootKey, VaultError> {
        let path = self.path_of(workspace)?;
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => RootKey::parse(&Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(VaultError::KeyUnavailable(workspace.clone()))
            }
            Err(e) => Err(VaultError::Backend(Box::new(e))),
        }
    }

    async fn destroy(&self, workspace: &WorkspaceId) -> Result<bool, VaultError> {
        let path = self.path_of(workspace)?;
        let len = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(VaultError::Backend(Box::new(e))),
        };
        // Overwrite before unlinking so the key bytes do not linger in the file's blocks
        // (best effort: copy-on-write filesystems and SSD remapping may still keep them).
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let overwrite = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &zeros).await?;
            file.sync_all().await?;
            tokio::fs::remove_file(&path).await
        };
        overwrite
            .await
            .map_err(|e| VaultError::Backend(Box::new(e)))?;
        Ok(true)
    }

    fn source(&self, _workspace: &WorkspaceId) -> &'static str {
        "key_file"
    }
}

/// Chooses a key provider per workspace: customer-key (Bank) workspaces get their own
/// provider, every other workspace the default (usually [`ManagedKeys`]).
pub struct KeyRouter {
    default: Arc<dyn KeyProvider>,
    workspaces: HashMap<WorkspaceId, Arc<dyn KeyProvider>>,
}

impl KeyRouter {
    /// Routes every workspace to `default`.
    pub fn new(default: Arc<dyn KeyProvider>) -> Self {
        Self {
            default,
            workspaces: HashMap::new(),
        }
    }

    /// Routes `workspace` to `provider`.
    #[must_use]
    pub fn with_workspace(
        mut self,
        workspace: WorkspaceId,
        provider: Arc<dyn KeyProvider>,
    ) -> Self {
        self.workspaces.insert(workspace, provider);
        self
    }

    fn provider(&self, workspace: &WorkspaceId) -> &Arc<dyn KeyProvider> {
        self.workspaces.get(workspace).unwrap_or(&self.default)
    }
}

#[async_trait]
impl KeyProvider for KeyRouter {
    async fn root_key(&self, workspace: &WorkspaceId) -> Result<RootKey, VaultError> {
        self.provider(workspace).root_key(workspace).await
    }
    async fn destroy(&self, workspace: &WorkspaceId) -> Result<bool, VaultError> {
        self.provider(workspace).destroy(workspace).await
    }
    fn source(&self, workspace: &WorkspaceId) -> &'static str {
        self.provider(workspace).source(workspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_and_base64_and_errors_hide_input() {
        let hex_key = "ab".repeat(32);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        assert_eq!(
            RootKey::parse(&hex_key).unwrap().fingerprint(),
            RootKey::parse(&format!(" {b64}\n")).unwrap().fingerprint()
        );
        let err = RootKey::parse("not-a-key-canary").unwrap_err().to_string();
        assert!(!err.contains("canary"), "{err}");
        assert!(RootKey::parse(&"ab".repeat(31)).is_err());
        assert_eq!(format!("{:?}", RootKey::generate()), "RootKey(<redacted>)");
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        // RFC 5869 test case 1 (first 32 bytes of the 42-byte OKM).
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = hkdf_sha256(&salt, &ikm, &info);
        assert_eq!(
            hex::encode(okm.bytes()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn keks_differ_by_workspace_and_generation() {
        let root = RootKey::from_bytes([1; 32]);
        let a1 = derive_kek(&root, &WorkspaceId::new("a"), 1);
        let a2 = derive_kek(&root, &WorkspaceId::new("a"), 2);
        let b1 = derive_kek(&root, &WorkspaceId::new("b"), 1);
        assert_ne!(a1.bytes(), a2.bytes());
        assert_ne!(a1.bytes(), b1.bytes());
        assert_eq!(
            a1.bytes(),
            derive_kek(&root, &WorkspaceId::new("a"), 1).bytes()
        );
        let archive = derive_purpose_kek(&root, "pat-archive", &WorkspaceId::new("a"), 1);
        assert_ne!(archive.bytes(), a1.bytes());
        assert_ne!(
            archive.bytes(),
            derive_purpose_kek(&root, "other", &WorkspaceId::new("a"), 1).bytes()
        );
    }

    #[tokio::test]
    async fn key_files_are_confined_to_their_directory_and_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let provider = KeyFileProvider::new(dir.path());
        assert!(provider.path_of(&WorkspaceId::new("../etc")).is_err());
        assert!(provider.path_of(&WorkspaceId::new("a/b")).is_err());
        let ws = WorkspaceId::new("bank-1");
        assert!(matches!(
            provider.root_key(&ws).await,
            Err(VaultError::KeyUnavailable(_))
        ));
        let key = RootKey::generate();
        let path = provider.install(&ws, &key).unwrap();
        assert_eq!(
            provider.root_key(&ws).await.unwrap().fingerprint(),
            key.fingerprint()
        );
        assert!(provider.destroy(&ws).await.unwrap());
        assert!(!path.exists());
        assert!(!provider.destroy(&ws).await.unwrap());
    }
}
