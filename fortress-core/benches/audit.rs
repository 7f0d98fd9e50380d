//! Audit throughput and latency: durable events per second through the group-committing
//! sink on SQLite (with p50/p99 append latency), with each durability setting
//! (`power_loss`: fsync per commit; `process_crash`: no fsync at commit) and with 256 and
//! 1,024 concurrent callers, against two baselines measured in the same run — one SQLite
//! transaction per event (plain insert, `synchronous = FULL`), and the JSON Lines sink (one
//! fsync per event). A last figure times the store alone (one pre-encoded batch of 256 per
//! transaction) to separate storage from queueing costs.
//!
//! Run: `cargo bench -p fortress-core --bench audit -- --warm-up-time 1 --measurement-time 3`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::row::EncodedEvent;
use fortress_core::audit::store::{AuditStore, SqliteAuditStore, SqliteDurability};
use fortress_core::audit::{
    AuditEvent, AuditSink, DurableAuditSink, EventKind, JsonLinesAuditSink, SinkConfig, SubjectRef,
};
use fortress_core::subject::{SubjectKind, WorkspaceId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

const CONCURRENCY: usize = 256;
const HIGH_CONCURRENCY: usize = 1024;
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
async fn load(
    sink: Arc<dyn AuditSink>,
    events: usize,
    concurrency: usize,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = t;
            while i < events {
                let began = Instant::now();
                sink.record(event(i)).await.expect("record");
                latencies.push(began.elapsed());
                i += concurrency;
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

/// Latencies and (elapsed, events) of every iteration of one benchmark.
#[derive(Default)]
struct Tally {
    latencies: Mutex<Vec<Duration>>,
    time: Mutex<(Duration, usize)>,
}

impl Tally {
    fn add(&self, elapsed: Duration, events: usize, latencies: Vec<Duration>) {
        self.latencies.lock().expect("lock").extend(latencies);
        let mut t = self.time.lock().expect("lock");
        t.0 += elapsed;
        t.1 += events;
    }

    fn report(&self, name: &str) -> f64 {
        let (time, events) = *self.time.lock().expect("lock");
        report(
            name,
            time,
            events,
            &mut self.latencies.lock().expect("lock"),
        )
    }
}

fn audit(c: &mut Criterion) {
    let rt = runtime();
    let dir = bench_dir();
    let sink_with = |name: &str, durability: SqliteDurability| -> Arc<dyn AuditSink> {
        let store = rt.block_on(async {
            SqliteAuditStore::open_in_with(&dir.path().join(name), durability)
                .await
                .expect("store")
                .with_signer(Arc::new(Ed25519KeyProvider::generate()))
        });
        let _guard = rt.enter();
        Arc::new(DurableAuditSink::start(
            Arc::new(store),
            SinkConfig::default(),
        ))
    };
    let group_commit = [
        (
            "sqlite_group_commit_sink/power_loss/256",
            sink_with("full-256", SqliteDurability::PowerLoss),
            CONCURRENCY,
            Tally::default(),
        ),
        (
            "sqlite_group_commit_sink/power_loss/1024",
            sink_with("full-1024", SqliteDurability::PowerLoss),
            HIGH_CONCURRENCY,
            Tally::default(),
        ),
        (
            "sqlite_group_commit_sink/process_crash/256",
            sink_with("normal-256", SqliteDurability::ProcessCrash),
            CONCURRENCY,
            Tally::default(),
        ),
    ];
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

    let mut group = c.benchmark_group("audit");
    group.sample_size(10);

    group.throughput(Throughput::Elements(GROUP_EVENTS as u64));
    for (name, sink, concurrency, tally) in &group_commit {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (elapsed, latencies) =
                        rt.block_on(load(sink.clone(), GROUP_EVENTS, *concurrency));
                    total += elapsed;
                    tally.add(elapsed, GROUP_EVENTS, latencies);
                }
                total
            })
        });
    }

    let baseline = Tally::default();
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
                baseline.add(elapsed, BASELINE_EVENTS, latencies);
            }
            total
        })
    });

    let jsonl_tally = Tally::default();
    group.bench_function("jsonl_sink_fsync_per_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, latencies) =
                    rt.block_on(load(jsonl.clone(), BASELINE_EVENTS, CONCURRENCY));
                total += elapsed;
                jsonl_tally.add(elapsed, BASELINE_EVENTS, latencies);
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

    let rates: Vec<(&str, f64)> = group_commit
        .iter()
        .map(|(name, _, _, tally)| (*name, tally.report(name)))
        .collect();
    let baseline_rate = baseline.report("sqlite_one_transaction_per_event");
    let jsonl_rate = jsonl_tally.report("jsonl_sink_fsync_per_event");
    for (name, rate) in rates {
        println!(
            "ratio: {name} = {:.1}x one-transaction-per-event, {:.1}x JSON Lines sink",
            rate / baseline_rate,
            rate / jsonl_rate
        );
    }
}

mod group {
    // The macro generates an undocumented `pub fn`.
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::audit);
}
criterion_main!(group::benches);
