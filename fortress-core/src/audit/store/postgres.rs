//! The scale-out store: PostgreSQL, with the same schema, triggers and behaviour as the
//! SQLite store. A batch commits with PostgreSQL's default `synchronous_commit = on`, so
//! an acknowledged event is on disk; the write lock is `LOCK TABLE … IN EXCLUSIVE MODE`,
//! which still lets readers (queries, verification, exports) run concurrently.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::Mutex;

use super::common::{
    CHECKPOINT_COLUMNS, EVENT_COLUMNS, Head, LAST_CHECKPOINTED_SQL, bytes_to, decode_checkpoint,
    decode_event, insert_checkpoint, select_page, seq_from_db, seq_to_db,
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
    seq          BIGINT PRIMARY KEY,
    recorded_at  BIGINT NOT NULL,
    ts           BIGINT NOT NULL,
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
    hash         BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject_id, seq);
-- The event kind, for the dashboard's filters (Change Log, dry runs): generated from the
-- canonical body, so the write path and the hash chain are untouched. Adding it to a store
-- made before it computes it for the existing rows once.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS kind TEXT
    GENERATED ALWAYS AS (body::jsonb ->> 'kind') STORED;
CREATE INDEX IF NOT EXISTS audit_events_kind ON audit_events (kind, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    last_seq    BIGINT PRIMARY KEY,
    first_seq   BIGINT NOT NULL,
    chain_head  BYTEA NOT NULL,
    merkle_root BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BYTEA NOT NULL
);
CREATE OR REPLACE FUNCTION fortress_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    max_seq TEXT := current_setting('fortress.audit_purge_max_seq', true);
BEGIN
    IF TG_OP = 'DELETE' AND max_seq IS NOT NULL AND max_seq <> '' THEN
        IF TG_TABLE_NAME = 'audit_events' THEN
            IF OLD.seq <= max_seq::BIGINT THEN
                RETURN OLD;
            END IF;
        ELSIF TG_TABLE_NAME = 'audit_checkpoints' THEN
            IF OLD.last_seq < max_seq::BIGINT THEN
                RETURN OLD;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % refused on %', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE OR REPLACE FUNCTION fortress_audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit trail is append-only: TRUNCATE refused on %', TG_TABLE_NAME;
END
$$;
CREATE OR REPLACE TRIGGER audit_events_guard BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION fortress_audit_guard();
CREATE OR REPLACE TRIGGER audit_checkpoints_guard BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION fortress_audit_guard();
CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION fortress_audit_refuse_truncate();
CREATE OR REPLACE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION fortress_audit_refuse_truncate();
"#;

/// Audit events in a PostgreSQL database (in the connection's `search_path` schema).
pub struct PostgresAuditStore {
    pool: PgPool,
    key: Option<Arc<dyn KeyProvider>>,
    policy: CheckpointPolicy,
    state: Mutex<Option<ChainState>>,
}

