//! One database handle for the durable stores: SQLite (the embedded default, a file in the
//! data directory) or PostgreSQL (scale-out: every replica shares it), chosen by a URL.
//!
//! The stores write their SQL once, with `$1`, `$2`… placeholders (both backends accept
//! them) and portable statements (`ON CONFLICT`, `RETURNING`); [`on_database!`] runs the
//! same code against whichever pool is open. Only table definitions differ, through
//! [`Dialect`]. Schemas are applied at start by [`Database::migrate`], serialized across
//! replicas on PostgreSQL so that concurrent first starts do not race.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::db::Database;
//! use fortress_core::on_database;
//!
//! let db = Database::sqlite_memory().await.unwrap();
//! db.migrate("example", "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
//!     .await
//!     .unwrap();
//! on_database!(&db, pool => sqlx::query("INSERT INTO t (k, v) VALUES ($1, $2)")
//!     .bind("a").bind(7_i64).execute(pool).await.map(drop)).unwrap();
//! let v: i64 = on_database!(&db, pool => sqlx::query_scalar("SELECT v FROM t WHERE k = $1")
//!     .bind("a").fetch_one(pool).await).unwrap();
//! assert_eq!(v, 7);
//! # });
//! ```

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Connections one process keeps to PostgreSQL for all its stores together (replicas ×
/// this must stay under the server's `max_connections`).
pub const POSTGRES_POOL_SIZE: u32 = 8;

/// An open database: the pool of one backend.
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite file (or memory) of this process.
    Sqlite(SqlitePool),
    /// A PostgreSQL database shared by replicas.
    Postgres(PgPool),
}

/// The SQL dialect, for the few statements that differ (table definitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The column type of raw bytes.
    pub fn blob(self) -> &'static str {
        match self {
            Self::Sqlite => "BLOB",
            Self::Postgres => "BYTEA",
        }
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://…` or `postgresql://…`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Runs `$body` with `$pool` bound to the open pool (`&SqlitePool` or `&PgPool`): the body
/// is compiled once per backend, so one SQL text and one binding sequence serve both.
#[macro_export]
macro_rules! on_database {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => $body,
            $crate::db::Database::Postgres($pool) => $body,
        }
    };
}

impl Database {
    /// Opens `url`: PostgreSQL for `postgres://…`, else a SQLite URL (`sqlite:…`).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        if is_postgres_url(url) {
            // `IF NOT EXISTS` notices at every start are noise in the gateway's log.
            let options =
                PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
            Self::postgres(options).await
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            Self::sqlite(options, 4).await
        }
    }

    /// PostgreSQL when `url` is given, else the SQLite file `default_file` (created if
    /// missing): the selection rule of every durable store.
    pub async fn open_or_file(url: Option<&str>, default_file: &Path) -> Result<Self, sqlx::Error> {
        match url {
            Some(url) if is_postgres_url(url) => Self::connect(url).await,
            Some(url) => Err(sqlx::Error::Configuration(
                format!("unsupported database URL scheme in {:?}", scheme_of(url)).into(),
            )),
            None => Self::sqlite_file(default_file).await,
        }
    }

    /// Connects to PostgreSQL with explicit options (for example a `search_path`).
    pub async fn postgres(options: PgConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self::Postgres(pool))
    }

    /// Opens (creating if needed) a SQLite file, in WAL mode so operator commands can
    /// write while a gateway reads.
    pub async fn sqlite_file(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        Self::sqlite(options, 4).await
    }

    /// A private in-memory SQLite database (tests, the demo).
    pub async fn sqlite_memory() -> Result<Self, sqlx::Error> {
        // One connection: every connection to `:memory:` is a different database.
        Self::sqlite(SqliteConnectOptions::from_str("sqlite::memory:")?, 1).await
    }

    async fn sqlite(options: SqliteConnectOptions, size: u32) -> Result<Self, sqlx::Error> {
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .connect_with(options)
            .await?;
        Ok(Self::Sqlite(pool))
    }

    /// The dialect of the open backend.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The PostgreSQL pool, when that is the backend (for stores that have their own
    /// PostgreSQL implementation, such as the audit trail and the vault).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match self {
            Self::Postgres(pool) => Some(pool),
            Self::Sqlite(_) => None,
        }
    }

    /// Applies `ddl` (idempotent statements such as `CREATE TABLE IF NOT EXISTS`). On
    /// PostgreSQL, replicas starting together take turns (an advisory lock per `scope`
    /// and schema), since `IF NOT EXISTS` alone is not race-free there.
    pub async fn migrate(&self, scope: &str, ddl: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::raw_sql(ddl).execute(pool).await?;
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtext($1 || ':' || current_schema()))",
                )
                .bind(scope)
                .execute(&mut *tx)
                .await?;
                sqlx::raw_sql(ddl).execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// The scheme of a URL, without the rest (which may hold a password).
fn scheme_of(url: &str) -> &str {
    url.split_once(':').map_or("", |(scheme, _)| scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_accepts_numbered_placeholders_in_any_order() {
        let db = Database::sqlite_memory().await.unwrap();
        db.migrate("t", "CREATE TABLE IF NOT EXISTS t (a TEXT, b BIGINT)")
            .await
            .unwrap();
        on_database!(&db, pool => sqlx::query("INSERT INTO t (b, a) VALUES ($2, $1)")
            .bind("x").bind(5_i64).execute(pool).await.map(drop))
        .unwrap();
        let (a, b): (String, i64) =
            on_database!(&db, pool => sqlx::query_as("SELECT a, b FROM t").fetch_one(pool).await)
                .unwrap();
        assert_eq!((a.as_str(), b), ("x", 5));
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused_without_echoing_the_url() {
        let err = Database::open_or_file(Some("mysql://u:hunter2@h/db"), Path::new("x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
