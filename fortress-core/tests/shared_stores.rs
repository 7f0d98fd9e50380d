//! The durable stores replicas share, run against both backends: the embedded SQLite and
//! the PostgreSQL on 127.0.0.1:5432 (each test in its own schema). Also the Redis change
//! bus and its polling fallback.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fortress_core::admin::accounts::AccountStore;
use fortress_core::admin::rbac::Role;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::call::{Action, Call, Resource};
use fortress_core::cluster::switches::SharedSwitches;
use fortress_core::cluster::{Change, ClusterBus, follow};
use fortress_core::db::Database;
use fortress_core::guard::{Guard, KillSwitch, KillTarget, Verdict};
use fortress_core::keys::{AuthError, KeyFormat, KeyStore, NewKey};
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, WorkspaceId};
use sqlx::postgres::PgConnectOptions;

fn postgres_url() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("FORTRESS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh PostgreSQL schema (dropped when the guard goes) and a database handle on it.
struct PgSchema {
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, on a thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

async fn postgres() -> (Database, PgSchema) {
    let name = format!("t_shared_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let options = PgConnectOptions::from_str(&postgres_url())
        .unwrap()
        .options([("search_path", name.as_str())]);
    (
        Database::postgres(options).await.unwrap(),
        PgSchema { name },
    )
}

/// Runs `body` on a SQLite database, then on a PostgreSQL one.
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let db = Database::sqlite_file(&dir.path().join("shared.sqlite3"))
                    .await
                    .unwrap();
                ($body)(db).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (db, _schema) = super::postgres().await;
                ($body)(db).await;
            }
        }
    };
}

fn token(issued: &fortress_core::keys::IssuedKey) -> String {
    issued.token.expose_str().unwrap().to_owned()
}

