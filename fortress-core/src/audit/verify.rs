//! Verification: re-derives the whole chain and checks every checkpoint signature, and
//! names the first bad sequence number.
//!
//! What is checked, in sequence order:
//! - sequence numbers are contiguous from the anchor (1, or the checkpoint a retention
//!   purge kept, in which case the newest purge record must name exactly that anchor);
//! - each event's hash is `link_hash(seq, previous hash, body)` and its indexed columns
//!   are the ones its body implies;
//! - each checkpoint is signed by a trusted key, starts where the previous one ended, and
//!   its chain head and Merkle root match the events it covers;
//! - no checkpoint points past the last event (truncation), and — unless allowed, as for a
//!   live store whose newest events are not signed yet — no event lies past the last
//!   checkpoint (an unsigned tail is where an appended forgery would hide).
//!
//! [`ChainVerifier`] is the pure core (feed it rows in storage order); [`verify_store`]
//! runs it over a whole [`AuditStore`] page by page.

use super::chain::{GENESIS, link_hash};
use super::checkpoint::Checkpoint;
use super::keys::TrustedKeys;
use super::merkle::{self, Hash};
use super::row::{EventColumns, StoredEvent};
use super::store::{AuditStore, PURGE_ACTION, StoreError};

/// How strict verification is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Accept events after the last checkpoint (a running writer signs them within its
    /// checkpoint interval). They are still hash-checked, and reported.
    pub allow_unsigned_tail: bool,
}

/// The trail was tampered with (or damaged): the first bad sequence number and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit trail fails verification at sequence {seq}: {reason}")]
pub struct Tampered {
    /// The first sequence number that does not verify.
    pub seq: u64,
    /// What is wrong there.
    pub reason: String,
}

impl Tampered {
    fn at(seq: u64, reason: impl Into<String>) -> Self {
        Self {
            seq,
            reason: reason.into(),
        }
    }
}

/// Why [`verify_store`] could not give a verdict, or its negative verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The trail does not verify.
    #[error(transparent)]
    Tampered(#[from] Tampered),
    /// The store could not be read.
    #[error("audit store could not be read")]
    Store(#[from] StoreError),
}

/// What a successful verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The first event present (after any retention purge).
    pub first_seq: Option<u64>,
    /// The last event present.
    pub last_seq: Option<u64>,
    /// Events verified.
    pub events: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The checkpoint the chain starts from after a retention purge.
    pub anchor: Option<u64>,
    /// Events after the last checkpoint (zero unless allowed).
    pub unsigned_tail: u64,
}

/// Streaming verifier over rows in storage order.
pub struct ChainVerifier {
    options: VerifyOptions,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    prev_seq: u64,
    prev_hash: Hash,
    leaves: Vec<Hash>,
    latest_purge_through: Option<u64>,
    report: VerifyReport,
}

impl ChainVerifier {
    /// Starts a verification against the stored `checkpoints` (any order).
    pub fn new(
        mut checkpoints: Vec<Checkpoint>,
        trusted: &TrustedKeys,
        options: VerifyOptions,
    ) -> Result<Self, Tampered> {
        checkpoints.sort_by_key(|c| c.last_seq);
        for (i, cp) in checkpoints.iter().enumerate() {
            if !cp.is_signed_by(trusted) {
                return Err(Tampered::at(
                    cp.first_seq.min(cp.last_seq),
                    "checkpoint signature does not verify",
                ));
            }
            if cp.first_seq == 0 || cp.first_seq > cp.last_seq {
                return Err(Tampered::at(cp.last_seq, "checkpoint range is empty"));
            }
            if let Some(prev) = i.checked_sub(1).map(|p| &checkpoints[p])
                && (prev.last_seq == cp.last_seq || cp.first_seq != prev.last_seq + 1)
            {
                return Err(Tampered::at(
                    prev.last_seq + 1,
                    "checkpoints do not follow each other",
                ));
            }
        }
        let report = VerifyReport {
            checkpoints: checkpoints.len() as u64,
            ..VerifyReport::default()
        };
        Ok(Self {
            options,
            checkpoints,
            next_checkpoint: 0,
            prev_seq: 0,
            prev_hash: GENESIS,
            leaves: Vec::new(),
            latest_purge_through: None,
            report,
        })
    }

