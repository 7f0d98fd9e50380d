//! Vault benchmarks: resolve with a cached data key, resolve with a cold cache, and put, on
//! SQLite and PostgreSQL, each beside a baseline measured in the same run (a plain
//! primary-key `SELECT` / `INSERT` of a same-sized row on the same database).
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo bench -p fortress-core --bench vault -- --warm-up-time 1 --measurement-time 3
//! ```

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fortress_core::audit::MemoryAuditSink;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::envelope::{self, DataKey, SymmetricKey};
use fortress_core::vault::keys::{ManagedKeys, RootKey};
use fortress_core::vault::store::{CredentialStore, PgStore, SqliteStore};
use fortress_core::vault::{CredentialSlot, EnvelopeVault, Vault, VaultOptions};
use sqlx::postgres::PgConnectOptions;

const SECRET: &str = "sk-ant-api03-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij";

/// One master key for every vault of a run, so the cached and cold vaults read the same row.
fn keys() -> Arc<ManagedKeys> {
    static MASTER: std::sync::OnceLock<RootKey> = std::sync::OnceLock::new();
    Arc::new(ManagedKeys::new(
        MASTER.get_or_init(RootKey::generate).clone(),
    ))
}

fn vault_over(store: Arc<dyn CredentialStore>, cache: bool) -> EnvelopeVault {
    let ttl = if cache {
        Duration::from_secs(300)
    } else {
        Duration::ZERO
    };
    EnvelopeVault::new(store, keys(), Arc::new(MemoryAuditSink::new()))
        .with_options(VaultOptions::default().with_data_key_cache_ttl(ttl))
}

fn slot() -> CredentialSlot {
    CredentialSlot::workspace(WorkspaceId::new("bench"), "anthropic")
}

fn crypto(c: &mut Criterion) {
    let mut group = c.benchmark_group("vault/crypto");
    let s = slot();
    let kek = SymmetricKey::generate();
    group.bench_function("baseline_copy_secret", |b| {
        b.iter(|| std::hint::black_box(SECRET.as_bytes().to_vec()))
    });
    group.bench_function("seal_and_wrap", |b| {
        b.iter(|| {
            let data_key = DataKey::generate();
            let wrapped = envelope::wrap_data_key(&kek, &data_key, &s, 1, 1).unwrap();
            let sealed = data_key.seal_secret(&s, 1, SECRET.as_bytes()).unwrap();
            std::hint::black_box((wrapped, sealed))
        })
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(SqliteStore::open(dir.path())).unwrap();
    let pool = store.pool().clone();
    let store: Arc<dyn CredentialStore> = Arc::new(store);
    let cached = vault_over(store.clone(), true);
    let cold = vault_over(store.clone(), false);
    let s = slot();
    rt.block_on(cached.put(&s, Secret::from(SECRET))).unwrap();
    rt.block_on(async {
        sqlx::raw_sql("CREATE TABLE baseline (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("vault/sqlite");
    group.bench_function("baseline_select_row", |b| {
        b.to_async(&rt).iter(|| async {
            let row: (Vec<u8>,) = sqlx::query_as(
                "SELECT ciphertext FROM fortress_vault_credentials WHERE workspace = ?1 AND connector = ?2 AND user_slot = ''",
            )
            .bind("bench")
            .bind("anthropic")
            .fetch_one(&pool)
            .await
            .unwrap();
            row
        })
    });
    group.bench_function("resolve_cached_data_key", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.resolve(&s).await.unwrap() })
    });
    group.bench_function("resolve_cold_cache", |b| {
        b.to_async(&rt)
            .iter(|| async { cold.resolve(&s).await.unwrap() })
    });
    group.bench_function("baseline_insert_row", |b| {
        b.to_async(&rt).iter(|| async {
            sqlx::query("INSERT OR REPLACE INTO baseline (k, v) VALUES ('k', ?1)")
                .bind(vec![7u8; 200])
                .execute(&pool)
                .await
                .unwrap()
        })
    });
    group.bench_function("put", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.put(&s, Secret::from(SECRET)).await.unwrap() })
    });
    group.finish();
}

fn postgres(c: &mut Criterion) {
    let url = std::env::var("FORTRESS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("b_vault_{}", uuid::Uuid::new_v4().simple());
    let Ok(admin) = rt.block_on(sqlx::PgPool::connect(&url)) else {
        eprintln!("PostgreSQL unreachable at {url}; skipping the PostgreSQL benchmarks");
        return;
    };
    rt.block_on(sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin))
        .unwrap();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let store = rt.block_on(PgStore::connect_with(options)).unwrap();
    let pool = store.pool().clone();
    let store: Arc<dyn CredentialStore> = Arc::new(store);
    let cached = vault_over(store.clone(), true);
    let s = slot();
    rt.block_on(cached.put(&s, Secret::from(SECRET))).unwrap();
    rt.block_on(
        sqlx::raw_sql("CREATE TABLE baseline (k TEXT PRIMARY KEY, v BYTEA NOT NULL)")
            .execute(&pool),
    )
    .unwrap();

    let mut group = c.benchmark_group("vault/postgres");
    group.bench_function("baseline_select_row", |b| {
        b.to_async(&rt).iter(|| async {
            let row: (Vec<u8>,) = sqlx::query_as(
                "SELECT ciphertext FROM fortress_vault_credentials WHERE workspace = $1 AND connector = $2 AND user_slot = ''",
            )
            .bind("bench")
            .bind("anthropic")
            .fetch_one(&pool)
            .await
            .unwrap();
            row
        })
    });
    group.bench_function("resolve_cached_data_key", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.resolve(&s).await.unwrap() })
    });
    group.bench_function("baseline_upsert_row", |b| {
        b.to_async(&rt).iter(|| async {
            sqlx::query("INSERT INTO baseline (k, v) VALUES ('k', $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                .bind(vec![7u8; 200])
                .execute(&pool)
                .await
                .unwrap()
        })
    });
    group.bench_function("put", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.put(&s, Secret::from(SECRET)).await.unwrap() })
    });
    group.finish();
    drop(cached);
    rt.block_on(async {
        pool.close().await;
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&admin)
            .await;
    });
}

criterion_group!(benches, crypto, sqlite, postgres);
criterion_main!(benches);
