//! The audit store suite, run against SQLite and PostgreSQL alike: append and chain,
//! filters and cursor pagination, database triggers, tamper detection on the real
//! database, retention purges that keep verification passing, and the CLI.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use fortress_core::audit::chain::CheckpointPolicy;
use fortress_core::audit::cli::AuditCommand;
use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys};
use fortress_core::audit::query::{AuditFilter, AuditQuery, Order};
use fortress_core::audit::retention::{purge_expired, system_actor};
use fortress_core::audit::row::EncodedEvent;
use fortress_core::audit::store::{AuditStore, PostgresAuditStore, SqliteAuditStore};
use fortress_core::audit::verify::{VerifyError, VerifyOptions, verify_store};
use fortress_core::audit::{AuditEvent, DecisionRecord, EventKind, Outcome, SubjectRef};
use fortress_core::decision::Effect;
use fortress_core::subject::{SubjectKind, WorkspaceId};
use fortress_core::tier::Tier;
use sqlx::postgres::PgConnectOptions;

const MANUAL: CheckpointPolicy = CheckpointPolicy {
    max_events: usize::MAX,
    max_interval: Duration::from_secs(1_000_000),
};

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// Event `i`: alice on even, bob on odd; tools/call (zendesk) when i % 3 != 0, else
/// messages/create (claude-x); denied when i % 5 == 0; one second apart.
fn event(i: u32) -> AuditEvent {
    let subject = if i % 2 == 0 { "alice" } else { "bob" };
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: subject.into(),
            kind: SubjectKind::User,
        },
        if i % 3 != 0 {
            "tools/call"
        } else {
            "messages/create"
        },
        format!("item:{i}"),
    );
    e.timestamp = base_time() + chrono::Duration::seconds(i64::from(i));
    e.request_id = format!("req-{i}");
    if i % 3 != 0 {
        e.connector = Some("zendesk".into());
    } else {
        e.model = Some("claude-x".into());
    }
    let denied = i % 5 == 0;
    e.outcome = if denied {
        Outcome::Denied
    } else {
        Outcome::Success
    };
    e.decision = Some(DecisionRecord {
        effect: if denied { Effect::Deny } else { Effect::Allow },
        reasons: vec![],
        policy_ids: vec![],
        policy_version: "v1".into(),
    });
    e
}

fn encoded(range: std::ops::RangeInclusive<u32>) -> Vec<EncodedEvent> {
    range
        .map(|i| EncodedEvent::new(&event(i)).unwrap())
        .collect()
}

/// Raw access to the database behind a store, to play the attacker.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool, String),
}

impl Raw {
    async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Raw::Pg(pool, _) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    async fn disable_triggers(&self) {
        match self {
            Raw::Sqlite(pool) => {
                for t in [
                    "audit_events_no_update",
                    "audit_events_delete_only_in_purge",
                    "audit_checkpoints_no_update",
                    "audit_checkpoints_delete_only_in_purge",
                ] {
                    sqlx::query(&format!("DROP TRIGGER {t}"))
                        .execute(pool)
                        .await
                        .unwrap();
                }
            }
            Raw::Pg(pool, _) => {
                for t in ["audit_events", "audit_checkpoints"] {
                    sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER USER"))
                        .execute(pool)
                        .await
                        .unwrap();
                }
            }
        }
    }

