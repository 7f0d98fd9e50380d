//! The default store: SQLite in the data directory, in WAL mode.
//!
//! How durable an acknowledged event is, is a setting ([`SqliteDurability`]):
//!
//! - [`SqliteDurability::PowerLoss`] (the default, `synchronous = FULL`): the WAL is synced
//!   at every commit — one fsync per group-commit batch, not per event — so an
//!   acknowledged event survives a crash of the process, of the kernel and a power loss.
//! - [`SqliteDurability::ProcessCrash`] (`synchronous = NORMAL`): a commit is written to
//!   the WAL but not synced; the WAL is synced before each checkpoint into the database
//!   file. An acknowledged event survives `kill -9` of the process (its WAL frames are in
//!   the kernel's page cache, which outlives the process), but a power loss or kernel
//!   crash can roll back the last commits before the next WAL checkpoint. The database
//!   stays consistent and the chain still verifies; it is only shorter than what was
//!   acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use super::common::{
    CHECKPOINT_COLUMNS, EVENT_COLUMNS, Head, LAST_CHECKPOINTED_SQL, bytes_to, decode_checkpoint,
    decode_event, insert_checkpoint, insert_chunks, insert_events, select_page, seq_from_db,
    seq_to_db,
};
use super::{AppendReceipt, AuditStore, PurgeReport, StoreError};
use crate::audit::SubjectRef;
use crate::audit::chain::{ChainState, CheckpointPolicy, GENESIS};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::keys::KeyProvider;
use crate::audit::query::{AuditPage, AuditQuery};
use crate::audit::row::{EncodedEvent, StoredEvent, micros};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_events (
    seq          INTEGER PRIMARY KEY,
    recorded_at  INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    workspace    TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    connector    TEXT,
    model        TEXT,
    decision     TEXT,
    outcome      TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    hash         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject_id, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    last_seq    INTEGER PRIMARY KEY,
    first_seq   INTEGER NOT NULL,
    chain_head  BLOB NOT NULL,
    merkle_root BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_purge_guard (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    max_seq INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_delete_only_in_purge BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_guard WHERE id = 1 AND OLD.seq <= max_seq)
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: DELETE refused outside a retention purge'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_delete_only_in_purge BEFORE DELETE ON audit_checkpoints
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_guard WHERE id = 1 AND OLD.last_seq < max_seq)
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: DELETE refused outside a retention purge'); END;
"#;

/// The event kind, for the dashboard's filters (Change Log, dry runs): a virtual column
/// generated from the canonical body, so the write path and the hash chain are untouched,
/// and indexed. SQLite adds a virtual column to an existing table without rewriting it.
const KIND_COLUMN: &str = "ALTER TABLE audit_events ADD COLUMN kind TEXT GENERATED ALWAYS AS (json_extract(body, '$.kind')) VIRTUAL";
const KIND_INDEX: &str = "CREATE INDEX IF NOT EXISTS audit_events_kind ON audit_events (kind, seq)";

/// Brings a store made by an earlier version up to date (each step is a no-op once done).
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let has_kind: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_xinfo('audit_events') WHERE name = 'kind'",
    )
    .fetch_one(pool)
    .await?;
    if has_kind == 0 {
        match sqlx::query(KIND_COLUMN).execute(pool).await {
            Ok(_) => {}
            // Another process opening the same store added it first.
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(e.into()),
        }
    }
    sqlx::query(KIND_INDEX).execute(pool).await?;
    Ok(())
}

/// How far an acknowledged event survives (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteDurability {
    /// `synchronous = FULL`: acknowledged events survive a power loss.
    #[default]
    PowerLoss,
    /// `synchronous = NORMAL`: acknowledged events survive a crash of the process, not
    /// necessarily a power loss or kernel crash; commits skip the fsync.
    ProcessCrash,
}

impl SqliteDurability {
    fn synchronous(self) -> SqliteSynchronous {
        match self {
            Self::PowerLoss => SqliteSynchronous::Full,
            Self::ProcessCrash => SqliteSynchronous::Normal,
        }
    }
}

impl std::str::FromStr for SqliteDurability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "power_loss" | "full" => Ok(Self::PowerLoss),
            "process_crash" | "normal" => Ok(Self::ProcessCrash),
            other => Err(format!(
                "unknown audit durability `{other}` (expected `power_loss` or `process_crash`)"
            )),
        }
    }
}

/// The file name of the audit database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "audit.sqlite3";

/// Audit events in a SQLite database.
pub struct SqliteAuditStore {
    pool: SqlitePool,
    path: PathBuf,
    key: Option<Arc<dyn KeyProvider>>,
    policy: CheckpointPolicy,
    state: Mutex<Option<ChainState>>,
}

