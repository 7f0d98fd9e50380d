//! External anchoring: every signed checkpoint is also published outside the database.
//!
//! The hash chain and the signatures catch anyone who edits the store without the signing
//! key. Two attacks remain for someone who can rewrite the database: deleting the newest
//! events *together with* the newest checkpoints (what remains is a consistent, signed,
//! shorter trail), and — with the signing key — rewriting history and re-signing every
//! later checkpoint. Both change or remove checkpoints that were already published
//! elsewhere, so [`verify_anchors`] (run by `audit verify` after the chain check) compares
//! the store with what a [`CheckpointAnchor`] holds and names the first sequence number
//! where they disagree.
//!
//! [`AnchoredStore`] wraps any [`AuditStore`] and publishes each checkpoint right after
//! the transaction that wrote it commits (appends and retention purges alike).
//! [`FileAnchor`], the default, appends one JSON line per checkpoint to a file (synced),
//! by default beside the data directory ([`default_anchor_path`]); point it at another
//! filesystem, a WORM mount or a log shipper's spool to move it out of an attacker's reach.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::audit::anchor::{AnchoredStore, CheckpointAnchor, FileAnchor};
//! use fortress_core::audit::keys::Ed25519KeyProvider;
//! use fortress_core::audit::store::{AuditStore, SqliteAuditStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteAuditStore::open_in(&dir.path().join("data")).await.unwrap()
//!     .with_signer(Arc::new(Ed25519KeyProvider::generate()));
//! let anchor = Arc::new(FileAnchor::new(dir.path().join("anchors.jsonl")));
//! let store = AnchoredStore::new(Arc::new(store), anchor.clone());
//! store.append(Vec::new(), true).await.unwrap(); // nothing to sign yet
//! assert!(anchor.published().await.unwrap().is_empty());
//! # });
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::SubjectRef;
use super::checkpoint::Checkpoint;
use super::keys::TrustedKeys;
use super::query::{AuditPage, AuditQuery};
use super::row::{EncodedEvent, StoredEvent};
use super::store::{AppendReceipt, AuditStore, PurgeReport, StoreError};
use super::verify::Tampered;

/// Why an anchor could not be written or read. Carries no event content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The anchor file could not be written or read.
    #[error("checkpoint anchor {path} failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another backend failed.
    #[error("checkpoint anchor failed: {0}")]
    Backend(String),
}

/// Somewhere outside the audit database that keeps every published checkpoint.
#[async_trait]
pub trait CheckpointAnchor: Send + Sync + 'static {
    /// Publishes a checkpoint that has just been committed to the store. Returns once it
    /// is durable at the anchor.
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), AnchorError>;

    /// Every checkpoint published so far, in publication order.
    async fn published(&self) -> Result<Vec<Checkpoint>, AnchorError>;
}

#[async_trait]
impl<A: CheckpointAnchor + ?Sized> CheckpointAnchor for Arc<A> {
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), AnchorError> {
        (**self).publish(checkpoint).await
    }

    async fn published(&self) -> Result<Vec<Checkpoint>, AnchorError> {
        (**self).published().await
    }
}

/// Where the checkpoint anchor of `data_dir` lives by default:
/// `fortress-anchors/<data-dir-name>.audit-checkpoints.jsonl` beside the data directory
/// (like the signing key, so a copy or rewrite of the data directory does not carry it).
pub fn default_anchor_path(data_dir: &Path) -> PathBuf {
    let base = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = data_dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    base.join("fortress-anchors")
        .join(format!("{name}.audit-checkpoints.jsonl"))
}

/// An append-only JSON Lines file of checkpoints, synced after every line.
#[derive(Debug)]
pub struct FileAnchor {
    path: PathBuf,
    // One writer at a time, so lines never interleave.
    lock: tokio::sync::Mutex<()>,
}

