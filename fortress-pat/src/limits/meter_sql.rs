//! Durable metering in SQL: SQLite in the data directory by default, PostgreSQL
//! (`postgres://…`) for replicas. The schema is created by numbered migrations applied at
//! start (under an advisory lock on PostgreSQL, so replicas starting together agree).
//! Each flush is one transaction of `INSERT … ON CONFLICT DO UPDATE` increments.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::meter::{BatchOwner, MeterError, MeterKey, MeterRow, MeterStore};
use super::rules::Principal;

/// The migrations, in order. Applied ones are listed in `fortress_pat_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS fortress_pat_usage (
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
    );",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS fortress_pat_batch_owners (
        batch_id   TEXT NOT NULL PRIMARY KEY,
        workspace  TEXT NOT NULL,
        key_id     TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        team       TEXT NOT NULL,
        request_id TEXT NOT NULL,
        budgets    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );",
    ),
];

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS fortress_pat_migrations (
    version    BIGINT NOT NULL PRIMARY KEY,
    applied_at TEXT   NOT NULL
)";

/// The upsert, with PostgreSQL placeholders (`$n`; SQLite gets `?n`).
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

/// An arbitrary constant naming the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x5041_545f_4d45_5452;

fn sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

fn backend(error: sqlx::Error) -> MeterError {
    MeterError::Backend(Box::new(error))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Metering rows in SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMeterStore {
    pool: Pool,
}

impl SqlMeterStore {
    /// Opens (creating if needed) the SQLite file at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, MeterError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MeterError::Backend(Box::new(e)))?;
        }
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
        let store = Self {
            pool: Pool::Sqlite(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to a `postgres://` URL and migrates the schema.
    pub async fn connect_postgres(url: &str) -> Result<Self, MeterError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| MeterError::Config("invalid PostgreSQL URL".into()))?;
        Self::connect_postgres_with(options).await
    }

    /// Connects with explicit options (for example a `search_path`) and migrates.
    pub async fn connect_postgres_with(options: PgConnectOptions) -> Result<Self, MeterError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend)?;
        let store = Self {
            pool: Pool::Postgres(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// `postgres://…` or `postgresql://…`: PostgreSQL; otherwise an error.
    pub async fn connect(url: &str) -> Result<Self, MeterError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else {
            Err(MeterError::Config(
                "the metering database must be a postgres:// URL".into(),
            ))
        }
    }

    async fn migrate(&self) -> Result<(), MeterError> {
        let now = chrono::Utc::now().to_rfc3339();
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(backend)?;
                sqlx::raw_sql(MIGRATIONS_TABLE)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                for (version, sql) in MIGRATIONS {
                    let done =
                        sqlx::query("SELECT 1 FROM fortress_pat_migrations WHERE version = ?1")
                            .bind(version)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(backend)?;
                    if done.is_none() {
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        sqlx::query("INSERT INTO fortress_pat_migrations VALUES (?1, ?2)")
                            .bind(version)
                            .bind(&now)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                    }
                }
                tx.commit().await.map_err(backend)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(backend)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                sqlx::raw_sql(MIGRATIONS_TABLE)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                for (version, sql) in MIGRATIONS {
                    let done =
                        sqlx::query("SELECT 1 FROM fortress_pat_migrations WHERE version = $1")
                            .bind(version)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(backend)?;
                    if done.is_none() {
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        sqlx::query("INSERT INTO fortress_pat_migrations VALUES ($1, $2)")
                            .bind(version)
                            .bind(&now)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                    }
                }
                tx.commit().await.map_err(backend)
            }
        }
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
        match &self.pool {
            Pool::Sqlite(pool) => {
                let sql = sqlite(UPSERT);
                let mut tx = pool.begin().await.map_err(backend)?;
                for (key, row) in rows {
                    bind_row!(sqlx::query(&sql), key, row)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                tx.commit().await.map_err(backend)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(backend)?;
                for (key, row) in rows {
                    bind_row!(sqlx::query(UPSERT), key, row)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                tx.commit().await.map_err(backend)
            }
        }
    }

    async fn rows(&self, first: &str, last: &str) -> Result<Vec<(MeterKey, MeterRow)>, MeterError> {
        let mut out = Vec::new();
        match &self.pool {
            Pool::Sqlite(pool) => {
                let rows = sqlx::query(&sqlite(SELECT))
                    .bind(first)
                    .bind(last)
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?;
                for row in &rows {
                    out.push(read_row!(row));
                }
            }
            Pool::Postgres(pool) => {
                let rows = sqlx::query(SELECT)
                    .bind(first)
                    .bind(last)
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?;
                for row in &rows {
                    out.push(read_row!(row));
                }
            }
        }
        Ok(out)
    }

    async fn claim_batch(&self, batch: &str) -> Result<bool, MeterError> {
        let now = chrono::Utc::now().to_rfc3339();
        let done = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query(&sqlite(CLAIM))
                .bind(batch)
                .bind(&now)
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected(),
            Pool::Postgres(pool) => sqlx::query(CLAIM)
                .bind(batch)
                .bind(&now)
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected(),
        };
        Ok(done == 1)
    }

    async fn set_batch_owner(&self, batch: &str, owner: &BatchOwner) -> Result<(), MeterError> {
        let now = chrono::Utc::now().to_rfc3339();
        let budgets =
            serde_json::to_string(&owner.budgets).map_err(|e| MeterError::Backend(Box::new(e)))?;
        macro_rules! bind_owner {
            ($query:expr) => {
                $query
                    .bind(batch)
                    .bind(&owner.principal.workspace)
                    .bind(&owner.principal.key)
                    .bind(&owner.principal.user)
                    .bind(&owner.principal.team)
                    .bind(&owner.request_id)
                    .bind(&budgets)
                    .bind(&now)
            };
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                bind_owner!(sqlx::query(&sqlite(SET_OWNER)))
                    .execute(pool)
                    .await
                    .map_err(backend)?;
            }
            Pool::Postgres(pool) => {
                bind_owner!(sqlx::query(SET_OWNER))
                    .execute(pool)
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    async fn batch_owner(&self, batch: &str) -> Result<Option<BatchOwner>, MeterError> {
        type OwnerRow = (String, String, String, String, String, String);
        let row: Option<OwnerRow> = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(&sqlite(GET_OWNER))
                .bind(batch)
                .fetch_optional(pool)
                .await
                .map_err(backend)?,
            Pool::Postgres(pool) => sqlx::query_as(GET_OWNER)
                .bind(batch)
                .fetch_optional(pool)
                .await
                .map_err(backend)?,
        };
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
