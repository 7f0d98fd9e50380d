//! Shared harness of the vault tests: the same test bodies run against SQLite (a file in a
//! temporary data directory) and PostgreSQL (a fresh database on the development server,
//! reached through `FORTRESS_TEST_POSTGRES_URL` or `postgres://postgres@127.0.0.1:5432/test`,
//! dropped after). A database of its own, and one PostgreSQL test at a time: `VACUUM` keeps
//! dead tuples that a concurrent transaction may still see, so other tests' work could keep
//! a deleted ciphertext on disk and make the disk scans flaky.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use fortress_core::audit::MemoryAuditSink;
use fortress_core::vault::keys::{KeyProvider, ManagedKeys, RootKey};
use fortress_core::vault::store::{CredentialStore, PgStore, SqliteStore};
use fortress_core::vault::{EnvelopeVault, VaultOptions};
use sqlx::postgres::PgConnectOptions;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Backend {
    pub kind: Kind,
    sqlite: Option<SqliteStore>,
    pg: Option<PgStore>,
    database: Option<String>,
    dir: tempfile::TempDir,
}

pub fn postgres_url() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Backend {
    pub async fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        match kind {
            Kind::Sqlite => {
                let store = SqliteStore::open(&dir.path().join("data"))
                    .await
                    .expect("open SQLite");
                Self {
                    kind,
                    sqlite: Some(store),
                    pg: None,
                    database: None,
                    dir,
                }
            }
            Kind::Postgres => {
                let database = format!("t_vault_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&postgres_url())
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
                    .execute(&admin)
                    .await
                    .expect("create database");
                admin.close().await;
                let options = PgConnectOptions::from_str(&postgres_url())
                    .expect("PostgreSQL URL")
                    .database(&database);
                let store = PgStore::connect_with(options)
                    .await
                    .expect("open PostgreSQL store");
                Self {
                    kind,
                    sqlite: None,
                    pg: Some(store),
                    database: Some(database),
                    dir,
                }
            }
        }
    }

    pub fn store(&self) -> Arc<dyn CredentialStore> {
        match (&self.sqlite, &self.pg) {
            (Some(s), _) => Arc::new(s.clone()),
            (_, Some(p)) => Arc::new(p.clone()),
            _ => unreachable!("a backend has a store"),
        }
    }

    /// A scratch directory outside the data directory (for key files).
    pub fn scratch(&self) -> std::path::PathBuf {
        self.dir.path().join("keys")
    }

    /// A SOHO vault with a fresh master key, its audit sink, and default options.
    pub fn vault(&self) -> (EnvelopeVault, Arc<MemoryAuditSink>) {
        self.vault_with(
            Arc::new(ManagedKeys::new(RootKey::generate())),
            VaultOptions::default(),
        )
    }

    pub fn vault_with(
        &self,
        keys: Arc<dyn KeyProvider>,
        options: VaultOptions,
    ) -> (EnvelopeVault, Arc<MemoryAuditSink>) {
        let audit = Arc::new(MemoryAuditSink::new());
        let vault = EnvelopeVault::new(self.store(), keys, audit.clone()).with_options(options);
        (vault, audit)
    }

    /// Everything the backend has on disk for the vault: for SQLite the database file and
    /// its WAL; for PostgreSQL the table's heap file (after a checkpoint flushes it) plus the
    /// rows as text.
    pub async fn disk_bytes(&self) -> Vec<u8> {
        if let Some(store) = &self.sqlite {
            let mut bytes = std::fs::read(store.path()).expect("read database file");
            let wal = format!("{}-wal", store.path().display());
            if let Ok(mut log) = std::fs::read(wal) {
                bytes.append(&mut log);
            }
            return bytes;
        }
        let pool = self.pg.as_ref().expect("a backend has a store").pool();
        sqlx::raw_sql("CHECKPOINT")
            .execute(pool)
            .await
            .expect("checkpoint");
        let (mut heap,): (Vec<u8>,) = sqlx::query_as(
            "SELECT pg_read_binary_file(pg_relation_filepath('fortress_vault_credentials'))",
        )
        .fetch_one(pool)
        .await
        .expect("read heap file");
        let (rows,): (String,) = sqlx::query_as(
            "SELECT COALESCE(string_agg(t::text, E'\\n'), '') FROM fortress_vault_credentials t",
        )
        .fetch_one(pool)
        .await
        .expect("dump rows");
        heap.extend_from_slice(rows.as_bytes());
        heap
    }

    /// Whether `needle` (raw, or hex-encoded as PostgreSQL prints bytea) is on disk.
    pub async fn on_disk(&self, needle: &[u8]) -> bool {
        let bytes = self.disk_bytes().await;
        contains(&bytes, needle) || contains(&bytes, hex::encode(needle).as_bytes())
    }

    async fn cleanup(&self) {
        if let Some(database) = &self.database {
            if let Some(pg) = &self.pg {
                pg.pool().close().await;
            }
            if let Ok(admin) = sqlx::PgPool::connect(&postgres_url()).await {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Serializes the PostgreSQL tests of one test binary. Even across databases, a backend
/// running `CREATE DATABASE` or `DROP DATABASE` holds back every database's vacuum horizon,
/// so a concurrent test's setup could keep a deleted ciphertext alive through `VACUUM FULL`.
static POSTGRES_ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one test body on a fresh backend, always cleaning up (even when the body panics).
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Arc<Backend>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _turn = match kind {
        Kind::Postgres => Some(POSTGRES_ONE_AT_A_TIME.lock().await),
        Kind::Sqlite => None,
    };
    let backend = Arc::new(Backend::new(kind).await);
    let result = tokio::spawn(test(backend.clone())).await;
    backend.cleanup().await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Generates a `sqlite` and a `postgres` test for each named `async fn(Arc<Backend>)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::vault_support::run($crate::vault_support::Kind::Sqlite, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::vault_support::run($crate::vault_support::Kind::Postgres, super::$name).await
            }
        }
    )*};
}
