//! External anchoring of checkpoints, end to end through `audit verify`: a store rewritten
//! with a recomputed (and re-signed) chain and a store whose newest events and checkpoints
//! were cut off both pass the internal chain check but fail against the anchor; a
//! retention purge does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use clap::Parser;
use fortress_core::audit::anchor::{AnchoredStore, CheckpointAnchor, FileAnchor};
use fortress_core::audit::chain::CheckpointPolicy;
use fortress_core::audit::cli::{AuditCommand, CliError};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::store::{AuditStore, SqliteAuditStore};
use fortress_core::audit::{AuditEvent, AuditSink, DurableAuditSink, EventKind, SinkConfig};
use fortress_core::audit::{SubjectRef, settings::AuditSettings, settings::open_trail};
use fortress_core::subject::{SubjectKind, WorkspaceId};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    audit: AuditCommand,
}

struct Paths {
    _dir: tempfile::TempDir,
    data: PathBuf,
    key: PathBuf,
    anchor: PathBuf,
}

fn paths() -> Paths {
    let dir = tempfile::tempdir().unwrap();
    Paths {
        data: dir.path().join("data"),
        key: dir.path().join("keys/audit.key"),
        anchor: dir.path().join("anchors/audit.jsonl"),
        _dir: dir,
    }
}

/// A deterministic event: equal inputs give byte-identical bodies.
fn event(i: u64, note: &str) -> AuditEvent {
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: "alice".into(),
            kind: SubjectKind::User,
        },
        "tools/call",
        "tool:zendesk/search",
    );
    e.timestamp = Utc.timestamp_opt(1_800_000_000 + i as i64, 0).unwrap();
    e.request_id = format!("r-{i}");
    e.detail.insert("note".into(), note.into());
    e
}

/// Writes events 1..=20 in two flushed rounds (checkpoints 1..10 and 11..20, both
/// anchored), with `forge` changing event 13.
async fn write_trail(p: &Paths, key: &Path, forge: bool) -> Arc<SqliteAuditStore> {
    let signer = Arc::new(Ed25519KeyProvider::load_or_create(key).unwrap());
    let sqlite = Arc::new(
        SqliteAuditStore::open_in(&p.data)
            .await
            .unwrap()
            .with_signer(signer)
            // Checkpoints only on flush, so both trails have the same boundaries however
            // slow the machine is.
            .with_checkpoint_policy(CheckpointPolicy {
                max_events: 1_000_000,
                max_interval: Duration::from_secs(3600),
            }),
    );
    let store = Arc::new(AnchoredStore::new(
        sqlite.clone(),
        Arc::new(FileAnchor::new(&p.anchor)),
    ));
    let sink = DurableAuditSink::start(store, SinkConfig::default());
    for round in [1..=10u64, 11..=20] {
        for i in round {
            let note = if forge && i == 13 { "forged" } else { "real" };
            sink.record(event(i, note)).await.unwrap();
        }
        sink.flush().await.unwrap();
    }
    sink.shutdown().await.unwrap();
    sqlite
}

async fn verify(data: &Path, key: &Path, anchor: &Path) -> Result<String, CliError> {
    let cli = Cli::parse_from([
        "fortress",
        "--data-dir",
        data.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
        "--anchor-file",
        anchor.to_str().unwrap(),
        "verify",
    ]);
    let mut out = Vec::new();
    cli.audit.run(&mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_published_and_an_intact_store_matches_them() {
    let p = paths();
    let store = write_trail(&p, &p.key, false).await;
    let anchored = FileAnchor::new(&p.anchor).published().await.unwrap();
    assert_eq!(anchored, store.checkpoints().await.unwrap());
    assert_eq!(
        anchored
            .iter()
            .map(|c| (c.first_seq, c.last_seq))
            .collect::<Vec<_>>(),
        [(1, 10), (11, 20)]
    );
    let out = verify(&p.data, &p.key, &p.anchor).await.unwrap();
    assert!(out.contains("2 checkpoints match"), "{out}");
}

/// Someone with the signing key rebuilds the store with event 13 changed: the chain and
/// every signature check out, but checkpoint 11..20 is not the one published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_store_with_a_recomputed_chain_fails_against_the_anchor() {
    let real = paths();
    write_trail(&real, &real.key, false).await;
    let forged = paths();
    write_trail(&forged, &real.key, true).await;

    // Against its own (forged) anchor it is consistent…
    let out = verify(&forged.data, &real.key, &forged.anchor)
        .await
        .unwrap();
    assert!(out.contains("audit trail verified: 20 events"), "{out}");
    // …against the real one it is not, from the first rewritten checkpoint on.
    let err = verify(&forged.data, &real.key, &real.anchor)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at sequence 11"), "{err}");
    assert!(err.contains("differs from its external anchor"), "{err}");
}

/// The newest events and their checkpoint are deleted (triggers dropped): what remains is
/// a consistent, signed, shorter trail — only the anchor shows what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_tail_fails_against_the_anchor() {
    let p = paths();
    let store = write_trail(&p, &p.key, false).await;
    for sql in [
        "DROP TRIGGER audit_events_delete_only_in_purge",
        "DROP TRIGGER audit_checkpoints_delete_only_in_purge",
        "DELETE FROM audit_events WHERE seq > 10",
        "DELETE FROM audit_checkpoints WHERE last_seq > 10",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.pool().close().await;

    let elsewhere = p.anchor.with_file_name("none.jsonl");
    let out = verify(&p.data, &p.key, &elsewhere).await.unwrap();
    assert!(out.contains("audit trail verified: 10 events"), "{out}");
    assert!(out.contains("no external checkpoint anchor"), "{out}");

    let err = verify(&p.data, &p.key, &p.anchor)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at sequence 11"), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_purge_still_matches_the_anchor() {
    let p = paths();
    write_trail(&p, &p.key, false).await;
    let signer = Arc::new(Ed25519KeyProvider::load_or_create(&p.key).unwrap());
    let settings = AuditSettings {
        anchor_file: Some(p.anchor.clone()),
        ..AuditSettings::default()
    };
    let trail = open_trail(&p.data, Some(signer), &settings).await.unwrap();
    let report = trail
        .store
        .purge_before(
            Utc::now() + chrono::Duration::seconds(1),
            SubjectRef {
                id: "dpo".into(),
                kind: SubjectKind::User,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.anchor, Some(20));
    trail.sink.shutdown().await.unwrap();

    let out = verify(&p.data, &p.key, &p.anchor).await.unwrap();
    // 11..20 (the purge's anchor) and the purge record's own checkpoint match; 1..10 is gone.
    assert!(
        out.contains("2 checkpoints match, 1 purged by retention"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_anchor_refuses_a_missing_anchor() {
    let p = paths();
    write_trail(&p, &p.key, false).await;
    let cli = Cli::parse_from([
        "fortress",
        "--data-dir",
        p.data.to_str().unwrap(),
        "--key-file",
        p.key.to_str().unwrap(),
        "--anchor-file",
        p.anchor.with_file_name("gone.jsonl").to_str().unwrap(),
        "verify",
        "--require-anchor",
    ]);
    let err = cli.audit.run(&mut Vec::new()).await.unwrap_err();
    assert!(matches!(err, CliError::NoAnchor(_)), "{err}");
}