impl SqliteAuditStore {
    /// Opens (creating if needed) `audit.sqlite3` in `data_dir`.
    pub async fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_in_with(data_dir, SqliteDurability::default()).await
    }

    /// Opens (creating if needed) `audit.sqlite3` in `data_dir`, with `durability`.
    pub async fn open_in_with(
        data_dir: &Path,
        durability: SqliteDurability,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::DataDir)?;
        Self::open_with(&data_dir.join(SQLITE_FILE_NAME), durability).await
    }

    /// Opens (creating if needed) the database file at `path`. The store is read-only
    /// until [`with_signer`](Self::with_signer) gives it a checkpoint key.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteDurability::default()).await
    }

    /// Opens (creating if needed) the database file at `path`, with `durability`.
    pub async fn open_with(path: &Path, durability: SqliteDurability) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(durability.synchronous())
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            key: None,
            policy: CheckpointPolicy::default(),
            state: Mutex::new(None),
        })
    }

    /// Gives the store the key that signs its checkpoints (needed to append).
    #[must_use]
    pub fn with_signer(mut self, key: Arc<dyn KeyProvider>) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets when checkpoints are signed.
    #[must_use]
    pub fn with_checkpoint_policy(mut self, policy: CheckpointPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool (for operational tooling and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn transact(
        &self,
        events: Vec<EncodedEvent>,
        force_checkpoint: bool,
        purge: Option<(DateTime<Utc>, SubjectRef)>,
    ) -> Result<(AppendReceipt, PurgeReport), StoreError> {
        let key = self.key.as_deref().ok_or(StoreError::ReadOnly)?;
        let mut cached = self.state.lock().await;
        // IMMEDIATE takes the write lock up front: the head read below cannot go stale.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head = read_head(&mut tx).await?;
        // Another process appending to the same file may have moved the head, or signed a
        // checkpoint over the same head (a flush): either way the cached chain state is
        // stale, and reusing it would fork the chain or sign overlapping checkpoints.
        let checkpointed: Option<i64> = sqlx::query_scalar(LAST_CHECKPOINTED_SQL)
            .fetch_one(&mut *tx)
            .await?;
        let checkpointed = seq_from_db(checkpointed.unwrap_or(0))?;
        let mut state = match cached.take() {
            Some(state) if state.is_current(head, checkpointed) => state,
            _ => load_state(&mut tx).await?,
        };
        let mut events = events;
        let mut report = PurgeReport::default();
        let mut force = force_checkpoint;
        if let Some((cutoff, actor)) = purge {
            let anchor: Option<i64> = sqlx::query_scalar(
                "SELECT c.last_seq FROM audit_checkpoints c JOIN audit_events e ON e.seq = c.last_seq \
                 WHERE e.recorded_at < ? ORDER BY c.last_seq DESC LIMIT 1",
            )
            .bind(micros(cutoff))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(anchor) = anchor {
                sqlx::query("INSERT OR REPLACE INTO audit_purge_guard (id, max_seq) VALUES (1, ?)")
                    .bind(anchor)
                    .execute(&mut *tx)
                    .await?;
                report.deleted_events = sqlx::query("DELETE FROM audit_events WHERE seq <= ?")
                    .bind(anchor)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                report.deleted_checkpoints =
                    sqlx::query("DELETE FROM audit_checkpoints WHERE last_seq < ?")
                        .bind(anchor)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                sqlx::query("DELETE FROM audit_purge_guard WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                let anchor = seq_from_db(anchor)?;
                report.anchor = Some(anchor);
                events.push(super::purge_record(anchor, cutoff, &report, actor)?);
                force = true;
            }
        }
        let prepared = state.advance(events, Utc::now(), &self.policy, force, key)?;
        for chunk in insert_chunks(&prepared.rows) {
            insert_events(chunk)?.execute(&mut *tx).await?;
        }
        if let Some(cp) = &prepared.checkpoint {
            insert_checkpoint::<sqlx::Sqlite>(cp)?
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        *cached = Some(state);
        let seqs: Vec<u64> = prepared.rows.iter().map(|r| r.seq).collect();
        if report.anchor.is_some() {
            report.record_seq = seqs.last().copied();
            report.checkpoint.clone_from(&prepared.checkpoint);
        }
        Ok((
            AppendReceipt {
                seqs,
                checkpoint: prepared.checkpoint,
            },
            report,
        ))
    }
}

async fn read_head(conn: &mut sqlx::SqliteConnection) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        return Ok((seq_from_db(row.try_get(0)?)?, bytes_to(row.try_get(1)?)?));
    }
    let row = sqlx::query(
        "SELECT last_seq, chain_head FROM audit_checkpoints ORDER BY last_seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok((seq_from_db(row.try_get(0)?)?, bytes_to(row.try_get(1)?)?)),
        None => Ok((0, GENESIS)),
    }
}

async fn load_state(conn: &mut sqlx::SqliteConnection) -> Result<ChainState, StoreError> {
    let checkpoint = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY last_seq DESC LIMIT 1"
    ))
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| decode_checkpoint(&row))
    .transpose()?;
    let after = seq_to_db(checkpoint.as_ref().map_or(0, |c| c.last_seq))?;
    let tail = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ? ORDER BY seq"
    ))
    .bind(after)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(decode_event)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(ChainState::recover(checkpoint.as_ref(), &tail)?)
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError> {
        Ok(self.transact(events, checkpoint, None).await?.0)
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(seq_to_db(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_event)
        .collect()
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY last_seq"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_checkpoint)
        .collect()
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let rows = select_page::<sqlx::Sqlite>(query, "kind")?
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage::from_rows(rows, query.effective_limit()))
    }

    async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        actor: SubjectRef,
    ) -> Result<PurgeReport, StoreError> {
        Ok(self
            .transact(Vec::new(), false, Some((cutoff, actor)))
            .await?
            .1)
    }
}
