//! The SOC 2 archive end to end: a gateway built from its configuration file and served
//! over TCP archives each call, encrypted, in the local object store; the admin API reads
//! it back decrypted to exactly the bytes sent and received, audits the read, and refuses a
//! viewer; the canary Anthropic key appears nowhere in the data directory.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Deployment, Served, UPSTREAM_KEY, call, contains, eventually, files, message};
use fortress_core::admin::rbac::Role;
use fortress_core::audit::query::{AuditFilter, AuditQuery};
use serde_json::Value;

fn decoded(part: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(part["base64"].as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_calls_decrypt_exactly_through_the_audited_admin_api() {
    let deployment = Deployment::new().await;
    let config = deployment.config("[archive]\n");
    let served = Served::start(&config).await;
    let archive = served
        .gateway
        .archive
        .clone()
        .expect("[archive] configured");

    let sent = message("stream me, dave@example.net", true);
    let (request_id, received) = call(&served.base, &served.gateway_key, &sent).await;
    assert!(contains(&received, b"message_stop"), "a whole stream");
    let plain = message("once more", false);
    let (plain_id, plain_received) = call(&served.base, &served.gateway_key, &plain).await;
    assert!(
        eventually(Duration::from_secs(10), || archive.archived_calls() >= 2).await,
        "both calls are written"
    );

    let client = reqwest::Client::new();
    let read = |token: String, id: String| {
        let client = client.clone();
        let url = format!("{}/admin/api/archive/{id}", served.base);
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    // A viewer is refused; nothing is returned.
    let viewer = served.admin_token(Role::Viewer).await;
    let refused = read(viewer, request_id.clone()).await;
    assert_eq!(refused.status(), 403);
    assert!(!contains(
        &refused.bytes().await.unwrap(),
        b"dave@example.net"
    ));
    // An auditor reads both calls back, byte for byte.
    let auditor = served.admin_token(Role::Auditor).await;
    for (id, sent, received) in [
        (&request_id, &sent, &received),
        (&plain_id, &plain, &plain_received),
    ] {
        let answer = read(auditor.clone(), id.clone()).await;
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(decoded(&body["request"]), sent.as_bytes());
        assert_eq!(&decoded(&body["response"]), received);
        assert_eq!(body["request_id"], id.as_str());
    }
    // Unknown and malformed ids.
    let missing = read(auditor.clone(), uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(missing.status(), 404);
    let malformed = read(auditor.clone(), "..%2F..%2Fetc".into()).await;
    assert_eq!(malformed.status(), 400);
    let undated = read(auditor.clone(), "abc".into()).await;
    assert_eq!(undated.status(), 400);

    // /metrics counts the archive's objects.
    let metrics = client
        .get(format!("{}/admin/metrics", served.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // One batch object per writer pick-up: both calls in one, or one each.
    let written = archive.written();
    assert!((1..=2).contains(&written), "{written} objects");
    assert!(
        metrics.contains(&format!(
            "fortress_pat_archive_objects_written_total {written}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("fortress_pat_archive_pending 0"));

    // Each successful read is in the audit trail, attributed to the auditor's token.
    let state = served.gateway.dashboard.server.state().clone();
    fortress_core::audit::AuditSink::flush(served.gateway.dashboard.durable.as_ref())
        .await
        .unwrap();
    let reads = state
        .store
        .as_ref()
        .unwrap()
        .query(&AuditQuery::newest_first(10).with_filter(AuditFilter {
            action: Some("archive.read".into()),
            ..AuditFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(reads.events.len(), 2, "two reads succeeded");
    assert!(
        reads
            .events
            .iter()
            .any(|e| e.columns.resource.ends_with(&format!("/{request_id}")))
    );
    served.stop().await;

    // On disk: objects under <workspace>/<date>/<id>, all ciphertext; the canary key, the
    // gateway key and the plaintext appear in no file of the data directory (archive,
    // audit trail, vault, spool).
    let objects = files(&deployment.data_dir().join("archive"));
    assert_eq!(objects.len() as u64, written);
    let day = fortress_pat::archive::request_day(&request_id).unwrap();
    let folder = deployment.data_dir().join(format!("archive/acme/{day}"));
    for object in &objects {
        assert!(object.starts_with(&folder), "{object:?}");
        assert!(object.to_string_lossy().ends_with(".batch"), "{object:?}");
    }
    for file in files(&deployment.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, UPSTREAM_KEY.as_bytes()), "{file:?}");
        assert!(!contains(&bytes, served_key_marker()), "{file:?}");
        if file.starts_with(deployment.data_dir().join("archive")) {
            assert!(!contains(&bytes, b"dave@example.net"), "{file:?}");
            assert!(!contains(&bytes, b"stream me"), "{file:?}");
        }
    }
}

/// The canary's distinctive tail (any copy of the key, even partial, would contain it).
fn served_key_marker() -> &'static [u8] {
    &UPSTREAM_KEY.as_bytes()[UPSTREAM_KEY.len() - 10..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_store_refuses_are_spooled_counted_and_delivered_later() {
    use fortress_core::subject::WorkspaceId;
    use fortress_core::vault::keys::{ManagedKeys, RootKey};
    use fortress_pat::archive::{ArchiveEntry, ArchiveOptions, ArchiveSealer, Archiver, store};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    // The store is a path that cannot be a directory (a file is in the way) until fixed.
    let blocked = dir.path().join("store");
    std::fs::create_dir_all(&blocked).unwrap();
    let store_dir = blocked.join("objects");
    let real = store::local(&store_dir).unwrap();
    std::fs::remove_dir_all(&store_dir).unwrap();
    std::fs::write(&store_dir, b"not a directory").unwrap();
    let spool = store::local(&dir.path().join("spool")).unwrap();
    let archiver = Archiver::start(
        Arc::new(ArchiveSealer::new(Arc::new(ManagedKeys::new(
            RootKey::generate(),
        )))),
        real,
        Some(spool),
        ArchiveOptions::default(),
    );
    let id = uuid::Uuid::now_v7().to_string();
    archiver
        .submit(ArchiveEntry {
            workspace: WorkspaceId::new("acme"),
            request_id: id.clone(),
            at: chrono::Utc::now(),
            request: "question".into(),
            response: "answer".into(),
        })
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || archiver.pending() == 1).await,
        "the call's batch object is spooled"
    );
    assert_eq!(archiver.written(), 0);
    assert_eq!(archiver.failed_puts(), 1);
    assert!(
        archiver
            .metrics_text()
            .contains("fortress_pat_archive_pending 1")
    );
    // Readable meanwhile, from the spool.
    let day = fortress_pat::archive::request_day(&id).unwrap();
    let call = archiver
        .read_call(&WorkspaceId::new("acme"), &id, day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.response, b"answer");
    // The store recovers; the retry delivers everything and empties the spool.
    std::fs::remove_file(&store_dir).unwrap();
    std::fs::create_dir_all(&store_dir).unwrap();
    assert_eq!(archiver.retry_pending().await.unwrap(), 1);
    assert_eq!(archiver.pending(), 0);
    assert_eq!(archiver.written(), 1);
    assert!(files(&dir.path().join("spool")).is_empty());
    assert_eq!(files(&store_dir).len(), 1);
    // And readable from the store.
    let call = archiver
        .read_call(&WorkspaceId::new("acme"), &id, day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.request, b"question");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_by_the_workspace_tier_retention() {
    use fortress_core::tier::Tier;
    use fortress_core::vault::keys::{ManagedKeys, RootKey};
    use fortress_pat::archive::{ArchiveOptions, ArchiveSealer, Archiver, Retention, store};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    for key in [
        "soho/2030-03-01/a.request",
        "soho/2030-04-01/b.request",
        "bank/2029-07-01/c.request",
        "bank/2029-06-29/d.request",
        "zt/2023-07-02/e.request",
        "zt/2023-06-30/f.request",
    ] {
        let path = objects.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    let mut retention = Retention::new(Tier::Soho);
    retention.workspaces.insert("bank".into(), Tier::Bank);
    retention.workspaces.insert("zt".into(), Tier::ZeroTrust);
    let archiver = Archiver::start(
        Arc::new(ArchiveSealer::new(Arc::new(ManagedKeys::new(
            RootKey::generate(),
        )))),
        store::local(&objects).unwrap(),
        None,
        ArchiveOptions {
            capacity: 4,
            retention,
        },
    );
    let today = chrono::NaiveDate::from_ymd_opt(2030, 6, 30).unwrap();
    let report = archiver.purge(today).await.unwrap();
    assert_eq!(report.objects, 3);
    let mut left: Vec<String> = files(&objects)
        .iter()
        .map(|p| p.strip_prefix(&objects).unwrap().display().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "bank/2029-07-01/c.request",
            "soho/2030-04-01/b.request",
            "zt/2023-07-02/e.request"
        ]
    );
    assert!(
        archiver
            .metrics_text()
            .contains("fortress_pat_archive_purged_total 3")
    );
    // Purging again finds nothing more.
    assert_eq!(archiver.purge(today).await.unwrap().objects, 0);
}
