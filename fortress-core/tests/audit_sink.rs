//! The durable sink: concurrent group commit, explicit full-queue behaviour (back-pressure
//! or fail closed, never a silent drop), failures surfacing to callers, and a crash test
//! that SIGKILLs a real writer process mid-load and finds every acknowledged event.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::Poll;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fortress_core::audit::checkpoint::Checkpoint;
use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys};
use fortress_core::audit::query::{AuditPage, AuditQuery};
use fortress_core::audit::row::{EncodedEvent, StoredEvent};
use fortress_core::audit::store::{
    AppendReceipt, AuditStore, PurgeReport, SqliteAuditStore, StoreError,
};
use fortress_core::audit::verify::{VerifyOptions, verify_store};
use fortress_core::audit::{
    Acknowledge, AuditError, AuditEvent, AuditSink, DurableAuditSink, EventKind, SinkConfig,
    SubjectRef, WhenFull,
};
use fortress_core::subject::{SubjectKind, WorkspaceId};
use futures_util::poll;
use tokio::sync::{Notify, Semaphore};

fn event(i: u64) -> AuditEvent {
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: format!("s{}", i % 7),
            kind: SubjectKind::User,
        },
        "tools/call",
        "tool:zendesk/search",
    );
    e.request_id = format!("r-{i}");
    e
}

async fn sqlite(dir: &std::path::Path, key: Arc<Ed25519KeyProvider>) -> Arc<SqliteAuditStore> {
    Arc::new(
        SqliteAuditStore::open_in(dir)
            .await
            .unwrap()
            .with_signer(key),
    )
}