    fn first_event(&mut self, seq: u64) -> Result<(), Tampered> {
        self.report.first_seq = Some(seq);
        if seq == 1 {
            return Ok(());
        }
        // Events before `seq` are gone: only a retention purge may have removed them, and
        // it keeps the checkpoint ending just before the first remaining event.
        let anchor_index = self.checkpoints.iter().position(|c| c.last_seq + 1 == seq);
        let Some(index) = anchor_index else {
            let missing = self
                .checkpoints
                .iter()
                .find(|c| c.last_seq >= seq)
                .map_or(1, |c| c.first_seq.min(seq));
            return Err(Tampered::at(
                missing.max(1),
                "events missing before the first stored event",
            ));
        };
        let anchor = &self.checkpoints[index];
        self.prev_seq = anchor.last_seq;
        self.prev_hash = anchor.chain_head;
        self.next_checkpoint = index + 1;
        self.report.anchor = Some(anchor.last_seq);
        Ok(())
    }

    /// Checks the next row.
    pub fn push(&mut self, row: &StoredEvent) -> Result<(), Tampered> {
        if self.report.first_seq.is_none() {
            self.first_event(row.seq)?;
        }
        let expected = self.prev_seq + 1;
        if row.seq != expected {
            return Err(Tampered::at(
                expected.min(row.seq),
                "sequence numbers are not contiguous",
            ));
        }
        let hash = link_hash(row.seq, &self.prev_hash, row.body.as_bytes());
        if hash != row.hash {
            return Err(Tampered::at(
                row.seq,
                "event hash does not match its body and predecessor",
            ));
        }
        let event = row
            .event()
            .map_err(|_| Tampered::at(row.seq, "event body is not a valid event"))?;
        if EventColumns::of(&event) != row.columns {
            return Err(Tampered::at(
                row.seq,
                "indexed columns do not match the event body",
            ));
        }
        if event.action == PURGE_ACTION {
            self.latest_purge_through = event.detail.get("through_seq").and_then(|v| v.as_u64());
        }
        self.prev_seq = row.seq;
        self.prev_hash = hash;
        self.leaves.push(hash);
        self.report.events += 1;
        self.report.last_seq = Some(row.seq);
        if let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.last_seq == row.seq {
                let first = row.seq + 1 - self.leaves.len() as u64;
                if cp.first_seq != first {
                    return Err(Tampered::at(
                        first.min(cp.first_seq),
                        "checkpoint range does not match the events",
                    ));
                }
                if cp.chain_head != hash {
                    return Err(Tampered::at(
                        row.seq,
                        "checkpoint chain head does not match",
                    ));
                }
                if cp.merkle_root != merkle::root(&self.leaves) {
                    return Err(Tampered::at(
                        cp.first_seq,
                        "checkpoint Merkle root does not match",
                    ));
                }
                self.leaves.clear();
                self.next_checkpoint += 1;
            } else if cp.last_seq < row.seq {
                return Err(Tampered::at(
                    cp.last_seq,
                    "checkpoint refers to an event that is not there",
                ));
            }
        }
        Ok(())
    }

    /// Ends the verification.
    pub fn finish(mut self) -> Result<VerifyReport, Tampered> {
        if let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            let missing = if self.report.first_seq.is_some() {
                self.prev_seq + 1
            } else {
                self.checkpoints.first().map_or(1, |c| c.first_seq)
            };
            return Err(Tampered::at(
                missing.min(cp.last_seq),
                "events covered by a checkpoint are missing (truncated)",
            ));
        }
        if let Some(first) = self.report.first_seq
            && first > 1
            && self.latest_purge_through != Some(first - 1)
        {
            let at = self.latest_purge_through.map_or(1, |t| t + 1);
            return Err(Tampered::at(
                at,
                "events were removed without a retention purge record",
            ));
        }
        if !self.leaves.is_empty() {
            let first_unsigned = self.prev_seq + 1 - self.leaves.len() as u64;
            if !self.options.allow_unsigned_tail {
                return Err(Tampered::at(
                    first_unsigned,
                    "events after the last checkpoint are not signed",
                ));
            }
            self.report.unsigned_tail = self.leaves.len() as u64;
        }
        Ok(self.report)
    }
}

/// Verifies a whole store.
pub async fn verify_store(
    store: &dyn AuditStore,
    trusted: &TrustedKeys,
    options: VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let mut verifier = ChainVerifier::new(store.checkpoints().await?, trusted, options)?;
    let mut after = 0;
    loop {
        let page = store.events_after(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in &page {
            verifier.push(row)?;
        }
    }
    Ok(verifier.finish()?)
}
