//! The SOC 2 archive: each call's full request body and full response body (the assembled
//! stream, as the caller received it), encrypted per workspace, written off the hot path.
//!
//! Objects are keyed `<workspace>/<YYYY-MM-DD>/<request id>.request|.response`. Each is
//! sealed with AES-256-GCM under a per-workspace key derived from a master key, with a
//! random 96-bit nonce and the object key as associated data (a ciphertext moved to another
//! key fails to open). Entries queue on a bounded channel: a full queue makes the caller
//! wait rather than drop, failed writes are retried, and entries that still fail are kept
//! and counted, never silently dropped. Reading back goes through [`Archiver::read`],
//! which decrypts and records an audit event for the access.
//!
//! Merge note: [`ArchiveCipher`] and [`ArchiveStore`] are small seams. The shared
//! envelope encryption of `fortress_core::vault` (per-workspace data keys wrapped by the
//! tier's key-encryption key) should implement `ArchiveCipher`, and an `object_store`
//! backend (local filesystem, S3) should implement `ArchiveStore`; [`WorkspaceAesGcm`] and
//! [`LocalDirStore`] are the stand-ins until then.
//!
//! ```
//! use fortress_core::secret::Secret;
//! use fortress_pat::archive::{ArchiveCipher, WorkspaceAesGcm};
//!
//! let cipher = WorkspaceAesGcm::new(Secret::new(vec![7; 32]));
//! let sealed = cipher.seal("acme", b"acme/2026-01-01/r1.request", b"hello").unwrap();
//! assert_eq!(cipher.open("acme", b"acme/2026-01-01/r1.request", &sealed).unwrap(), b"hello");
//! assert!(cipher.open("other", b"acme/2026-01-01/r1.request", &sealed).is_err());
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fortress_core::audit::{AuditEvent, AuditSink, EventKind, SubjectRef};
use fortress_core::secret::Secret;
use fortress_core::subject::{SubjectKind, WorkspaceId};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Encryption or decryption failed (wrong key, tampered object, moved object).
    #[error("archive object cannot be sealed or opened")]
    Crypto,
    /// Storage failed.
    #[error("archive storage failed")]
    Storage(#[source] std::io::Error),
    /// An object key is unsafe (path traversal).
    #[error("invalid archive object key")]
    Key,
    /// The archive writer has stopped.
    #[error("archive writer stopped")]
    Closed,
}

/// Seals and opens archive objects for a workspace.
pub trait ArchiveCipher: Send + Sync + 'static {
    /// Encrypts `plaintext`, binding it to `aad`.
    fn seal(&self, workspace: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ArchiveError>;
    /// Decrypts what [`ArchiveCipher::seal`] produced.
    fn open(&self, workspace: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ArchiveError>;
}

/// AES-256-GCM with a per-workspace key `HMAC-SHA256(master, "pat-archive:" ‖ workspace)`.
pub struct WorkspaceAesGcm {
    master: Secret,
}

impl WorkspaceAesGcm {
    /// Derives workspace keys from `master`.
    pub fn new(master: Secret) -> Self {
        Self { master }
    }

    fn cipher(&self, workspace: &str) -> Result<Aes256Gcm, ArchiveError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.master.expose())
            .map_err(|_| ArchiveError::Crypto)?;
        mac.update(b"pat-archive:");
        mac.update(workspace.as_bytes());
        let key = zeroize::Zeroizing::new(mac.finalize().into_bytes().to_vec());
        Aes256Gcm::new_from_slice(&key).map_err(|_| ArchiveError::Crypto)
    }
}

impl ArchiveCipher for WorkspaceAesGcm {
    fn seal(&self, workspace: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher(workspace)?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| ArchiveError::Crypto)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, workspace: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        if sealed.len() < 12 {
            return Err(ArchiveError::Crypto);
        }
        let (nonce, body) = sealed.split_at(12);
        self.cipher(workspace)?
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| ArchiveError::Crypto)
    }
}

/// Where sealed objects are stored.
#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Writes an object.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ArchiveError>;
    /// Reads an object.
    async fn get(&self, key: &str) -> Result<Vec<u8>, ArchiveError>;
}

/// Objects as files under a directory, written atomically (temporary file, then rename).
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// Stores under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(ArchiveError::Key);
        }
        Ok(self.root.join(Path::new(key)))
    }
}

