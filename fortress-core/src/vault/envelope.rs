//! Envelope encryption primitives: AES-256-GCM with random 96-bit nonces, and the canonical
//! associated data that binds every ciphertext to its owner, slot and version.
//!
//! A secret is sealed under its own single-use [`DataKey`]; the data key is sealed ("wrapped")
//! under the workspace's key-encryption key. Both layers authenticate a context (the AAD), so
//! a ciphertext moved to another row, version or workspace fails to open instead of
//! decrypting to someone else's secret.
//!
//! ```
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::CredentialSlot;
//! use fortress_core::vault::envelope::{self, DataKey, SymmetricKey};
//!
//! let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
//! let kek = SymmetricKey::generate();
//! let data_key = DataKey::generate();
//! let wrapped = envelope::wrap_data_key(&kek, &data_key, &slot, 1, 1).unwrap();
//! let sealed = data_key.seal_secret(&slot, 1, b"token").unwrap();
//!
//! let unwrapped = envelope::unwrap_data_key(&kek, &wrapped, &slot, 1, 1).unwrap();
//! let plain = envelope::open(&unwrapped, &envelope::secret_aad(&slot, 1), &sealed).unwrap();
//! assert_eq!(&plain[..], b"token");
//! // The same ciphertext under another version's context does not open.
//! assert!(envelope::open(&unwrapped, &envelope::secret_aad(&slot, 2), &sealed).is_err());
//! ```

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::CredentialSlot;

/// Length of an AES-256 key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a GCM nonce in bytes (96 bits, chosen at random for every encryption).
pub const NONCE_LEN: usize = 12;
/// Length of a GCM authentication tag in bytes.
pub const TAG_LEN: usize = 16;

/// Labels that keep the two kinds of AAD (and future formats) from ever colliding.
const FORMAT: &[u8] = b"fortress-vault/v1";
const PURPOSE_SECRET: u8 = 1;
const PURPOSE_DATA_KEY: u8 = 2;

/// Why a seal or open failed. Carries no key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The tag did not verify: the ciphertext was altered, the key is wrong, or the context
    /// (workspace, connector, user, version, key generation) is not the one it was sealed for.
    #[error("authentication failed (tampered ciphertext, wrong key or wrong context)")]
    Authentication,
    /// The stored bytes have an impossible shape.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The cipher refused to encrypt (plaintext too long for GCM).
    #[error("encryption failed")]
    Encrypt,
}

/// A 256-bit AES key, zeroized on drop and never printed. The expanded cipher state is
/// computed once per key (the AES key schedule zeroizes itself on drop too).
#[derive(Clone)]
pub struct SymmetricKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl SymmetricKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self::from_zeroizing(key)
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = Aes256Gcm::new(bytes.as_ref().into());
        Self { bytes, cipher }
    }

    /// Copies key bytes from a slice of exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self::from_zeroizing(key))
    }

    /// The raw key bytes (for key derivation only).
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

/// A nonce and the ciphertext (with its tag) it produced.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random 96-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// Rebuilds a sealed value from stored columns.
    pub fn from_parts(nonce: &[u8], ciphertext: Vec<u8>) -> Result<Self, CryptoError> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed("nonce is not 96 bits"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed("ciphertext shorter than its tag"));
        }
        Ok(Self { nonce, ciphertext })
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("nonce", &hex::encode(self.nonce))
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

/// A fresh random nonce. `thread_rng` is a cryptographically secure generator reseeded from
/// the operating system; with 96 random bits a collision is negligible while each key stays
/// under 2^32 encryptions, which the vault enforces by rotating key-encryption keys.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

/// Encrypts `plaintext` under `key` with a fresh random nonce, authenticating `aad`.
pub fn seal(key: &SymmetricKey, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    let nonce = random_nonce();
    let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buffer.extend_from_slice(plaintext);
    key.cipher()
        .encrypt_in_place(Nonce::from_slice(&nonce), aad, &mut buffer)
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(Sealed {
        nonce,
        ciphertext: buffer,
    })
}

/// Decrypts and authenticates; the plaintext is zeroized when dropped.
pub fn open(
    key: &SymmetricKey,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(CryptoError::Malformed("ciphertext shorter than its tag"));
    }
    let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
    key.cipher()
        .decrypt_in_place(Nonce::from_slice(&sealed.nonce), aad, &mut *buffer)
        .map_err(|_| CryptoError::Authentication)?;
    Ok(buffer)
}