    async fn cleanup(&self) {
        if let Raw::Pg(pool, schema) = self {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

struct Fixture {
    store: Arc<dyn AuditStore>,
    raw: Raw,
    trusted: TrustedKeys,
    key: Arc<Ed25519KeyProvider>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// A second writer on the same database, with its own connections and chain cache (as
    /// another process or replica would have), signing with the same key.
    async fn second_writer(&self) -> Arc<dyn AuditStore> {
        match &self.raw {
            Raw::Sqlite(_) => {
                let dir = self._dir.as_ref().unwrap().path();
                Arc::new(
                    SqliteAuditStore::open_in(dir)
                        .await
                        .unwrap()
                        .with_signer(self.key.clone())
                        .with_checkpoint_policy(MANUAL),
                )
            }
            Raw::Pg(_, schema) => {
                let options = PgConnectOptions::from_str(&postgres_url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                Arc::new(
                    PostgresAuditStore::connect_with(options)
                        .await
                        .unwrap()
                        .with_signer(self.key.clone())
                        .with_checkpoint_policy(MANUAL),
                )
            }
        }
    }
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519KeyProvider::generate());
    let trusted = TrustedKeys::new([key.verifying_key()]);
    let store = SqliteAuditStore::open_in(dir.path())
        .await
        .unwrap()
        .with_signer(key.clone())
        .with_checkpoint_policy(MANUAL);
    let raw = Raw::Sqlite(store.pool().clone());
    Fixture {
        store: Arc::new(store),
        raw,
        trusted,
        key,
        _dir: Some(dir),
    }
}

fn postgres_url() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg_fixture() -> Fixture {
    let schema = format!("t_audit_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&postgres_url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let key = Arc::new(Ed25519KeyProvider::generate());
    let trusted = TrustedKeys::new([key.verifying_key()]);
    let store = PostgresAuditStore::connect_with(options)
        .await
        .unwrap()
        .with_signer(key.clone())
        .with_checkpoint_policy(MANUAL);
    let raw = Raw::Pg(store.pool().clone(), schema.clone());
    admin.close().await;
    Fixture {
        store: Arc::new(store),
        raw,
        trusted,
        key,
        _dir: None,
    }
}

async fn verify(f: &Fixture) -> Result<fortress_core::audit::VerifyReport, VerifyError> {
    verify_store(f.store.as_ref(), &f.trusted, VerifyOptions::default()).await
}

fn tampered_at(result: Result<fortress_core::audit::VerifyReport, VerifyError>) -> u64 {
    match result {
        Err(VerifyError::Tampered(t)) => t.seq,
        other => panic!("expected tampering to be detected, got {other:?}"),
    }
}

async fn collect_pages(store: &dyn AuditStore, mut query: AuditQuery) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let page = store.query(&query).await.unwrap();
        assert!(page.events.len() <= query.effective_limit() as usize);
        seqs.extend(page.events.iter().map(|e| e.seq));
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => return seqs,
        }
    }
}

async fn append_query_and_paginate(f: Fixture) {
    let r = f.store.append(encoded(1..=10), false).await.unwrap();
    assert_eq!(r.seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(r.checkpoint, None);
    f.store.append(encoded(11..=30), true).await.unwrap();
    let report = verify(&f).await.unwrap();
    assert_eq!((report.events, report.checkpoints), (30, 1));

    let all = collect_pages(f.store.as_ref(), AuditQuery::newest_first(7)).await;
    assert_eq!(all, (1..=30).rev().collect::<Vec<_>>());
    let oldest = collect_pages(f.store.as_ref(), AuditQuery::oldest_first(4)).await;
    assert_eq!(oldest, (1..=30).collect::<Vec<_>>());

    let count = |filter: AuditFilter| {
        let store = f.store.clone();
        async move {
            collect_pages(
                store.as_ref(),
                AuditQuery::newest_first(3).with_filter(filter),
            )
            .await
        }
    };
    let alice = count(AuditFilter {
        subject: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alice.len(), 15);
    let bob_messages = count(AuditFilter {
        subject: Some("bob".into()),
        action: Some("messages/create".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(bob_messages, vec![27, 21, 15, 9, 3]);
    let zendesk = count(AuditFilter {
        connector: Some("zendesk".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(zendesk.len(), 20);
    let model = count(AuditFilter {
        model: Some("claude-x".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(model.len(), 10);
    let denied = count(AuditFilter {
        decision: Some(Effect::Deny),
        ..Default::default()
    })
    .await;
    assert_eq!(denied, vec![30, 25, 20, 15, 10, 5]);
    let outcome = count(AuditFilter {
        outcome: Some(Outcome::Denied),
        ..Default::default()
    })
    .await;
    assert_eq!(outcome, denied);
    let window = count(AuditFilter {
        from: Some(base_time() + chrono::Duration::seconds(6)),
        until: Some(base_time() + chrono::Duration::seconds(11)),
        ..Default::default()
    })
    .await;
    assert_eq!(window, vec![10, 9, 8, 7, 6]);
    let none = count(AuditFilter {
        workspace: Some("other".into()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());

    let page = f
        .store
        .query(&AuditQuery {
            filter: AuditFilter::default(),
            order: Order::NewestFirst,
            limit: 2,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.events[0].event().unwrap(), event(30));
    f.raw.cleanup().await;
}

async fn triggers_refuse_update_and_delete(f: Fixture) {
    f.store.append(encoded(1..=5), true).await.unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'x' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET key_id = 'x'",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = f.raw.exec(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    if let Raw::Pg(..) = f.raw {
        let err = f.raw.exec("TRUNCATE audit_events").await.unwrap_err();
        assert!(err.to_string().contains("append-only"));
    }
    assert_eq!(verify(&f).await.unwrap().events, 5);
    f.raw.cleanup().await;
}

async fn tampering_in_the_database_is_named(f: Fixture) {
    f.store.append(encoded(1..=10), true).await.unwrap();
    f.raw.disable_triggers().await;
    // An edited body.
    f.raw
        .exec("UPDATE audit_events SET body = replace(body, 'item:5', 'item:6') WHERE seq = 5")
        .await
        .unwrap();
    assert_eq!(tampered_at(verify(&f).await), 5);
    f.raw
        .exec("UPDATE audit_events SET body = replace(body, 'item:6', 'item:5') WHERE seq = 5")
        .await
        .unwrap();
    verify(&f).await.unwrap();
    // An edited index column (hiding an event from a subject filter).
    f.raw
        .exec("UPDATE audit_events SET subject_id = 'carol' WHERE seq = 7")
        .await
        .unwrap();
    assert_eq!(tampered_at(verify(&f).await), 7);
    f.raw
        .exec("UPDATE audit_events SET subject_id = 'bob' WHERE seq = 7")
        .await
        .unwrap();
    // A deleted event.
    f.raw
        .exec("DELETE FROM audit_events WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(tampered_at(verify(&f).await), 3);
    f.raw.cleanup().await;
}

async fn prefix_deleted_on_a_checkpoint_without_purge_is_detected(f: Fixture) {
    f.store.append(encoded(1..=4), true).await.unwrap();
    f.store.append(encoded(5..=8), true).await.unwrap();
    f.raw.disable_triggers().await;
    f.raw
        .exec("DELETE FROM audit_events WHERE seq <= 4")
        .await
        .unwrap();
    assert_eq!(tampered_at(verify(&f).await), 1);
    f.raw.cleanup().await;
}

/// Waits for the wall clock to pass `t` (clock granularity, not synchronization).
fn after(t: DateTime<Utc>) -> DateTime<Utc> {
    loop {
        let now = Utc::now();
        if now.timestamp_micros() > t.timestamp_micros() {
            return now;
        }
        std::hint::spin_loop();
    }
}

async fn retention_purge_keeps_verification_passing(f: Fixture) {
    f.store.append(encoded(1..=6), false).await.unwrap();
    f.store.append(encoded(7..=10), true).await.unwrap();
    // Every event so far was recorded strictly before the cutoff, every later one at or after it.
    let cutoff = after(Utc::now());
    f.store.append(encoded(11..=15), true).await.unwrap();
    f.store.append(encoded(16..=18), false).await.unwrap();

    let report = f.store.purge_before(cutoff, system_actor()).await.unwrap();
    assert_eq!(report.deleted_events, 10);
    assert_eq!(report.anchor, Some(10));
    assert_eq!(report.record_seq, Some(19));
    let verified = verify(&f).await.unwrap();
    assert_eq!(verified.first_seq, Some(11));
    assert_eq!(verified.anchor, Some(10));
    assert_eq!(verified.last_seq, Some(19));
    let purge_event = f.store.events_after(18, 1).await.unwrap()[0]
        .event()
        .unwrap();
    assert_eq!(purge_event.action, "audit.retention_purge");
    assert_eq!(purge_event.detail["through_seq"], 10);

    // Nothing outside a purge may delete, even now.
    assert!(
        f.raw
            .exec("DELETE FROM audit_events WHERE seq = 11")
            .await
            .is_err()
    );

    // Appending after a purge chains on, and a tier purge far in the future takes all
    // but the record of the last purge.
    f.store.append(encoded(20..=21), true).await.unwrap();
    verify(&f).await.unwrap();
    let later =
        Utc::now() + chrono::Duration::days(i64::from(Tier::Soho.audit_retention_days()) + 1);
    let report = purge_expired(f.store.as_ref(), Tier::Soho, later, system_actor())
        .await
        .unwrap();
    assert_eq!(report.anchor, Some(21));
    let verified = verify(&f).await.unwrap();
    assert_eq!((verified.first_seq, verified.events), (Some(22), 1));

    // Deleting the remaining record as well (bypassing the triggers) is detected.
    f.raw.disable_triggers().await;
    f.raw
        .exec("DELETE FROM audit_events WHERE seq = 22")
        .await
        .unwrap();
    assert!(verify(&f).await.is_err());
    f.raw.cleanup().await;
}

async fn unsigned_tail_is_reported(f: Fixture) {
    f.store.append(encoded(1..=3), true).await.unwrap();
    f.store.append(encoded(4..=5), false).await.unwrap();
    assert_eq!(tampered_at(verify(&f).await), 4);
    let lenient = verify_store(
        f.store.as_ref(),
        &f.trusted,
        VerifyOptions {
            allow_unsigned_tail: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(lenient.unsigned_tail, 2);
    // A store restarted on the same database picks the chain up and signs the tail.
    f.store.append(Vec::new(), true).await.unwrap();
    assert_eq!(verify(&f).await.unwrap().unsigned_tail, 0);
    // A verifier that trusts another key rejects every checkpoint.
    let other = TrustedKeys::new([Ed25519KeyProvider::generate().verifying_key()]);
    assert!(
        verify_store(f.store.as_ref(), &other, VerifyOptions::default())
            .await
            .is_err()
    );
    f.raw.cleanup().await;
}

macro_rules! both_backends {
    ($($suite:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $suite() {
                    super::$suite(super::sqlite_fixture().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $suite() {
                    super::$suite(super::pg_fixture().await).await;
                }
            )*
        }
    };
}

async fn kind_filter_separates_admin_changes_from_traffic(f: Fixture) {
    let mut batch = encoded(1..=4);
    for i in 0..3 {
        let mut change = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("acme"),
            SubjectRef {
                id: "ops".into(),
                kind: SubjectKind::User,
            },
            "kill_switch.engage",
            format!("model:m{i}"),
        );
        // A nested `kind` (the subject's) must not be mistaken for the event's.
        change.detail.insert("kind".into(), "access".into());
        batch.push(EncodedEvent::new(&change).unwrap());
    }
    f.store.append(batch, false).await.unwrap();
    let admin = collect_pages(
        f.store.as_ref(),
        AuditQuery::newest_first(2).with_filter(AuditFilter {
            kind: Some(EventKind::Admin),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(admin, vec![7, 6, 5]);
    let access = collect_pages(
        f.store.as_ref(),
        AuditQuery::newest_first(10).with_filter(AuditFilter {
            kind: Some(EventKind::Access),
            subject: Some("alice".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(access, vec![4, 2]);
    let system = collect_pages(
        f.store.as_ref(),
        AuditQuery::newest_first(10).with_filter(AuditFilter {
            kind: Some(EventKind::System),
            ..Default::default()
        }),
    )
    .await;
    assert!(system.is_empty());
}

/// A store made before the kind column gets the column and its index when opened, and
/// the kind filter is answered from that index.
async fn kind_column_is_indexed_and_added_to_old_stores(f: Fixture) {
    let mut batch = encoded(1..=6);
    for i in 0..2 {
        let change = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("acme"),
            SubjectRef {
                id: "ops".into(),
                kind: SubjectKind::User,
            },
            "connector.add",
            format!("connector:c{i}"),
        );
        batch.push(EncodedEvent::new(&change).unwrap());
    }
    f.store.append(batch, true).await.unwrap();
    // Play an old store: no kind column, no index.
    f.raw.exec("DROP INDEX audit_events_kind").await.unwrap();
    f.raw
        .exec("ALTER TABLE audit_events DROP COLUMN kind")
        .await
        .unwrap();
    let reopened: Arc<dyn AuditStore> = match &f.raw {
        Raw::Sqlite(_) => {
            let dir = f._dir.as_ref().unwrap().path();
            Arc::new(SqliteAuditStore::open_in(dir).await.unwrap())
        }
        Raw::Pg(_, schema) => {
            let options = PgConnectOptions::from_str(&postgres_url())
                .unwrap()
                .options([("search_path", schema.as_str())]);
            Arc::new(PostgresAuditStore::connect_with(options).await.unwrap())
        }
    };
    let admin = collect_pages(
        reopened.as_ref(),
        AuditQuery::newest_first(10).with_filter(AuditFilter {
            kind: Some(EventKind::Admin),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(admin, vec![8, 7]);
    // Migrating changed no event: the chain still verifies.
    verify(&f).await.unwrap();
    let select = "SELECT seq FROM audit_events WHERE kind = 'admin' ORDER BY seq DESC LIMIT 11";
    let plan = match &f.raw {
        Raw::Sqlite(pool) => {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {select}"))
                .fetch_all(pool)
                .await
                .unwrap();
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, 3))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Raw::Pg(pool, _) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("ANALYZE audit_events")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Tiny tables are scanned whatever the indexes; ask what it would use.
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            let rows = sqlx::query(&format!("EXPLAIN {select}"))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, 0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    assert!(plan.contains("audit_events_kind"), "{plan}");
    f.raw.cleanup().await;
}

/// Two writers on one database (two processes on one SQLite file, two replicas on one
/// PostgreSQL schema), interleaving appends and checkpoints: each must notice the other's
/// writes — a moved head, or a checkpoint signed over the same head — and never fork the
/// chain or sign a checkpoint overlapping another.
async fn two_writers_never_fork_the_chain(f: Fixture) {
    let a = f.store.clone();
    let b = f.second_writer().await;
    assert_eq!(
        a.append(encoded(1..=3), false).await.unwrap().seqs,
        [1, 2, 3]
    );
    assert_eq!(b.append(encoded(4..=5), false).await.unwrap().seqs, [4, 5]);
    assert_eq!(a.append(encoded(6..=6), false).await.unwrap().seqs, [6]);
    // b signs over everything so far while a's cache still ends at the same head.
    let cp = b
        .append(Vec::new(), true)
        .await
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!((cp.first_seq, cp.last_seq), (1, 6));
    let cp = a
        .append(encoded(7..=8), true)
        .await
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!((cp.first_seq, cp.last_seq), (7, 8));
    // And a flush by b with nothing new since a's checkpoint signs nothing twice.
    assert!(
        b.append(Vec::new(), true)
            .await
            .unwrap()
            .checkpoint
            .is_none()
    );
    assert_eq!(b.append(encoded(9..=9), true).await.unwrap().seqs, [9]);
    let report = verify(&f).await.unwrap();
    assert_eq!((report.events, report.checkpoints), (9, 3));
    f.raw.cleanup().await;
}

both_backends!(
    two_writers_never_fork_the_chain,
    kind_column_is_indexed_and_added_to_old_stores,
    kind_filter_separates_admin_changes_from_traffic,
    append_query_and_paginate,
    triggers_refuse_update_and_delete,
    tampering_in_the_database_is_named,
    prefix_deleted_on_a_checkpoint_without_purge_is_detected,
    retention_purge_keeps_verification_passing,
    unsigned_tail_is_reported,
);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    audit: AuditCommand,
}

async fn run_cli(args: &[&str]) -> (Result<(), fortress_core::audit::cli::CliError>, String) {
    let cli = Cli::try_parse_from(std::iter::once("fortress").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let result = cli.audit.run(&mut out).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verifies_queries_exports_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_path = fortress_core::audit::keys::default_key_path(&data);
    let key = Arc::new(Ed25519KeyProvider::load_or_create(&key_path).unwrap());
    {
        let store = SqliteAuditStore::open_in(&data)
            .await
            .unwrap()
            .with_signer(key);
        store.append(encoded(1..=12), true).await.unwrap();
    }
    let data_arg = data.to_str().unwrap();

    let (r, out) = run_cli(&["--data-dir", data_arg, "verify"]).await;
    r.unwrap();
    assert!(out.contains("12 events"), "{out}");

    let (r, out) = run_cli(&[
        "--data-dir",
        data_arg,
        "query",
        "--subject",
        "alice",
        "--limit",
        "4",
    ])
    .await;
    r.unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["seq"], 12);
    assert_eq!(lines[4]["next_cursor"], "s6");
    let (r, out) = run_cli(&[
        "--data-dir",
        data_arg,
        "query",
        "--subject",
        "alice",
        "--cursor",
        "s6",
    ])
    .await;
    r.unwrap();
    assert_eq!(out.lines().count(), 3);

    let csv = dir.path().join("out.csv");
    let (r, out) = run_cli(&[
        "--data-dir",
        data_arg,
        "export",
        "--format",
        "csv",
        "--output",
        csv.to_str().unwrap(),
        "--actor",
        "dpo",
    ])
    .await;
    r.unwrap();
    // The export's own record is committed first, so it is part of the export.
    assert!(out.contains("exported 13 events"), "{out}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 14);
    assert!(text.lines().last().unwrap().contains("audit.export"));
    assert!(text.starts_with("seq,recorded_at,timestamp"));
    // The export was audited (and checkpointed: strict verification passes).
    let (r, out) = run_cli(&["--data-dir", data_arg, "verify"]).await;
    r.unwrap();
    assert!(out.contains("13 events"), "{out}");
    let (r, out) = run_cli(&["--data-dir", data_arg, "query", "--action", "audit.export"]).await;
    r.unwrap();
    assert!(out.contains("\"dpo\""), "{out}");

    let (r, out) = run_cli(&[
        "--data-dir",
        data_arg,
        "purge",
        "--before",
        "2999-01-01T00:00:00Z",
    ])
    .await;
    r.unwrap();
    assert!(out.contains("purged 13 events"), "{out}");
    let (r, _) = run_cli(&["--data-dir", data_arg, "verify"]).await;
    r.unwrap();

    // Tampering makes verify fail and name the sequence.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join("audit.sqlite3").display()
    ))
    .await
    .unwrap();
    sqlx::query("DROP TRIGGER audit_events_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET body = replace(body, 'audit:trail', 'audit:trial')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (r, _) = run_cli(&["--data-dir", data_arg, "verify"]).await;
    let message = r.unwrap_err().to_string();
    assert!(message.contains("sequence 14"), "{message}");
}
