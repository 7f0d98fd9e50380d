//! State carried by the client instead of held by one replica: a value sealed with
//! AES-256-GCM under a key every replica shares, so any replica can open it and nobody
//! else can read or forge it.
//!
//! A token is `<prefix>` followed by URL-safe base64 of `nonce ‖ ciphertext`; the purpose
//! (`aad`) is authenticated, so a token minted for one use is refused for another. The
//! sealed value carries its own expiry.
//!
//! ```
//! use std::time::Duration;
//! use fortress_core::cluster::token::TokenSealer;
//!
//! let sealer = TokenSealer::new(b"a key every replica shares", "fs1.", "example");
//! let token = sealer.seal(&serde_json::json!({"subject": "alice"}), Duration::from_secs(60)).unwrap();
//! let value: serde_json::Value = sealer.open(&token).unwrap();
//! assert_eq!(value["subject"], "alice");
//! assert!(TokenSealer::new(b"another key", "fs1.", "example").open::<serde_json::Value>(&token).is_none());
//! ```

use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest token accepted for opening (a header value; larger input is refused unread).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Seals and opens tokens of one purpose.
#[derive(Clone)]
pub struct TokenSealer {
    cipher: Aes256Gcm,
    prefix: &'static str,
    aad: String,
}

impl std::fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSealer")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// Expiry, Unix seconds.
    exp: i64,
    v: T,
}

impl TokenSealer {
    /// A sealer keyed from `secret` (any length: the AES key is derived from it and the
    /// purpose), whose tokens start with `prefix` and are bound to `purpose`.
    pub fn new(secret: &[u8], prefix: &'static str, purpose: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"fortress token key\0");
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(secret);
        let key = zeroize::Zeroizing::new(<[u8; 32]>::from(hasher.finalize()));
        Self {
            cipher: Aes256Gcm::new(key.as_ref().into()),
            prefix,
            aad: format!("fortress:{purpose}"),
        }
    }

    /// Seals `value`, valid for `ttl`.
    pub fn seal<T: Serialize>(&self, value: &T, ttl: Duration) -> Option<String> {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let envelope = Envelope {
            exp: chrono::Utc::now().timestamp().saturating_add(ttl),
            v: value,
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&envelope).ok()?);
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: self.aad.as_bytes(),
                },
            )
            .ok()?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Some(format!("{}{}", self.prefix, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Opens a token: `None` if it is malformed, forged, sealed for another purpose or
    /// under another key, or expired.
    pub fn open<T: DeserializeOwned>(&self, token: &str) -> Option<T> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let body = token.strip_prefix(self.prefix)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = zeroize::Zeroizing::new(
            self.cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: self.aad.as_bytes(),
                    },
                )
                .ok()?,
        );
        let envelope: Envelope<T> = serde_json::from_slice(&plain).ok()?;
        (envelope.exp > chrono::Utc::now().timestamp()).then_some(envelope.v)
    }

    /// Whether `token` has this sealer's prefix (it may still fail to open).
    pub fn is_ours(&self, token: &str) -> bool {
        token.starts_with(self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_purpose_and_expiry_are_refused() {
        let sealer = TokenSealer::new(b"k", "t.", "a");
        let token = sealer.seal(&7_u32, Duration::from_secs(60)).unwrap();
        assert_eq!(sealer.open::<u32>(&token), Some(7));
        // Flip one character of the body.
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(sealer.open::<u32>(&tampered), None);
        assert_eq!(TokenSealer::new(b"k", "t.", "b").open::<u32>(&token), None);
        let expired = sealer.seal(&7_u32, Duration::ZERO).unwrap();
        assert_eq!(sealer.open::<u32>(&expired), None);
        assert_eq!(sealer.open::<u32>("t.%%%"), None);
        assert_eq!(sealer.open::<u32>("nope"), None);
    }
}