async fn all_request_ids(store: &dyn AuditStore) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 5_000).await.unwrap();
        let Some(last) = page.last() else { return out };
        after = last.seq;
        for row in page {
            out.insert(row.seq, row.columns.request_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_are_all_durable_chained_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519KeyProvider::generate());
    let trusted = TrustedKeys::new([key.verifying_key()]);
    let store = sqlite(dir.path(), key).await;
    let sink = Arc::new(DurableAuditSink::start(
        store.clone(),
        SinkConfig::default(),
    ));
    let mut tasks = Vec::new();
    for t in 0..50u64 {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..40u64 {
                seqs.push(sink.append(&event(t * 1000 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    // Each acknowledged sequence holds the event that was acknowledged with it.
    let ids = all_request_ids(store.as_ref()).await;
    assert_eq!(ids.len(), 2000);

    sink.flush().await.unwrap();
    let report = verify_store(store.as_ref(), &trusted, VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.events, 2000);
    // Group commit: far fewer checkpoints (one per commit at most) than events.
    assert!(report.checkpoints < 2000);

    sink.shutdown().await.unwrap();
    assert!(matches!(
        sink.record(event(1)).await,
        Err(AuditError::Closed)
    ));
}

/// A store whose appends wait for a permit, to hold the writer while the queue fills.
/// It notes the size of every batch it is handed.
struct Gated {
    inner: Arc<SqliteAuditStore>,
    entered: Notify,
    gate: Semaphore,
    batches: std::sync::Mutex<Vec<usize>>,
}

impl Gated {
    fn new(inner: Arc<SqliteAuditStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            entered: Notify::new(),
            gate: Semaphore::new(0),
            batches: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait]
impl AuditStore for Gated {
    async fn append(
        &self,
        events: Vec<EncodedEvent>,
        checkpoint: bool,
    ) -> Result<AppendReceipt, StoreError> {
        self.batches.lock().unwrap().push(events.len());
        self.entered.notify_one();
        let permit = self.gate.acquire().await;
        drop(permit);
        self.inner.append(events, checkpoint).await
    }
    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(after, limit).await
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints().await
    }
    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.query(query).await
    }
    async fn purge_before(
        &self,
        cutoff: DateTime<Utc>,
        actor: SubjectRef,
    ) -> Result<PurgeReport, StoreError> {
        self.inner.purge_before(cutoff, actor).await
    }
}

async fn full_queue(when_full: WhenFull) -> (Vec<Result<(), AuditError>>, HashMap<u64, String>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = sqlite(dir.path(), Arc::new(Ed25519KeyProvider::generate())).await;
    let gated = Gated::new(inner.clone());
    let config = SinkConfig {
        capacity: 2,
        max_batch: 1,
        when_full,
        ..SinkConfig::default()
    };
    let sink = DurableAuditSink::start(gated.clone(), config);
    let mut first = Box::pin(sink.record(event(1)));
    assert!(poll!(&mut first).is_pending());
    gated.entered.notified().await; // the writer holds event 1; the queue is empty
    let mut second = Box::pin(sink.record(event(2)));
    let mut third = Box::pin(sink.record(event(3)));
    assert!(poll!(&mut second).is_pending());
    assert!(poll!(&mut third).is_pending()); // the queue is now full
    let mut fourth = Box::pin(sink.record(event(4)));
    let fourth_now = poll!(&mut fourth);
    gated.gate.add_permits(100);
    let fourth = match fourth_now {
        Poll::Ready(result) => result,
        Poll::Pending => fourth.await,
    };
    let results = vec![first.await, second.await, third.await, fourth];
    sink.shutdown().await.unwrap();
    (results, all_request_ids(inner.as_ref()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_closed_when_configured() {
    let (results, stored) = full_queue(WhenFull::FailClosed).await;
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(matches!(results[3], Err(AuditError::QueueFull)));
    let mut ids: Vec<_> = stored.values().cloned().collect();
    ids.sort();
    assert_eq!(ids, ["r-1", "r-2", "r-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_applies_back_pressure_by_default() {
    let (results, stored) = full_queue(WhenFull::Backpressure).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(stored.len(), 4);
}

/// The hot path: a lone caller's event goes to the store at once, alone — the writer
/// never waits for a batch to fill — and callers arriving during a commit share the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_event_commits_at_once_and_latecomers_share_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let inner = sqlite(dir.path(), Arc::new(Ed25519KeyProvider::generate())).await;
    let gated = Gated::new(inner.clone());
    let sink = DurableAuditSink::start(gated.clone(), SinkConfig::default());
    let mut first = Box::pin(sink.record(event(1)));
    assert!(poll!(&mut first).is_pending());
    gated.entered.notified().await;
    assert_eq!(gated.batches(), [1], "the lone event was not committed alone");
    let mut later: Vec<_> = (2..=6).map(|i| Box::pin(sink.record(event(i)))).collect();
    for record in &mut later {
        assert!(poll!(record).is_pending()); // queued behind the commit under way
    }
    gated.gate.add_permits(100);
    first.await.unwrap();
    for record in later {
        record.await.unwrap();
    }
    assert_eq!(gated.batches(), [1, 5]);
    sink.shutdown().await.unwrap();
    assert_eq!(all_request_ids(inner.as_ref()).await.len(), 6);
}

/// `acknowledge = queued` is an explicit, weaker mode: `record` returns before the commit,
/// `flush` still waits for durability, and after a failed batch every record fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_acknowledgement_returns_before_the_commit_and_fails_closed_after_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let inner = sqlite(dir.path(), Arc::new(Ed25519KeyProvider::generate())).await;
    let gated = Gated::new(inner.clone());
    let queued = SinkConfig {
        acknowledge: Acknowledge::Queued,
        ..SinkConfig::default()
    };
    let sink = DurableAuditSink::start(gated.clone(), queued);
    sink.record(event(1)).await.unwrap(); // returns although the store is held shut
    gated.entered.notified().await;
    assert!(all_request_ids(inner.as_ref()).await.is_empty());
    let mut flush = Box::pin(sink.flush());
    assert!(poll!(&mut flush).is_pending());
    gated.gate.add_permits(100);
    flush.await.unwrap();
    assert_eq!(all_request_ids(inner.as_ref()).await.len(), 1);
    sink.shutdown().await.unwrap();

    // No signing key: every batch fails. The first record was already acknowledged, so
    // the loss reaches the flush and every later record.
    let dir = tempfile::tempdir().unwrap();
    let read_only = Arc::new(SqliteAuditStore::open_in(dir.path()).await.unwrap());
    let sink = DurableAuditSink::start(read_only, queued);
    sink.record(event(1)).await.unwrap();
    assert!(sink.flush().await.is_err());
    let err = sink.record(event(2)).await.unwrap_err();
    assert!(matches!(err, AuditError::Storage(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_reaches_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    // No signing key: the store refuses to append, and so the sink refuses to acknowledge.
    let store = Arc::new(SqliteAuditStore::open_in(dir.path()).await.unwrap());
    let sink = DurableAuditSink::start(store, SinkConfig::default());
    let err = sink.record(event(1)).await.unwrap_err();
    assert!(matches!(err, AuditError::Storage(_)), "{err:?}");
    assert!(sink.flush().await.is_err());
}

#[test]
fn acknowledged_events_survive_sigkill_of_the_writer_process() {
    sigkill_mid_load("power_loss");
}

/// `synchronous = NORMAL` skips the fsync at commit, but a commit is in the kernel's page
/// cache when it is acknowledged, so a crash of the process loses nothing acknowledged.
#[test]
fn acknowledged_events_survive_sigkill_with_process_crash_durability() {
    sigkill_mid_load("process_crash");
}

fn sigkill_mid_load(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("keys").join("audit.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-audit-writer"))
        .args([
            data.to_str().unwrap(),
            key_file.to_str().unwrap(),
            "100000000",
            "64",
            durability,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut acked: HashMap<u64, String> = HashMap::new();
    let parse = |line: &str| {
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("ack"), "{line}");
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        (seq, parts.next().unwrap().to_owned())
    };
    while acked.len() < 3_000 {
        let (seq, id) = parse(&lines.next().expect("writer ended early").unwrap());
        acked.insert(seq, id);
    }
    child.kill().unwrap(); // SIGKILL, mid-load
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Acknowledgements already in the pipe count too.
    for line in lines {
        let line = line.unwrap();
        if line.starts_with("ack ") {
            let (seq, id) = parse(&line);
            acked.insert(seq, id);
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = Arc::new(Ed25519KeyProvider::from_file(&key_file).unwrap());
        let trusted = TrustedKeys::new([key.verifying_key()]);
        let store = sqlite(&data, key).await;
        let stored = all_request_ids(store.as_ref()).await;
        for (seq, id) in &acked {
            assert_eq!(stored.get(seq), Some(id), "acknowledged event {seq} lost");
        }
        let lenient = VerifyOptions {
            allow_unsigned_tail: true,
        };
        let report = verify_store(store.as_ref(), &trusted, lenient)
            .await
            .unwrap();
        assert!(report.last_seq.unwrap() >= *acked.keys().max().unwrap());

        // Restarted, the writer continues the chain and signs the crashed tail.
        let sink = DurableAuditSink::start(store.clone(), SinkConfig::default());
        let seq = sink.append(&event(1)).await.unwrap();
        assert_eq!(seq, report.last_seq.unwrap() + 1);
        sink.shutdown().await.unwrap();
        let report = verify_store(store.as_ref(), &trusted, VerifyOptions::default())
            .await
            .unwrap();
        assert_eq!(report.unsigned_tail, 0);
        assert_eq!(report.last_seq, Some(seq));
    });
}