on_both!(
    keys_issue_authenticate_revoke_rotate,
    |db: Database| async move {
        let store = KeyStore::with_database(db.clone(), KeyFormat::MCP, Secret::from("pepper"))
            .await
            .unwrap()
            .with_cache_ttl(Duration::ZERO);
        let mut new = NewKey::user("acme", "alice");
        new.groups = vec!["support".into()];
        new.cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        let issued = store.create(new).await.unwrap();
        let record = store
            .authenticate(&token(&issued), Some("10.1.1.1".parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(record.groups, ["support"]);
        assert_eq!(
            store
                .authenticate(&token(&issued), Some("192.168.0.1".parse().unwrap()))
                .await,
            Err(AuthError::Network)
        );

        // A second replica on the same database sees the key, and its revocation.
        let other = KeyStore::with_database(db, KeyFormat::MCP, Secret::from("pepper"))
            .await
            .unwrap()
            .with_cache_ttl(Duration::ZERO);
        let plain = store.create(NewKey::user("acme", "bob")).await.unwrap();
        assert!(other.authenticate(&token(&plain), None).await.is_ok());
        store.revoke(&plain.record.id).await.unwrap();
        assert_eq!(
            other.authenticate(&token(&plain), None).await,
            Err(AuthError::Revoked)
        );

        let rotated = store
            .rotate(&issued.record.id, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            other
                .authenticate(&token(&issued), Some("10.1.1.1".parse().unwrap()))
                .await,
            Err(AuthError::Expired)
        );
        let listed = other.list(Some("acme")).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().any(|k| k.id == rotated.record.id));
        assert!(matches!(
            store.revoke("nope").await,
            Err(fortress_core::keys::KeyStoreError::NotFound(_))
        ));
    }
);

on_both!(accounts_sessions_and_tokens, |db: Database| async move {
    let a = AccountStore::with_database(db.clone()).await.unwrap();
    let b = AccountStore::with_database(db).await.unwrap();
    assert!(a.is_empty().await.unwrap());
    let pw = Secret::from("correct horse battery");
    a.create_account("root", &pw, Role::Owner).await.unwrap();
    assert!(a.create_account("root", &pw, Role::Owner).await.is_err());
    // A session opened on one replica is valid on the other, CSRF included.
    let session = a.login("root", &pw).await.unwrap();
    let sid = session.session.expose_str().unwrap();
    let csrf = session.csrf.expose_str().unwrap();
    assert_eq!(
        b.session(sid, Some(csrf)).await.unwrap().unwrap().role,
        Role::Owner
    );
    assert!(b.session(sid, Some("wrong")).await.unwrap().is_none());
    let (info, tok) = b.create_token("ci", Role::Auditor, "root").await.unwrap();
    assert!(a.token(tok.expose_str().unwrap()).await.unwrap().is_some());
    a.revoke_token(&info.id).await.unwrap();
    assert!(b.token(tok.expose_str().unwrap()).await.unwrap().is_none());
    assert!(b.tokens().await.unwrap()[0].revoked);
    b.set_role("root", Role::Admin).await.unwrap();
    assert_eq!(a.accounts().await.unwrap()[0].role, Role::Admin);
    a.logout(sid).await.unwrap();
    assert!(b.session(sid, None).await.unwrap().is_none());
    let again = a.login("root", &pw).await.unwrap();
    b.delete_account("root").await.unwrap();
    assert!(
        a.session(again.session.expose_str().unwrap(), None)
            .await
            .unwrap()
            .is_none()
    );
});

fn zendesk_call() -> Call {
    Call::new(
        Subject::user("u", WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool("zendesk", "search"),
    )
}

async fn admitted(switch: &KillSwitch) -> bool {
    matches!(
        switch.admit(&zendesk_call()).await.unwrap(),
        Verdict::Admit(_)
    )
}

on_both!(
    kill_switches_are_shared_and_audited_once,
    |db: Database| async move {
        let shared = SharedSwitches::open(db.clone(), None).await.unwrap();
        let audit_here = Arc::new(MemoryAuditSink::new());
        let audit_there = Arc::new(MemoryAuditSink::new());
        let here = KillSwitch::new(audit_here.clone());
        let there = KillSwitch::new(audit_there.clone());
        // An admitted call on the other replica is cancelled when the switch reaches it.
        let Verdict::Admit(Some(in_flight)) = there.admit(&zendesk_call()).await.unwrap() else {
            panic!("not admitted")
        };
        let ops = Subject::user("ops", WorkspaceId::new("acme"));
        shared
            .engage(&here, KillTarget::connector("zendesk"), &ops, "incident 7")
            .await
            .unwrap();
        assert!(!admitted(&here).await);
        // Another process opening the same table catches up.
        let other = SharedSwitches::open(db, None).await.unwrap();
        other.sync(&there).await.unwrap();
        assert!(!admitted(&there).await);
        assert!(in_flight.is_cancelled());
        let (target, engagement) = &other.load().await.unwrap()[0];
        assert_eq!(*target, KillTarget::connector("zendesk"));
        assert_eq!(
            (engagement.by.as_str(), engagement.reason.as_str()),
            ("ops", "incident 7")
        );
        // Released from the other replica: audited there, once.
        assert!(
            other
                .release(&there, &KillTarget::connector("zendesk"), &ops, "resolved")
                .await
                .unwrap()
        );
        shared.sync(&here).await.unwrap();
        assert!(admitted(&here).await);
        assert_eq!(
            audit_here.events().len(),
            1,
            "engage audited where it was made"
        );
        assert_eq!(
            audit_there.events().len(),
            1,
            "release audited where it was made"
        );
    }
);

/// A unique channel prefix per test, so parallel tests never hear each other.
fn prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

async fn until(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn announcements_reach_other_buses_on_the_same_channel_only() {
    let prefix = prefix();
    let a = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let b = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let elsewhere = ClusterBus::connect(&redis_url(), &format!("{prefix}-other")).unwrap();
    let mut rx = b.subscribe();
    let mut other_rx = elsewhere.subscribe();
    // Each listener announces Resync once subscribed.
    for rx in [&mut rx, &mut other_rx] {
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(first.unwrap().unwrap(), Change::Resync);
    }
    let change = Change::KeyChanged { id: "abc".into() };
    assert!(a.publish(&change).await);
    let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, change);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other_rx.recv())
            .await
            .is_err(),
        "another prefix heard the change"
    );
}

#[tokio::test]
async fn a_flip_reaches_a_follower_through_redis_well_before_its_poll() {
    let (db, _schema) = postgres().await;
    let prefix = prefix();
    let bus_a = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let bus_b = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let mut ready = bus_b.subscribe();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), ready.recv())
            .await
            .unwrap()
            .unwrap(),
        Change::Resync
    );
    let writer = SharedSwitches::open(db.clone(), Some(bus_a)).await.unwrap();
    let reader = SharedSwitches::open(db, Some(bus_b.clone())).await.unwrap();
    let here = KillSwitch::new(Arc::new(MemoryAuditSink::new()));
    let there = Arc::new(KillSwitch::new(Arc::new(MemoryAuditSink::new())));
    // A poll interval far beyond the bound: only the announcement can be fast enough.
    let task = follow(
        Some(&bus_b),
        Duration::from_secs(60),
        reader.follower(there.clone()),
    );
    let ops = Subject::user("ops", WorkspaceId::new("acme"));
    writer
        .engage(&here, KillTarget::connector("zendesk"), &ops, "x")
        .await
        .unwrap();
    let took = until(Duration::from_secs(1), async || !admitted(&there).await).await;
    assert!(took.is_some(), "not propagated within 1 s");
    task.abort();
}