impl PostgresAuditStore {
    /// Connects to `url` (`postgres://…`) and creates the schema if needed.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with explicit options (for example a `search_path` for a dedicated schema)
    /// and creates the schema if needed. The store is read-only until
    /// [`with_signer`](Self::with_signer) gives it a checkpoint key.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (one a process shares between its stores) and creates the
    /// schema if needed. Read-only until [`with_signer`](Self::with_signer).
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        // Serialize concurrent first starts: CREATE … IF NOT EXISTS is not race-free.
        let mut tx = pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('fortress_audit:' || current_schema()))",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Self {
            pool,
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

    /// The connection pool (for operational tooling and tests).
    pub fn pool(&self) -> &PgPool {
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
        let mut tx = self.pool.begin().await?;
        // Serializes writers (other replicas too) while readers go on: the head read
        // below cannot go stale before commit.
        sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let head = read_head(&mut tx).await?;
        // Another replica may have signed a checkpoint over the same head since this one
        // last wrote: then the cached pending hashes are covered already.
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
                 WHERE e.recorded_at < $1 ORDER BY c.last_seq DESC LIMIT 1",
            )
            .bind(micros(cutoff))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(anchor) = anchor {
                sqlx::query("SELECT set_config('fortress.audit_purge_max_seq', $1, true)")
                    .bind(anchor.to_string())
                    .execute(&mut *tx)
                    .await?;
                report.deleted_events = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                    .bind(anchor)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                report.deleted_checkpoints =
                    sqlx::query("DELETE FROM audit_checkpoints WHERE last_seq < $1")
                        .bind(anchor)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                sqlx::query("SELECT set_config('fortress.audit_purge_max_seq', '', true)")
                    .execute(&mut *tx)
                    .await?;
                let anchor = seq_from_db(anchor)?;
                report.anchor = Some(anchor);
                events.push(super::purge_record(anchor, cutoff, &report, actor)?);
                force = true;
            }
        }
        let prepared = state.advance(events, Utc::now(), &self.policy, force, key)?;
        if !prepared.rows.is_empty() {
            insert_rows(&prepared.rows)?.execute(&mut *tx).await?;
        }
        if let Some(cp) = &prepared.checkpoint {
            insert_checkpoint::<sqlx::Postgres>(cp)?
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

/// A whole batch in one statement of one shape: each column bound as one array and
/// zipped back into rows by `UNNEST`, so any batch size is a single round trip with 15
/// parameters, prepared once per connection.
const INSERT_UNNEST: &str = "INSERT INTO audit_events (seq, recorded_at, ts, workspace, subject_id, subject_kind, action, resource, connector, model, decision, outcome, request_id, body, hash) \
     SELECT r.seq, $2, r.ts, r.workspace, r.subject_id, r.subject_kind, r.action, r.resource, r.connector, r.model, r.decision, r.outcome, r.request_id, r.body, r.hash \
     FROM UNNEST($1::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[], $14::TEXT[], $15::BYTEA[]) \
     AS r (seq, ts, workspace, subject_id, subject_kind, action, resource, connector, model, decision, outcome, request_id, body, hash)";

/// Binds `rows` (one batch: the same `recorded_at`) to [`INSERT_UNNEST`].
fn insert_rows(
    rows: &[StoredEvent],
) -> Result<sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let recorded_at = rows.first().map_or(0, |r| r.recorded_at_us);
    if rows.iter().any(|r| r.recorded_at_us != recorded_at) {
        return Err(StoreError::Malformed("one batch with two append times"));
    }
    let text =
        |column: fn(&StoredEvent) -> &str| -> Vec<&str> { rows.iter().map(column).collect() };
    let optional = |column: fn(&StoredEvent) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(column).collect()
    };
    let seqs = rows
        .iter()
        .map(|r| seq_to_db(r.seq))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sqlx::query(INSERT_UNNEST)
        .bind(seqs)
        .bind(recorded_at)
        .bind(
            rows.iter()
                .map(|r| r.columns.timestamp_us)
                .collect::<Vec<_>>(),
        )
        .bind(text(|r| &r.columns.workspace))
        .bind(text(|r| &r.columns.subject_id))
        .bind(text(|r| &r.columns.subject_kind))
        .bind(text(|r| &r.columns.action))
        .bind(text(|r| &r.columns.resource))
        .bind(optional(|r| r.columns.connector.as_deref()))
        .bind(optional(|r| r.columns.model.as_deref()))
        .bind(optional(|r| r.columns.decision.as_deref()))
        .bind(text(|r| &r.columns.outcome))
        .bind(text(|r| &r.columns.request_id))
        .bind(text(|r| &r.body))
        .bind(rows.iter().map(|r| r.hash.as_slice()).collect::<Vec<_>>()))
}

async fn read_head(conn: &mut sqlx::PgConnection) -> Result<Head, StoreError> {
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

async fn load_state(conn: &mut sqlx::PgConnection) -> Result<ChainState, StoreError> {
    let checkpoint = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY last_seq DESC LIMIT 1"
    ))
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| decode_checkpoint(&row))
    .transpose()?;
    let after = seq_to_db(checkpoint.as_ref().map_or(0, |c| c.last_seq))?;
    let tail = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq"
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
impl AuditStore for PostgresAuditStore {
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError> {
        Ok(self.transact(events, checkpoint, None).await?.0)
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
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
        let rows = select_page::<sqlx::Postgres>(query, "kind")?
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
