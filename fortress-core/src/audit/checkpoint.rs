//! Signed checkpoints: every so often the store signs (range, chain head, Merkle root).
//!
//! A checkpoint covers the events after the previous checkpoint up to `last_seq`. Its
//! signature, by a key held outside the database, is what turns the hash chain from
//! "consistent" into "authentic": rewriting history means recomputing every later hash,
//! which anyone can do, but also re-signing every later checkpoint, which needs the key.
//! After a retention purge the checkpoint that ended just before the first remaining event
//! stays behind as the anchor the remaining chain starts from.

use chrono::{DateTime, Utc};
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeyProvider, TrustedKeys};
use super::merkle::Hash;
use super::row::{from_micros, micros};

/// One signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first event covered (the previous checkpoint's `last_seq` + 1).
    pub first_seq: u64,
    /// The last event covered; the chain head below is this event's hash.
    pub last_seq: u64,
    /// The chain hash of event `last_seq`.
    #[serde(with = "hex_bytes")]
    pub chain_head: Hash,
    /// The Merkle root of the hashes of events `first_seq..=last_seq`.
    #[serde(with = "hex_bytes")]
    pub merkle_root: Hash,
    /// When it was signed.
    pub created_at: DateTime<Utc>,
    /// Which key signed it.
    pub key_id: String,
    /// The ed25519 signature over [`Checkpoint::signed_message`].
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Builds and signs a checkpoint.
    pub fn sign(
        first_seq: u64,
        last_seq: u64,
        chain_head: Hash,
        merkle_root: Hash,
        created_at: DateTime<Utc>,
        key: &dyn KeyProvider,
    ) -> Result<Self, KeyError> {
        // Truncate to the stored precision so the signed message survives a round trip.
        let created_at = from_micros(micros(created_at));
        let mut checkpoint = Self {
            first_seq,
            last_seq,
            chain_head,
            merkle_root,
            created_at,
            key_id: key.key_id().to_owned(),
            signature: [0; 64],
        };
        checkpoint.signature = key.sign(&checkpoint.signed_message())?.to_bytes();
        Ok(checkpoint)
    }

    /// The exact bytes the signature covers (domain-separated, fixed-width fields).
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(128 + self.key_id.len());
        m.extend_from_slice(b"fortress.audit.checkpoint.v1\0");
        m.extend_from_slice(&self.first_seq.to_be_bytes());
        m.extend_from_slice(&self.last_seq.to_be_bytes());
        m.extend_from_slice(&self.chain_head);
        m.extend_from_slice(&self.merkle_root);
        m.extend_from_slice(&micros(self.created_at).to_be_bytes());
        m.extend_from_slice(self.key_id.as_bytes());
        m
    }

    /// Whether the signature is valid for one of the trusted keys.
    pub fn is_signed_by(&self, trusted: &TrustedKeys) -> bool {
        trusted.verify(
            &self.key_id,
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .map_err(D::Error::custom)?
            .try_into()
            .map_err(|_| D::Error::custom("wrong length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::Ed25519KeyProvider;

    #[test]
    fn any_field_change_breaks_the_signature() {
        let key = Ed25519KeyProvider::generate();
        let trusted = TrustedKeys::new([key.verifying_key()]);
        let cp = Checkpoint::sign(1, 10, [3; 32], [4; 32], Utc::now(), &key).unwrap();
        assert!(cp.is_signed_by(&trusted));
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
        let mut c = cp.clone();
        c.last_seq = 11;
        assert!(!c.is_signed_by(&trusted));
        let mut c = cp.clone();
        c.chain_head[0] ^= 1;
        assert!(!c.is_signed_by(&trusted));
        let mut c = cp.clone();
        c.signature[63] ^= 1;
        assert!(!c.is_signed_by(&trusted));
        let other = TrustedKeys::new([Ed25519KeyProvider::generate().verifying_key()]);
        assert!(!cp.is_signed_by(&other));
    }
}
