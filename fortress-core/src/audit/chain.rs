//! The SHA-256 hash chain and the writer-side chain state.
//!
//! Event `n` is linked to event `n - 1` by
//! `hash(n) = SHA-256("fortress.audit.event.v1\0" ‖ n as u64 big-endian ‖ hash(n - 1) ‖ body(n))`,
//! with `hash(0)` = 32 zero bytes. The sequence number is inside the hash, so an event
//! cannot move; the previous hash is inside, so none can be dropped, inserted or reordered
//! without changing every later hash — up to the next signed checkpoint, which pins them.
//!
//! ```
//! use fortress_core::audit::chain::{GENESIS, link_hash};
//!
//! let first = link_hash(1, &GENESIS, b"{}");
//! assert_ne!(link_hash(2, &first, b"{}"), link_hash(2, &GENESIS, b"{}"));
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::keys::{KeyError, KeyProvider};
use super::merkle::{self, Hash};
use super::row::{EncodedEvent, StoredEvent, micros};

/// The hash before the first event.
pub const GENESIS: Hash = [0; 32];

/// The chain hash of event `seq` with canonical `body`, following `prev`.
pub fn link_hash(seq: u64, prev: &Hash, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(b"fortress.audit.event.v1\0");
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// When the store signs a checkpoint on its own (besides on flush and on shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Sign once this many events are not yet covered.
    pub max_events: usize,
    /// Sign once the oldest uncovered event is this old (checked at each commit).
    pub max_interval: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            max_events: 4096,
            max_interval: Duration::from_secs(1),
        }
    }
}

/// A stored chain is not internally consistent: the writer refuses to extend it.
#[derive(Debug, thiserror::Error)]
#[error("audit chain is broken at sequence {seq}: {reason}")]
pub struct BrokenChain {
    /// The first bad sequence number.
    pub seq: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// The writer's view of the chain: its head and the hashes not yet covered by a checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct ChainState {
    pub(crate) head_seq: u64,
    pub(crate) head_hash: Hash,
    last_checkpoint_seq: u64,
    pending: Vec<Hash>,
    pending_since: Option<DateTime<Utc>>,
}

/// Rows and (maybe) a checkpoint to write in one transaction.
pub(crate) struct Prepared {
    pub(crate) rows: Vec<StoredEvent>,
    pub(crate) checkpoint: Option<Checkpoint>,
}

impl ChainState {
    /// Rebuilds the state from the latest checkpoint and the events after it, checking
    /// that those events really chain onto it.
    pub(crate) fn recover(
        checkpoint: Option<&Checkpoint>,
        tail: &[StoredEvent],
    ) -> Result<Self, BrokenChain> {
        let (mut seq, mut hash) = checkpoint.map_or((0, GENESIS), |c| (c.last_seq, c.chain_head));
        let mut pending = Vec::with_capacity(tail.len());
        for row in tail {
            if row.seq != seq + 1 {
                return Err(BrokenChain {
                    seq: seq + 1,
                    reason: "missing event",
                });
            }
            let expected = link_hash(row.seq, &hash, row.body.as_bytes());
            if expected != row.hash {
                return Err(BrokenChain {
                    seq: row.seq,
                    reason: "hash does not match",
                });
            }
            seq = row.seq;
            hash = expected;
            pending.push(expected);
        }
        Ok(Self {
            head_seq: seq,
            head_hash: hash,
            last_checkpoint_seq: checkpoint.map_or(0, |c| c.last_seq),
            pending_since: (!pending.is_empty()).then(Utc::now),
            pending,
        })
    }

    /// Whether this (cached) state still describes the store: the head is where it left
    /// it and no other writer signed a checkpoint since. Otherwise reusing it would fork
    /// the chain or sign overlapping checkpoints, and the state must be reloaded.
    pub(crate) fn is_current(&self, head: (u64, Hash), last_checkpoint_seq: u64) -> bool {
        (self.head_seq, self.head_hash) == head && self.last_checkpoint_seq == last_checkpoint_seq
    }

