//! Durable metering in SQL: SQLite in the data directory by default, PostgreSQL
//! (`postgres://…`) for replicas, through the core's shared database layer
//! ([`fortress_core::db`]): one SQL text and one binding sequence serve both backends, and
//! the schema is applied at start under the layer's migration lock. Each flush is one
//! transaction of `INSERT … ON CONFLICT DO UPDATE` increments.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use fortress_core::db::{Database, is_postgres_url};
use fortress_core::on_database;
use sqlx::Row;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::meter::{BatchOwner, MeterError, MeterKey, MeterRow, MeterStore};
use super::rules::Principal;

/// The schema (idempotent: every statement is `CREATE … IF NOT EXISTS`).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fortress_pat_usage (
        day                   TEXT   NOT NULL,
        workspace             TEXT   NOT NULL,
        key_id                TEXT   NOT NULL,
        user_id               TEXT   NOT NULL,
        team                  TEXT   NOT NULL,
        model                 TEXT   NOT NULL,
        requests              BIGINT NOT NULL,
        input_tokens          BIGINT NOT NULL,
        output_tokens         BIGINT NOT NULL,
        cache_creation_tokens BIGINT NOT NULL,
        cache_read_tokens     BIGINT NOT NULL,
        cost_micros           BIGINT NOT NULL,
        PRIMARY KEY (day, workspace, key_id, user_id, team, model)
    );
    CREATE TABLE IF NOT EXISTS fortress_pat_metered_batches (
        batch_id   TEXT NOT NULL PRIMARY KEY,
        metered_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS fortress_pat_batch_owners (
        batch_id   TEXT NOT NULL PRIMARY KEY,
        workspace  TEXT NOT NULL,
        key_id     TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        team       TEXT NOT NULL,
        request_id TEXT NOT NULL,
        budgets    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );";

/// The upsert (`$n` placeholders, which SQLite accepts too).
const UPSERT: &str = "INSERT INTO fortress_pat_usage (day, workspace, key_id, user_id, team, model,
        requests, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (day, workspace, key_id, user_id, team, model) DO UPDATE SET
        requests = fortress_pat_usage.requests + excluded.requests,
        input_tokens = fortress_pat_usage.input_tokens + excluded.input_tokens,
        output_tokens = fortress_pat_usage.output_tokens + excluded.output_tokens,
        cache_creation_tokens = fortress_pat_usage.cache_creation_tokens + excluded.cache_creation_tokens,
        cache_read_tokens = fortress_pat_usage.cache_read_tokens + excluded.cache_read_tokens,
        cost_micros = fortress_pat_usage.cost_micros + excluded.cost_micros";

const SELECT: &str = "SELECT day, workspace, key_id, user_id, team, model, requests, input_tokens,
        output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros
    FROM fortress_pat_usage WHERE day >= $1 AND day <= $2
    ORDER BY day, workspace, key_id, user_id, team, model";

const CLAIM: &str =
    "INSERT INTO fortress_pat_metered_batches (batch_id, metered_at) VALUES ($1, $2)
    ON CONFLICT (batch_id) DO NOTHING";

const SET_OWNER: &str = "INSERT INTO fortress_pat_batch_owners
        (batch_id, workspace, key_id, user_id, team, request_id, budgets, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (batch_id) DO NOTHING";

const GET_OWNER: &str = "SELECT workspace, key_id, user_id, team, request_id, budgets
    FROM fortress_pat_batch_owners
    WHERE batch_id = $1";

fn backend(error: sqlx::Error) -> MeterError {
    MeterError::Backend(Box::new(error))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Metering rows in SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMeterStore {
    db: Database,
}

impl SqlMeterStore {
    /// Opens (creating if needed) the SQLite file at `path` and applies the schema.
    pub async fn open_sqlite(path: &Path) -> Result<Self, MeterError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MeterError::Backend(Box::new(e)))?;
        }
        // Flushes of several gateways' processes may meet on one file: wait, do not fail.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::over(Database::Sqlite(pool)).await
    }

    /// Connects to a `postgres://` URL and applies the schema.
    pub async fn connect_postgres(url: &str) -> Result<Self, MeterError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| MeterError::Config("invalid PostgreSQL URL".into()))?;
        Self::connect_postgres_with(options).await
    }

    /// Connects with explicit options (for example a `search_path`) and applies the schema.
    pub async fn connect_postgres_with(options: PgConnectOptions) -> Result<Self, MeterError> {
        Self::over(Database::postgres(options).await.map_err(backend)?).await
    }

    /// `postgres://…` or `postgresql://…`: PostgreSQL; otherwise an error.
    pub async fn connect(url: &str) -> Result<Self, MeterError> {
        if is_postgres_url(url) {
            Self::connect_postgres(url).await
        } else {
            Err(MeterError::Config(
                "the metering database must be a postgres:// URL".into(),
            ))
        }
    }

    /// The store over an open database, its schema applied.
    pub async fn over(db: Database) -> Result<Self, MeterError> {
        db.migrate("fortress_pat_usage", SCHEMA)
            .await
            .map_err(backend)?;
        Ok(Self { db })
    }
}