impl FileAnchor {
    /// An anchor at `path` (created, with its directory, on the first publication).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> AnchorError + '_ {
        |source| AnchorError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[async_trait]
impl CheckpointAnchor for FileAnchor {
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), AnchorError> {
        let mut line = serde_json::to_vec(checkpoint)
            .map_err(|e| AnchorError::Backend(format!("encode: {e}")))?;
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(self.io())?;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).read(true).append(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&self.path).await.map_err(self.io())?;
        if ends_torn(&mut file).await.map_err(self.io())? {
            // A crash tore the previous line: end it, so this one starts on its own.
            line.insert(0, b'\n');
        }
        file.write_all(&line).await.map_err(self.io())?;
        file.sync_data().await.map_err(self.io())?;
        Ok(())
    }

    async fn published(&self) -> Result<Vec<Checkpoint>, AnchorError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io()(e)),
        };
        let mut checkpoints = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            match serde_json::from_str(line) {
                Ok(cp) => checkpoints.push(cp),
                // A crash can tear a line. An unreadable line vouches for nothing, exactly
                // like a missing one: verification relies on the lines that parse and
                // carry a trusted signature.
                Err(_) => tracing::warn!(path = %self.path.display(), line = i + 1, "unreadable checkpoint anchor line skipped"),
            }
        }
        Ok(checkpoints)
    }
}

/// Whether the file is non-empty and does not end with a newline.
async fn ends_torn(file: &mut tokio::fs::File) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    if file.metadata().await?.len() == 0 {
        return Ok(false);
    }
    file.seek(std::io::SeekFrom::End(-1)).await?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).await?;
    Ok(last[0] != b'\n')
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A store that publishes every checkpoint it signs to an anchor.
///
/// Publication happens after the commit: the events are durable whether or not the anchor
/// is reachable, so a failed publication is logged (and the anchor is one checkpoint
/// behind, which verification accepts) rather than failing the callers. The next
/// checkpoint is published as usual; the store may run ahead of its anchors, never the
/// other way round.
pub struct AnchoredStore {
    inner: Arc<dyn AuditStore>,
    anchor: Arc<dyn CheckpointAnchor>,
}

impl AnchoredStore {
    /// Wraps `inner`, publishing its checkpoints to `anchor`.
    pub fn new(inner: Arc<dyn AuditStore>, anchor: Arc<dyn CheckpointAnchor>) -> Self {
        Self { inner, anchor }
    }

    async fn publish(&self, checkpoint: Option<&Checkpoint>) {
        if let Some(cp) = checkpoint
            && let Err(error) = self.anchor.publish(cp).await
        {
            tracing::error!(%error, last_seq = cp.last_seq, "audit checkpoint could not be anchored");
        }
    }
}

#[async_trait]
impl AuditStore for AnchoredStore {
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError> {
        let receipt = self.inner.append(events, checkpoint).await?;
        self.publish(receipt.checkpoint.as_ref()).await;
        Ok(receipt)
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(after, limit).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints().await
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.query(query).await
    }

    async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        actor: SubjectRef,
    ) -> Result<PurgeReport, StoreError> {
        let report = self.inner.purge_before(cutoff, actor).await?;
        self.publish(report.checkpoint.as_ref()).await;
        Ok(report)
    }
}

/// Same range, chain head and Merkle root. The signing time and signature may differ (a
/// re-signed checkpoint over the same events vouches for the same history); both are
/// checked against the trusted keys on their own.
fn commits_to_the_same_events(a: &Checkpoint, b: &Checkpoint) -> bool {
    (a.first_seq, a.last_seq, a.chain_head, a.merkle_root)
        == (b.first_seq, b.last_seq, b.chain_head, b.merkle_root)
}

/// What the comparison with the anchors covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnchorReport {
    /// Anchored checkpoints found identical in the store.
    pub matched: u64,
    /// Anchored checkpoints older than the store's retention anchor (purged, as allowed).
    pub purged: u64,
    /// Store checkpoints newer than the newest anchor (signed, not yet published).
    pub unanchored: u64,
}

