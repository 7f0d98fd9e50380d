//! Where audit events live: the [`AuditStore`] trait and its SQLite and PostgreSQL backends.
//!
//! A store is append-only by construction. Its API has no update and no delete besides
//! [`AuditStore::purge_before`], and the database itself refuses `UPDATE` and `DELETE` on
//! the audit tables through triggers, except for rows a retention purge has flagged inside
//! its own transaction. Appends run in one transaction per batch (group commit) that
//! takes the database's write lock, re-reads the chain head, chains the batch on and, when
//! due, signs a [`Checkpoint`].

pub(crate) mod common;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SubjectRef;
use super::chain::BrokenChain;
use super::checkpoint::Checkpoint;
use super::keys::KeyError;
use super::query::{AuditPage, AuditQuery};
use super::row::{EncodedEvent, StoredEvent};

pub use postgres::PostgresAuditStore;
pub use sqlite::{SQLITE_FILE_NAME, SqliteAuditStore, SqliteDurability};

/// Why a store operation failed. Carries no event content and no key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("audit database failed")]
    Database(#[source] sqlx::Error),
    /// The stored chain does not check out, so the writer will not extend it.
    #[error(transparent)]
    Broken(#[from] BrokenChain),
    /// A checkpoint could not be signed.
    #[error("audit checkpoint could not be signed")]
    Key(#[from] KeyError),
    /// The store was opened without a signing key and cannot append.
    #[error("audit store has no signing key, so it is read-only")]
    ReadOnly,
    /// A stored row holds a value of the wrong shape.
    #[error("stored audit row is malformed: {0}")]
    Malformed(&'static str),
    /// An event could not be encoded.
    #[error("audit event cannot be encoded")]
    Encode(#[source] serde_json::Error),
    /// The data directory could not be created.
    #[error("audit data directory cannot be created")]
    DataDir(#[source] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// What an append wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The sequence numbers given to the events, in order.
    pub seqs: Vec<u64>,
    /// The checkpoint signed in the same transaction, if one was.
    pub checkpoint: Option<Checkpoint>,
}

/// What a retention purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Events deleted.
    pub deleted_events: u64,
    /// Checkpoints deleted (all but the anchor).
    pub deleted_checkpoints: u64,
    /// The checkpoint kept as the anchor of the remaining chain (its `last_seq`).
    pub anchor: Option<u64>,
    /// The sequence number of the purge's own audit record.
    pub record_seq: Option<u64>,
    /// The checkpoint signed over the purge record.
    pub checkpoint: Option<Checkpoint>,
}

/// The action name of the record a retention purge appends about itself.
pub const PURGE_ACTION: &str = "audit.retention_purge";

/// Durable, append-only, hash-chained storage of audit events.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `events` in order, in one transaction, and returns once it is committed and
    /// synced. Signs a checkpoint in the same transaction when the checkpoint policy says
    /// so, or whenever `checkpoint` is true.
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError>;

    /// Up to `limit` events with a sequence number above `after`, oldest first.
    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every checkpoint still stored, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Events matching a query, one page at a time.
    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Permanently deletes the events appended before `cutoff`, up to the newest
    /// checkpoint that ends before it, keeping that checkpoint as the anchor of what
    /// remains; then appends (and checkpoints) a record of the purge by `actor`, in the
    /// same transaction.
    async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        actor: SubjectRef,
    ) -> Result<PurgeReport, StoreError>;
}

#[async_trait]
impl<S: AuditStore + ?Sized> AuditStore for std::sync::Arc<S> {
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError> {
        (**self).append(events, checkpoint).await
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        (**self).events_after(after, limit).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        (**self).checkpoints().await
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        (**self).query(query).await
    }

    async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        actor: SubjectRef,
    ) -> Result<PurgeReport, StoreError> {
        (**self).purge_before(cutoff, actor).await
    }
}

/// The record a retention purge appends about itself. Verification requires one naming
/// the sequence number the remaining chain is anchored at, so a prefix deleted by anyone
/// else is detected even when it ends on a checkpoint.
pub(crate) fn purge_record(
    anchor: u64,
    cutoff: DateTime<Utc>,
    report: &PurgeReport,
    actor: SubjectRef,
) -> Result<EncodedEvent, StoreError> {
    let mut event = super::AuditEvent::activity(
        super::EventKind::System,
        crate::subject::WorkspaceId::new("*"),
        actor,
        PURGE_ACTION,
        "audit:trail",
    );
    event.detail.insert("through_seq".into(), anchor.into());
    event
        .detail
        .insert("cutoff".into(), cutoff.to_rfc3339().into());
    event
        .detail
        .insert("deleted_events".into(), report.deleted_events.into());
    event.detail.insert(
        "deleted_checkpoints".into(),
        report.deleted_checkpoints.into(),
    );
    EncodedEvent::new(&event).map_err(StoreError::Encode)
}