/// A single-use key for one secret version. Sealing consumes it, so by construction a data
/// key encrypts exactly one plaintext and its nonce budget can never run out.
pub struct DataKey(SymmetricKey);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        Self(SymmetricKey::generate())
    }

    /// Seals one secret version and gives up the key.
    pub fn seal_secret(
        self,
        slot: &CredentialSlot,
        version: u32,
        plaintext: &[u8],
    ) -> Result<Sealed, CryptoError> {
        seal(&self.0, &secret_aad(slot, version), plaintext)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Wraps (encrypts) a data key under a key-encryption key, bound to the slot, the secret
/// version and the KEK generation.
pub fn wrap_data_key(
    kek: &SymmetricKey,
    data_key: &DataKey,
    slot: &CredentialSlot,
    version: u32,
    kek_generation: u32,
) -> Result<Sealed, CryptoError> {
    wrap_key(kek, &data_key.0, slot, version, kek_generation)
}

/// Wraps already-unwrapped key bytes (used when rewrapping under a new KEK generation).
pub(crate) fn wrap_key(
    kek: &SymmetricKey,
    key: &SymmetricKey,
    slot: &CredentialSlot,
    version: u32,
    kek_generation: u32,
) -> Result<Sealed, CryptoError> {
    seal(
        kek,
        &data_key_aad(slot, version, kek_generation),
        key.bytes(),
    )
}

/// Unwraps a data key sealed by [`wrap_data_key`]; the result decrypts the secret version.
pub fn unwrap_data_key(
    kek: &SymmetricKey,
    wrapped: &Sealed,
    slot: &CredentialSlot,
    version: u32,
    kek_generation: u32,
) -> Result<SymmetricKey, CryptoError> {
    let bytes = open(kek, &data_key_aad(slot, version, kek_generation), wrapped)?;
    SymmetricKey::from_slice(&bytes).ok_or(CryptoError::Malformed(
        "wrapped data key has the wrong length",
    ))
}

/// Wraps a reusable key under a key-encryption key, authenticating `aad`. For envelope
/// formats outside the vault's credential rows (the PAT archive's per-workspace data keys),
/// which bind their own context.
pub fn wrap_key_with(
    kek: &SymmetricKey,
    key: &SymmetricKey,
    aad: &[u8],
) -> Result<Sealed, CryptoError> {
    seal(kek, aad, key.bytes())
}

/// Unwraps a key sealed by [`wrap_key_with`] under the same `aad`.
pub fn unwrap_key_with(
    kek: &SymmetricKey,
    wrapped: &Sealed,
    aad: &[u8],
) -> Result<SymmetricKey, CryptoError> {
    let bytes = open(kek, aad, wrapped)?;
    SymmetricKey::from_slice(&bytes).ok_or(CryptoError::Malformed(
        "wrapped data key has the wrong length",
    ))
}

/// The AAD of a secret ciphertext: format, purpose, workspace, connector, user slot, version.
pub fn secret_aad(slot: &CredentialSlot, version: u32) -> Vec<u8> {
    let mut aad = context(PURPOSE_SECRET, slot);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// The AAD of a wrapped data key: as [`secret_aad`] plus the KEK generation.
pub fn data_key_aad(slot: &CredentialSlot, version: u32, kek_generation: u32) -> Vec<u8> {
    let mut aad = context(PURPOSE_DATA_KEY, slot);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&kek_generation.to_be_bytes());
    aad
}

/// Length-prefixed fields, so no two distinct contexts encode to the same bytes
/// (`("ab","c")` and `("a","bc")` differ).
fn context(purpose: u8, slot: &CredentialSlot) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_field(&mut aad, FORMAT);
    aad.push(purpose);
    put_field(&mut aad, slot.workspace.as_str().as_bytes());
    put_field(&mut aad, slot.connector.as_bytes());
    match &slot.user {
        Some(user) => {
            aad.push(1);
            put_field(&mut aad, user.as_bytes());
        }
        None => aad.push(0),
    }
    aad
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    // Slot fields are validated far below 4 GiB; saturate rather than truncate silently.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::WorkspaceId;

    fn slot(connector: &str, user: Option<&str>) -> CredentialSlot {
        CredentialSlot {
            workspace: WorkspaceId::new("w"),
            connector: connector.into(),
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn contexts_are_unambiguous() {
        assert_ne!(
            secret_aad(&slot("ab", Some("c")), 1),
            secret_aad(&slot("a", Some("bc")), 1)
        );
        assert_ne!(
            secret_aad(&slot("a", None), 1),
            secret_aad(&slot("a", Some("")), 1)
        );
        assert_ne!(
            secret_aad(&slot("a", None), 1),
            secret_aad(&slot("a", None), 2)
        );
        assert_ne!(
            secret_aad(&slot("a", None), 1)[..],
            data_key_aad(&slot("a", None), 1, 0)[..]
        );
    }

    #[test]
    fn debug_hides_keys() {
        let key = SymmetricKey::from_bytes([7; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "SymmetricKey(<redacted>)");
        assert_eq!(format!("{:?}", DataKey::generate()), "DataKey(<redacted>)");
    }

    #[test]
    fn malformed_parts_are_refused() {
        assert!(Sealed::from_parts(&[0; 11], vec![0; 16]).is_err());
        assert!(Sealed::from_parts(&[0; 12], vec![0; 15]).is_err());
        assert!(Sealed::from_parts(&[0; 12], vec![0; 16]).is_ok());
    }
}