#[async_trait]
impl ArchiveStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(ArchiveError::Storage)?;
        }
        let tmp = path.with_extension("partial");
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(ArchiveError::Storage)?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(ArchiveError::Storage)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, ArchiveError> {
        tokio::fs::read(self.path(key)?)
            .await
            .map_err(ArchiveError::Storage)
    }
}

/// One call to archive.
#[derive(Clone, Debug)]
pub struct ArchiveEntry {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// The gateway request id.
    pub request_id: String,
    /// When the call was received.
    pub at: DateTime<Utc>,
    /// The request body as received.
    pub request: Bytes,
    /// The response body as sent.
    pub response: Bytes,
}

impl ArchiveEntry {
    /// The object key prefix `<workspace>/<date>/<request id>`.
    pub fn prefix(&self) -> String {
        object_prefix(self.workspace.as_str(), self.at, &self.request_id)
    }
}

fn object_prefix(workspace: &str, at: DateTime<Utc>, request_id: &str) -> String {
    format!("{workspace}/{}/{request_id}", at.format("%Y-%m-%d"))
}

struct Shared {
    cipher: Arc<dyn ArchiveCipher>,
    store: Arc<dyn ArchiveStore>,
    written: AtomicU64,
    failed: std::sync::Mutex<Vec<ArchiveEntry>>,
}

/// Archives calls in the background.
#[derive(Clone)]
pub struct Archiver {
    tx: mpsc::Sender<ArchiveEntry>,
    shared: Arc<Shared>,
}

impl Archiver {
    /// Starts a writer with a queue of `capacity` entries.
    pub fn start(
        cipher: Arc<dyn ArchiveCipher>,
        store: Arc<dyn ArchiveStore>,
        capacity: usize,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<ArchiveEntry>(capacity.max(1));
        let shared = Arc::new(Shared {
            cipher,
            store,
            written: AtomicU64::new(0),
            failed: std::sync::Mutex::new(Vec::new()),
        });
        let writer = shared.clone();
        tokio::spawn(async move {
            while let Some(entry) = rx.recv().await {
                let mut outcome = Err(ArchiveError::Closed);
                for attempt in 0..3u32 {
                    outcome = write(&writer, &entry).await;
                    if outcome.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                match outcome {
                    Ok(()) => {
                        writer.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::error!(%error, request_id = %entry.request_id, "archive write failed; entry kept for retry");
                        metrics::counter!("fortress_pat_archive_failures_total").increment(1);
                        writer
                            .failed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(entry);
                    }
                }
            }
        });
        Self { tx, shared }
    }

    /// Queues an entry; waits while the queue is full (never drops).
    pub async fn submit(&self, entry: ArchiveEntry) -> Result<(), ArchiveError> {
        self.tx.send(entry).await.map_err(|_| ArchiveError::Closed)
    }

    /// Entries written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Entries whose writes failed (kept for an operator or a later retry).
    pub fn failed(&self) -> Vec<ArchiveEntry> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a call back (admin API): decrypts both objects and audits the access.
    pub async fn read(
        &self,
        workspace: &str,
        at: DateTime<Utc>,
        request_id: &str,
        admin: &str,
        audit: &dyn AuditSink,
    ) -> Result<(Vec<u8>, Vec<u8>), ArchiveError> {
        let prefix = object_prefix(workspace, at, request_id);
        let mut parts = Vec::new();
        for suffix in ["request", "response"] {
            let key = format!("{prefix}.{suffix}");
            let sealed = self.shared.store.get(&key).await?;
            parts.push(
                self.shared
                    .cipher
                    .open(workspace, key.as_bytes(), &sealed)?,
            );
        }
        let event = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new(workspace),
            SubjectRef {
                id: admin.to_owned(),
                kind: SubjectKind::User,
            },
            "archive/read",
            &prefix,
        );
        audit.record(event).await.map_err(|e| {
            tracing::error!(error = %e, "archive access could not be audited; refusing");
            ArchiveError::Closed
        })?;
        let response = parts.pop().unwrap_or_default();
        let request = parts.pop().unwrap_or_default();
        Ok((request, response))
    }
}

async fn write(shared: &Shared, entry: &ArchiveEntry) -> Result<(), ArchiveError> {
    let prefix = entry.prefix();
    let workspace = entry.workspace.as_str();
    for (suffix, bytes) in [("request", &entry.request), ("response", &entry.response)] {
        let key = format!("{prefix}.{suffix}");
        let sealed = shared.cipher.seal(workspace, key.as_bytes(), bytes)?;
        shared.store.put(&key, sealed).await?;
    }
    Ok(())
}