/// Compares the store's checkpoints with the externally `anchored` ones.
///
/// Every anchored checkpoint must carry a trusted signature and be in the store with the
/// same range, chain head and Merkle root — unless a retention purge removed it (it ends before the store's oldest
/// checkpoint). A rewritten store (different chain head, Merkle root or signature at an
/// anchored sequence number) and a truncated one (an anchored checkpoint past the store's
/// newest) both fail, naming the first sequence number the anchor vouches for that the
/// store no longer holds as published. Run it after the chain check
/// ([`verify_store`](super::verify_store)), which vouches for the store's own consistency.
pub fn verify_anchors(
    stored: &[Checkpoint],
    anchored: &[Checkpoint],
    trusted: &TrustedKeys,
) -> Result<AnchorReport, Tampered> {
    let by_last: BTreeMap<u64, &Checkpoint> = stored.iter().map(|c| (c.last_seq, c)).collect();
    let oldest_stored = by_last.keys().next().copied();
    let newest_stored = by_last.keys().next_back().copied().unwrap_or(0);
    let mut anchored: Vec<&Checkpoint> = anchored.iter().collect();
    anchored.sort_by_key(|c| c.last_seq);
    anchored.dedup_by(|a, b| commits_to_the_same_events(a, b));
    let mut report = AnchorReport::default();
    for cp in &anchored {
        if !cp.is_signed_by(trusted) {
            return Err(Tampered {
                seq: cp.first_seq,
                reason: "an externally anchored checkpoint has no trusted signature".into(),
            });
        }
        match by_last.get(&cp.last_seq) {
            Some(stored) if commits_to_the_same_events(stored, cp) => report.matched += 1,
            Some(_) => {
                return Err(Tampered {
                    seq: cp.first_seq,
                    reason: "stored checkpoint differs from its external anchor (history rewritten)"
                        .into(),
                });
            }
            None if oldest_stored.is_some_and(|oldest| cp.last_seq < oldest) => {
                report.purged += 1;
            }
            None if cp.last_seq > newest_stored => {
                return Err(Tampered {
                    seq: (newest_stored + 1).max(1),
                    reason: format!(
                        "externally anchored checkpoint through sequence {} is missing from the store (truncated)",
                        cp.last_seq
                    ),
                });
            }
            None => {
                return Err(Tampered {
                    seq: cp.first_seq,
                    reason: "externally anchored checkpoint is missing from the store".into(),
                });
            }
        }
    }
    let newest_anchored = anchored.last().map_or(0, |c| c.last_seq);
    report.unanchored = by_last.range(newest_anchored + 1..).count() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::{Ed25519KeyProvider, KeyProvider};

    fn chain(key: &Ed25519KeyProvider, ranges: &[(u64, u64)], head: u8) -> Vec<Checkpoint> {
        ranges
            .iter()
            .map(|&(first, last)| {
                Checkpoint::sign(first, last, [head; 32], [2; 32], Utc::now(), key).unwrap()
            })
            .collect()
    }

    #[test]
    fn anchors_catch_rewrites_and_truncation_and_accept_purges_and_lag() {
        let key = Ed25519KeyProvider::generate();
        let trusted = TrustedKeys::new([key.verifying_key()]);
        let cps = chain(&key, &[(1, 10), (11, 20), (21, 30)], 1);
        // Store ahead of its anchors: fine.
        let report = verify_anchors(&cps, &cps[..2], &trusted).unwrap();
        assert_eq!((report.matched, report.unanchored), (2, 1));
        // Purged prefix: fine.
        let report = verify_anchors(&cps[1..], &cps, &trusted).unwrap();
        assert_eq!((report.matched, report.purged), (2, 1));
        // Truncated tail: the first missing sequence is named.
        let err = verify_anchors(&cps[..2], &cps, &trusted).unwrap_err();
        assert_eq!(err.seq, 21);
        // Rewritten (re-signed with the real key, different head).
        let mut rewritten = cps.clone();
        rewritten[1] = chain(&key, &[(11, 20)], 9).remove(0);
        assert_eq!(
            verify_anchors(&rewritten, &cps, &trusted).unwrap_err().seq,
            11
        );
        // A forged anchor line does not vouch for anything.
        let other = Ed25519KeyProvider::generate();
        let forged = chain(&other, &[(1, 10)], 1);
        assert_eq!(verify_anchors(&cps, &forged, &trusted).unwrap_err().seq, 1);
        assert_eq!(key.key_id().len(), 16);
    }

    #[tokio::test]
    async fn file_anchor_round_trips_and_recovers_from_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let anchor = FileAnchor::new(dir.path().join("a/b.jsonl"));
        assert!(anchor.published().await.unwrap().is_empty());
        let key = Ed25519KeyProvider::generate();
        let cps = chain(&key, &[(1, 5), (6, 9), (10, 12)], 3);
        anchor.publish(&cps[0]).await.unwrap();
        anchor.publish(&cps[1]).await.unwrap();
        assert_eq!(anchor.published().await.unwrap(), cps[..2]);
        // A crash mid-line: the torn record is ignored, and the next one starts a new line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(anchor.path())
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"first_seq\":10,").unwrap();
        assert_eq!(anchor.published().await.unwrap(), cps[..2]);
        anchor.publish(&cps[2]).await.unwrap();
        assert_eq!(anchor.published().await.unwrap(), cps);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(anchor.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
