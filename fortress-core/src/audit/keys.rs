//! The checkpoint signing key, held outside the database.
//!
//! Checkpoints are signed with ed25519. The private key never goes into the audit store
//! (whoever can rewrite the store must not be able to re-sign it): it lives in a key file
//! beside the data directory (see [`default_key_path`]), in an environment variable, or in
//! any [`KeyProvider`] an embedder supplies (an HSM or KMS adapter). Verification needs only
//! the public key ([`TrustedKeys`]).
//!
//! ```
//! use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys};
//!
//! let key = Ed25519KeyProvider::generate();
//! let signature = key.sign(b"checkpoint").unwrap();
//! let trusted = TrustedKeys::new([key.verifying_key()]);
//! assert!(trusted.verify(key.key_id(), b"checkpoint", &signature));
//! assert!(!trusted.verify(key.key_id(), b"other", &signature));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable [`Ed25519KeyProvider::from_env`] reads by default.
pub const SIGNING_KEY_ENV: &str = "FORTRESS_AUDIT_SIGNING_KEY";

/// Why a key could not be loaded or used. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or created.
    #[error("audit signing key file {path} cannot be used")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key text is not 64 hexadecimal digits.
    #[error("audit signing key from {origin} is not a 32-byte hex seed")]
    Malformed {
        /// Where it came from (a path or a variable name).
        origin: String,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The provider could not sign (an external signer failed).
    #[error("audit checkpoint signing failed")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Signs checkpoints. Object-safe, so a KMS or HSM can stand behind it.
pub trait KeyProvider: Send + Sync + 'static {
    /// A short, stable identifier of the key (recorded in each checkpoint).
    fn key_id(&self) -> &str;
    /// The public key that verifies this provider's signatures.
    fn verifying_key(&self) -> VerifyingKey;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError>;
}

/// The identifier of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id_of(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Where the signing key lives by default: `fortress-keys/audit-ed25519.key` beside the
/// data directory, so copying or stealing the data directory does not carry the key.
pub fn default_key_path(data_dir: &Path) -> PathBuf {
    let base = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    base.join("fortress-keys").join("audit-ed25519.key")
}

/// An ed25519 key held in memory (loaded from a file, the environment, or generated).
pub struct Ed25519KeyProvider {
    key: SigningKey,
    id: String,
}

impl fmt::Debug for Ed25519KeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519KeyProvider")
            .field("key_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Ed25519KeyProvider {
    fn from_signing_key(key: SigningKey) -> Self {
        let id = key_id_of(&key.verifying_key());
        Self { key, id }
    }

    /// A fresh random key (tests, or a first start before the file exists).
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from a 32-byte seed written as 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex_seed(text: &str, origin: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed {
            origin: origin.to_owned(),
        };
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| malformed())?);
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.as_slice().try_into().map_err(|_| malformed())?);
        Ok(Self::from_signing_key(SigningKey::from_bytes(&seed)))
    }

    /// Reads the seed from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| KeyError::MissingEnv(var.to_owned()))?);
        Self::from_hex_seed(&text, var)
    }

    /// Reads the key file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::from_hex_seed(&text, &path.display().to_string())
    }

    /// Reads the key file at `path`, creating it (mode 0600, parent directories 0700) with a
    /// fresh key if it does not exist yet.
    ///
    /// Safe when several processes start at once: the new key is written and synced under a
    /// temporary name, then hard-linked into place, which fails if the file already exists.
    /// So the file appears only complete, nobody's key is ever overwritten, and a process
    /// that loses the race loads the winner's key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::from_file(path);
        }
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(parent).map_err(io)?;
        let provider = Self::generate();
        let text = Zeroizing::new(format!("{}\n", hex::encode(provider.key.to_bytes())));
        let temp = parent.join(format!(
            ".{}.{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        write_private_file(&temp, text.as_bytes()).map_err(io)?;
        let linked = std::fs::hard_link(&temp, path);
        // The temporary name goes either way; the key lives on under `path` if it won.
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(parent);
                Ok(provider)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::from_file(path),
            Err(e) => Err(io(e)),
        }
    }

    /// The public key as 64 hex digits (for a verifier's trusted-key file).
    pub fn verifying_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }
}

/// Creates `path` (mode 0600), writes `bytes` and syncs them.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a new directory entry durable (best effort: not every platform can open a
/// directory, and the key is already usable either way).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

impl KeyProvider for Ed25519KeyProvider {
    fn key_id(&self) -> &str {
        &self.id
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        Ok(self.key.sign(message))
    }
}

/// The public keys a verifier accepts, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// Trusts the given keys.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (key_id_of(&k), k)).collect(),
        }
    }

    /// Parses public keys written as 64 hex digits, one per line (`#` comments allowed).
    pub fn from_hex_lines(text: &str, origin: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || KeyError::Malformed {
                origin: origin.to_owned(),
            };
            let bytes: [u8; 32] = hex::decode(line)
                .map_err(|_| malformed())?
                .try_into()
                .map_err(|_| malformed())?;
            keys.push(VerifyingKey::from_bytes(&bytes).map_err(|_| malformed())?);
        }
        Ok(Self::new(keys))
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `signature` over `message` is valid for the trusted key named `key_id`.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &Signature) -> bool {
        self.keys
            .get(key_id)
            .is_some_and(|k| k.verify(message, signature).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_path(&dir.path().join("data"));
        assert!(path.starts_with(dir.path()));
        assert!(!path.starts_with(dir.path().join("data")));
        let first = Ed25519KeyProvider::load_or_create(&path).unwrap();
        let again = Ed25519KeyProvider::load_or_create(&path).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        assert!(!format!("{first:?}").contains(&hex::encode(first.key.to_bytes())));
    }

    #[test]
    fn processes_creating_the_key_at_once_all_end_with_the_same_key() {
        // Many creators racing on one fresh path (threads race on the file system exactly
        // as processes do): every one must come back with the key that ended up in the
        // file, never an error from reading a half-written file, never its own lost key.
        for round in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keys").join("audit-ed25519.key");
            let start = std::sync::Arc::new(std::sync::Barrier::new(12));
            let creators: Vec<_> = (0..12)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Ed25519KeyProvider::load_or_create(&path)
                            .map(|k| k.key_id().to_owned())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            let ids: Vec<_> = creators.into_iter().map(|t| t.join().unwrap()).collect();
            let stored = Ed25519KeyProvider::from_file(&path).unwrap();
            for id in ids {
                assert_eq!(id.as_deref(), Ok(stored.key_id()), "round {round}");
            }
            let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                leftovers,
                vec![std::ffi::OsString::from("audit-ed25519.key")]
            );
        }
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let err = Ed25519KeyProvider::from_hex_seed("abcd-not-hex", "test").unwrap_err();
        assert!(!err.to_string().contains("abcd"));
        assert!(TrustedKeys::from_hex_lines("zz", "t").is_err());
        let key = Ed25519KeyProvider::generate();
        let trusted =
            TrustedKeys::from_hex_lines(&format!("# k\n{}\n", key.verifying_key_hex()), "t")
                .unwrap();
        let sig = key.sign(b"m").unwrap();
        assert!(trusted.verify(key.key_id(), b"m", &sig));
        assert!(!trusted.verify("other", b"m", &sig));
    }
}
