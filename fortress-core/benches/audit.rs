//! Audit throughput and latency: durable events per second through the group-committing
//! sink on SQLite (with p50/p99 append latency), against two baselines measured in the
//! same run — one SQLite transaction per event (plain insert, same durability), and the
//! JSON Lines sink (one fsync per event). A fourth figure times the store alone (one
//! pre-encoded batch of 256 per transaction) to separate storage from queueing costs.
//!
//! Run: `cargo bench -p fortress-core --bench audit -- --warm-up-time 1 --measurement-time 3`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::row::EncodedEvent;
use fortress_core::audit::store::{AuditStore, SqliteAuditStore};
use fortress_core::audit::{
    AuditEvent, AuditSink, DurableAuditSink, EventKind, JsonLinesAuditSink, SinkConfig, SubjectRef,
};
use fortress_core::subject::{SubjectKind, WorkspaceId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

const CONCURRENCY: usize = 256;
const GROUP_EVENTS: usize = 20_000;
const BASELINE_EVENTS: usize = 200;

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: format!("user-{}", i % 100),
            kind: SubjectKind::User,
        },
        "tools/call",
        "tool:zendesk/search_tickets",
    );
    e.connector = Some("zendesk".into());
    e.latency_us = 1234;
    e.duration_us = 5678;
    e.arguments_digest = Some(format!("hmac-sha256:{i:064x}"));
    e
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Directory on the real disk (fsync must cost what it costs): `FORTRESS_BENCH_DIR` or `/var/tmp`.
fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var("FORTRESS_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    tempfile::tempdir_in(base).expect("bench dir")
}

/// Runs `events` records from `CONCURRENCY` tasks; returns the elapsed time and each latency.
async fn load(sink: Arc<dyn AuditSink>, events: usize) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = t;
            while i < events {
                let began = Instant::now();
                sink.record(event(i)).await.expect("record");
                latencies.push(began.elapsed());
                i += CONCURRENCY;
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    (start.elapsed(), latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(name: &str, total: Duration, events: usize, latencies: &mut [Duration]) -> f64 {
    latencies.sort_unstable();
    let rate = events as f64 / total.as_secs_f64();
    println!(
        "{name}: {rate:.0} durable events/s; append latency p50 {:?}, p99 {:?} ({} samples)",
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.len()
    );
    rate
}

fn audit(c: &mut Criterion) {
    let rt = runtime();
    let dir = bench_dir();
    let store = rt.block_on(async {
        SqliteAuditStore::open_in(&dir.path().join("chained"))
            .await
            .expect("store")
            .with_signer(Arc::new(Ed25519KeyProvider::generate()))
    });
    let sink: Arc<dyn AuditSink> = {
        let _guard = rt.enter();
        Arc::new(DurableAuditSink::start(
            Arc::new(store),
            SinkConfig::default(),
        ))
    };
    let jsonl: Arc<dyn AuditSink> = rt.block_on(async {
        Arc::new(
            JsonLinesAuditSink::open(dir.path().join("audit.jsonl"))
                .await
                .expect("jsonl"),
        )
    });
    let plain = rt.block_on(async {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("plain.sqlite3"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("plain");
        sqlx::query("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("schema");
        pool
    });

    let group_latencies = Arc::new(Mutex::new(Vec::new()));
    let group_time = Arc::new(Mutex::new((Duration::ZERO, 0usize)));
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);

    group.throughput(Throughput::Elements(GROUP_EVENTS as u64));
    group.bench_function("sqlite_group_commit_sink", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, latencies) = rt.block_on(load(sink.clone(), GROUP_EVENTS));
                total += elapsed;
                group_latencies.lock().expect("lock").extend(latencies);
                let mut t = group_time.lock().expect("lock");
                t.0 += elapsed;
                t.1 += GROUP_EVENTS;
            }
            total
        })
    });

    let baseline_latencies = Arc::new(Mutex::new(Vec::new()));
    let baseline_time = Arc::new(Mutex::new((Duration::ZERO, 0usize)));
    group.throughput(Throughput::Elements(BASELINE_EVENTS as u64));
    group.bench_function("sqlite_one_transaction_per_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pool = plain.clone();
                let (elapsed, latencies) = rt.block_on(async move {
                    let start = Instant::now();
                    let mut latencies = Vec::new();
                    for i in 0..BASELINE_EVENTS {
                        let body = EncodedEvent::new(&event(i)).expect("encode").body;
                        let began = Instant::now();
                        sqlx::query("INSERT INTO events (body) VALUES (?)")
                            .bind(body)
                            .execute(&pool)
                            .await
                            .expect("insert");
                        latencies.push(began.elapsed());
                    }
                    (start.elapsed(), latencies)
                });
                total += elapsed;
                baseline_latencies.lock().expect("lock").extend(latencies);
                let mut t = baseline_time.lock().expect("lock");
                t.0 += elapsed;
                t.1 += BASELINE_EVENTS;
            }
            total
        })
    });

    let jsonl_latencies = Arc::new(Mutex::new(Vec::new()));
    let jsonl_time = Arc::new(Mutex::new((Duration::ZERO, 0usize)));
    group.bench_function("jsonl_sink_fsync_per_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, latencies) = rt.block_on(load(jsonl.clone(), BASELINE_EVENTS));
                total += elapsed;
                jsonl_latencies.lock().expect("lock").extend(latencies);
                let mut t = jsonl_time.lock().expect("lock");
                t.0 += elapsed;
                t.1 += BASELINE_EVENTS;
            }
            total
        })
    });
    // The store alone: one pre-encoded batch of 256 per transaction, no queue, no tasks.
    let direct = rt.block_on(async {
        SqliteAuditStore::open_in(&dir.path().join("direct"))
            .await
            .expect("store")
            .with_signer(Arc::new(Ed25519KeyProvider::generate()))
    });
    let batch: Vec<EncodedEvent> = (0..CONCURRENCY)
        .map(|i| EncodedEvent::new(&event(i)).expect("encode"))
        .collect();
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("sqlite_store_append_batch_256", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(direct.append(batch.clone(), false))
                    .expect("append");
            }
            start.elapsed()
        })
    });
    group.finish();

    let (gt, gn) = *group_time.lock().expect("lock");
    let group_rate = report(
        "sqlite_group_commit_sink",
        gt,
        gn,
        &mut group_latencies.lock().expect("lock"),
    );
    let (bt, bn) = *baseline_time.lock().expect("lock");
    let baseline_rate = report(
        "sqlite_one_transaction_per_event",
        bt,
        bn,
        &mut baseline_latencies.lock().expect("lock"),
    );
    let (jt, jn) = *jsonl_time.lock().expect("lock");
    let jsonl_rate = report(
        "jsonl_sink_fsync_per_event",
        jt,
        jn,
        &mut jsonl_latencies.lock().expect("lock"),
    );
    println!(
        "ratio: group commit = {:.1}x one-transaction-per-event, {:.1}x JSON Lines sink",
        group_rate / baseline_rate,
        group_rate / jsonl_rate
    );
}

mod group {
    // The macro generates an undocumented `pub fn`.
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::audit);
}
criterion_main!(group::benches);