    /// Chains `events` onto the head and signs a checkpoint when the policy (or `force`)
    /// says so. Mutates the state: the caller discards it if the write then fails.
    pub(crate) fn advance(
        &mut self,
        events: Vec<EncodedEvent>,
        now: DateTime<Utc>,
        policy: &CheckpointPolicy,
        force_checkpoint: bool,
        key: &dyn KeyProvider,
    ) -> Result<Prepared, KeyError> {
        let recorded_at_us = micros(now);
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let seq = self.head_seq + 1;
            let hash = link_hash(seq, &self.head_hash, event.body.as_bytes());
            self.head_seq = seq;
            self.head_hash = hash;
            self.pending.push(hash);
            rows.push(StoredEvent {
                seq,
                recorded_at_us,
                hash,
                columns: event.columns,
                body: event.body,
            });
        }
        if !self.pending.is_empty() && self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        let due = self.pending.len() >= policy.max_events
            || self.pending_since.is_some_and(|since| {
                (now - since).to_std().unwrap_or_default() >= policy.max_interval
            });
        let checkpoint = if !self.pending.is_empty() && (due || force_checkpoint) {
            let checkpoint = Checkpoint::sign(
                self.last_checkpoint_seq + 1,
                self.head_seq,
                self.head_hash,
                merkle::root(&self.pending),
                now,
                key,
            )?;
            self.last_checkpoint_seq = self.head_seq;
            self.pending.clear();
            self.pending_since = None;
            Some(checkpoint)
        } else {
            None
        };
        Ok(Prepared { rows, checkpoint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::Ed25519KeyProvider;
    use crate::audit::row::EventColumns;

    fn encoded(i: u32) -> EncodedEvent {
        EncodedEvent {
            columns: EventColumns {
                timestamp_us: 0,
                workspace: "w".into(),
                subject_id: "s".into(),
                subject_kind: "user".into(),
                action: "a".into(),
                resource: "r".into(),
                connector: None,
                model: None,
                decision: None,
                outcome: "success".into(),
                request_id: i.to_string(),
            },
            body: format!("{{\"i\":{i}}}"),
        }
    }

    #[test]
    fn checkpoints_follow_the_policy_and_recovery_rechecks_the_tail() {
        let key = Ed25519KeyProvider::generate();
        let policy = CheckpointPolicy {
            max_events: 3,
            max_interval: Duration::from_secs(3600),
        };
        let mut state = ChainState::recover(None, &[]).unwrap();
        let now = Utc::now();
        let p = state
            .advance(vec![encoded(1), encoded(2)], now, &policy, false, &key)
            .unwrap();
        assert!(p.checkpoint.is_none());
        let first_rows = p.rows;
        let p = state
            .advance(vec![encoded(3)], now, &policy, false, &key)
            .unwrap();
        let cp = p.checkpoint.unwrap();
        assert_eq!((cp.first_seq, cp.last_seq), (1, 3));
        assert_eq!(cp.chain_head, p.rows[0].hash);
        let p = state
            .advance(vec![encoded(4), encoded(5)], now, &policy, false, &key)
            .unwrap();
        assert!(p.checkpoint.is_none());
        let recovered = ChainState::recover(Some(&cp), &p.rows).unwrap();
        assert_eq!(recovered.head_hash, state.head_hash);
        let mut bad = p.rows.clone();
        bad[1].body.push(' ');
        assert_eq!(ChainState::recover(Some(&cp), &bad).unwrap_err().seq, 5);
        assert_eq!(
            ChainState::recover(None, &first_rows[1..]).unwrap_err().seq,
            1
        );
        let forced = state.advance(vec![], now, &policy, true, &key).unwrap();
        assert_eq!(forced.checkpoint.unwrap().first_seq, 4);
    }
}
