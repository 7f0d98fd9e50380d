//! The Merkle root of a run of event hashes, as signed in each checkpoint.
//!
//! Leaves and inner nodes are domain-separated (`0x00` / `0x01` prefixes) and the tree is
//! split at the largest power of two below its size, so a root commits to the exact
//! number and order of leaves and an inclusion proof for one event stays logarithmic.
//!
//! ```
//! use fortress_core::audit::merkle::root;
//!
//! let a = [1u8; 32];
//! let b = [2u8; 32];
//! assert_ne!(root(&[a, b]), root(&[b, a]));
//! assert_ne!(root(&[a]), root(&[a, a]));
//! ```

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

fn leaf(hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(hash);
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle root over `leaves` in order (the hash of nothing for an empty run).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf(&leaves[0]),
        n => {
            let split = n.next_power_of_two() / 2;
            node(&root(&leaves[..split]), &root(&leaves[split..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_changes_the_root() {
        let leaves: Vec<Hash> = (0..7u8).map(|i| [i; 32]).collect();
        let base = root(&leaves);
        for i in 0..leaves.len() {
            let mut changed = leaves.clone();
            changed[i][5] ^= 1;
            assert_ne!(root(&changed), base, "leaf {i}");
        }
        assert_ne!(root(&leaves[..6]), base);
    }
}