#[tokio::test]
async fn without_redis_followers_poll_the_database() {
    let (db, _schema) = postgres().await;
    // Nothing listens on port 1: publishing fails, the listener keeps retrying.
    let dead = ClusterBus::connect("redis://127.0.0.1:1", &prefix()).unwrap();
    let writer = SharedSwitches::open(db.clone(), Some(dead.clone()))
        .await
        .unwrap();
    let reader = SharedSwitches::open(db, Some(dead.clone())).await.unwrap();
    let here = KillSwitch::new(Arc::new(MemoryAuditSink::new()));
    let there = Arc::new(KillSwitch::new(Arc::new(MemoryAuditSink::new())));
    let task = follow(
        Some(&dead),
        Duration::from_millis(200),
        reader.follower(there.clone()),
    );
    let ops = Subject::user("ops", WorkspaceId::new("acme"));
    assert!(!dead.publish(&Change::Policy).await);
    writer
        .engage(&here, KillTarget::connector("zendesk"), &ops, "x")
        .await
        .unwrap();
    let took = until(Duration::from_secs(3), async || !admitted(&there).await).await;
    assert!(took.is_some(), "the poll did not pick the switch up");
    writer
        .release(&here, &KillTarget::connector("zendesk"), &ops, "y")
        .await
        .unwrap();
    let took = until(Duration::from_secs(3), async || admitted(&there).await).await;
    assert!(took.is_some(), "the poll did not pick the release up");
    task.abort();
}

#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_on_another_at_once() {
    let (db, _schema) = postgres().await;
    let prefix = prefix();
    let bus_a = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let bus_b = ClusterBus::connect(&redis_url(), &prefix).unwrap();
    let mut ready = bus_b.subscribe();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), ready.recv())
            .await
            .unwrap()
            .unwrap(),
        Change::Resync
    );
    let a = KeyStore::with_database(db.clone(), KeyFormat::PAT, Secret::from("p"))
        .await
        .unwrap()
        .with_bus(bus_a);
    // A cache long enough that only the announcement explains a prompt refusal.
    let b = KeyStore::with_database(db, KeyFormat::PAT, Secret::from("p"))
        .await
        .unwrap()
        .with_cache_ttl(Duration::from_secs(600));
    let task = follow(Some(&bus_b), Duration::from_secs(60), b.follower());
    let issued = a.create(NewKey::user("acme", "alice")).await.unwrap();
    assert!(b.authenticate(&token(&issued), None).await.is_ok());
    a.revoke(&issued.record.id).await.unwrap();
    let took = until(Duration::from_secs(1), async || {
        b.authenticate(&token(&issued), None).await == Err(AuthError::Revoked)
    })
    .await;
    assert!(took.is_some(), "revocation not seen within 1 s");
    task.abort();
}

#[tokio::test]
async fn replicas_signing_checkpoints_over_the_same_head_do_not_collide() {
    use fortress_core::audit::chain::CheckpointPolicy;
    use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys};
    use fortress_core::audit::row::EncodedEvent;
    use fortress_core::audit::store::{AuditStore, PostgresAuditStore};
    use fortress_core::audit::verify::{VerifyOptions, verify_store};
    use fortress_core::audit::{AuditEvent, EventKind, SubjectRef};
    use fortress_core::subject::SubjectKind;

    const MANUAL: CheckpointPolicy = CheckpointPolicy {
        max_events: usize::MAX,
        max_interval: Duration::from_secs(1_000_000),
    };
    let (db, _schema) = postgres().await;
    let pool = db.postgres_pool().unwrap().clone();
    let key = Arc::new(Ed25519KeyProvider::generate());
    let trusted = TrustedKeys::new([key.verifying_key()]);
    let a = PostgresAuditStore::from_pool(pool.clone())
        .await
        .unwrap()
        .with_signer(key.clone())
        .with_checkpoint_policy(MANUAL);
    let b = PostgresAuditStore::from_pool(pool)
        .await
        .unwrap()
        .with_signer(key)
        .with_checkpoint_policy(MANUAL);
    let event = |i: u32| {
        let event = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("acme"),
            SubjectRef {
                id: format!("u{i}"),
                kind: SubjectKind::User,
            },
            "test",
            format!("r{i}"),
        );
        EncodedEvent::new(&event).unwrap()
    };
    a.append(vec![event(1), event(2)], false).await.unwrap();
    b.append(vec![event(3)], false).await.unwrap();
    // Both shut down, each signing a final checkpoint over the same head: `b` wrote that
    // head itself, so its cached chain state looks current although `a` signed it since.
    a.append(Vec::new(), true).await.unwrap();
    b.append(Vec::new(), true).await.unwrap();
    a.append(vec![event(4)], true).await.unwrap();
    let report = verify_store(&b, &trusted, VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.events, 4);
}