macro_rules! bind_row {
    ($query:expr, $key:expr, $row:expr) => {
        $query
            .bind(&$key.day)
            .bind(&$key.workspace)
            .bind(&$key.key)
            .bind(&$key.user)
            .bind(&$key.team)
            .bind(&$key.model)
            .bind(int($row.requests))
            .bind(int($row.input_tokens))
            .bind(int($row.output_tokens))
            .bind(int($row.cache_creation_input_tokens))
            .bind(int($row.cache_read_input_tokens))
            .bind(int($row.cost_micros))
    };
}

macro_rules! read_row {
    ($row:expr) => {{
        let r = $row;
        (
            MeterKey {
                day: r.try_get(0).map_err(backend)?,
                workspace: r.try_get(1).map_err(backend)?,
                key: r.try_get(2).map_err(backend)?,
                user: r.try_get(3).map_err(backend)?,
                team: r.try_get(4).map_err(backend)?,
                model: r.try_get(5).map_err(backend)?,
            },
            MeterRow {
                requests: count(r.try_get(6).map_err(backend)?),
                input_tokens: count(r.try_get(7).map_err(backend)?),
                output_tokens: count(r.try_get(8).map_err(backend)?),
                cache_creation_input_tokens: count(r.try_get(9).map_err(backend)?),
                cache_read_input_tokens: count(r.try_get(10).map_err(backend)?),
                cost_micros: count(r.try_get(11).map_err(backend)?),
            },
        )
    }};
}

#[async_trait]
impl MeterStore for SqlMeterStore {
    async fn add(&self, rows: &[(MeterKey, MeterRow)]) -> Result<(), MeterError> {
        on_database!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(backend)?;
            for (key, row) in rows {
                bind_row!(sqlx::query(UPSERT), key, row)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    async fn rows(&self, first: &str, last: &str) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        on_database!(&self.db, pool => {
            let rows = sqlx::query(SELECT)
                .bind(first)
                .bind(last)
                .fetch_all(pool)
                .await
                .map_err(backend)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(read_row!(row));
            }
            Ok(out)
        })
    }

    async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError> {
        let now = chrono::Utc::now().to_rfc3339();
        let done = on_database!(&self.db, pool => sqlx::query(CLAIM)
            .bind(batch)
            .bind(&now)
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(done == 1)
    }

    async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError> {
        let now = chrono::Utc::now().to_rfc3339();
        let budgets =
            serde_json::to_string(&owner.budgets).map_err(|e| MeterError::Backend(Box::new(e)))?;
        on_database!(&self.db, pool => {
            sqlx::query(SET_OWNER)
                .bind(batch)
                .bind(&owner.principal.workspace)
                .bind(&owner.principal.key)
                .bind(&owner.principal.user)
                .bind(&owner.principal.team)
                .bind(&owner.request_id)
                .bind(&budgets)
                .bind(&now)
                .execute(pool)
                .await
                .map_err(backend)?;
        });
        Ok(())
    }

    async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError> {
        type OwnerRow = (String, String, String, String, String, String);
        let row: Option<OwnerRow> = on_database!(&self.db, pool => sqlx::query_as(GET_OWNER)
            .bind(batch)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        let Some((workspace, key, user, team, request_id, budgets)) = row else {
            return Ok(None);
        };
        let budgets =
            serde_json::from_str(&budgets).map_err(|e| MeterError::Backend(Box::new(e)))?;
        Ok(Some(BatchOwner {
            principal: Principal {
                workspace,
                key,
                user,
                team,
            },
            request_id,
            budgets,
        }))
    }
}
