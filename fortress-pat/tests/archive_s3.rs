//! The archive on S3-compatible storage: a real moto S3 server (from `.venv-s3/`, installed
//! by `scripts/setup-s3-test-deps.sh`) on an ephemeral 127.0.0.1 port; the S3 keys come
//! from the vault. Calls land in batch objects under `<prefix>/<workspace>/<date>/`,
//! encrypted; the admin API reads them back exactly; retention purges old days.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{Deployment, Served, UPSTREAM_KEY, call, contains, eventually, message};
use fortress_core::admin::rbac::Role;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, Vault};
use fortress_pat::archive::{ArchiveLocation, S3Settings};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const BUCKET: &str = "fortress-archive";

/// The bucket itself, bypassing the archive (moto refuses unsigned object reads).
fn raw_bucket(endpoint: &str) -> Arc<dyn ObjectStore> {
    fortress_pat::archive::store::open(
        &ArchiveLocation::S3 {
            bucket: BUCKET.into(),
            prefix: String::new(),
        },
        S3Settings {
            endpoint: Some(endpoint.to_owned()),
            region: Some("us-east-1".into()),
            access_key_id: Some(Secret::from("AKIDTEST")),
            secret_access_key: Some(Secret::from("s3-secret-canary")),
        },
    )
    .unwrap()
}

struct Moto {
    endpoint: String,
    _child: tokio::process::Child,
}

fn moto_server() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let server = root.join(".venv-s3/bin/moto_server");
    assert!(
        server.exists(),
        "{} is missing: run scripts/setup-s3-test-deps.sh",
        server.display()
    );
    server
}

/// Starts moto on an ephemeral port and reads the port it reports.
async fn start_moto() -> Moto {
    let mut child = tokio::process::Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let port: String = line[at + 17..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                return format!("http://127.0.0.1:{port}");
            }
        }
        panic!("moto exited without reporting its address");
    })
    .await
    .expect("moto starts within 30 s");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Moto {
        endpoint,
        _child: child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_works_on_an_s3_compatible_server() {
    let moto = start_moto().await;
    let http = reqwest::Client::new();
    let created = http
        .put(format!("{}/{BUCKET}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "bucket created");

    let deployment = Deployment::new().await;
    let config = deployment.config(&format!(
        "[archive]\nurl = \"s3://{BUCKET}/pat\"\nendpoint = {:?}\nregion = \"us-east-1\"\ncredentials_connector = \"archive-s3\"\n",
        moto.endpoint
    ));
    // The S3 keys live in the vault (the admin workspace's `archive-s3` credential).
    {
        let keys = config.key_provider().unwrap();
        let vault = config
            .open_vault(keys, Arc::new(MemoryAuditSink::new()))
            .await
            .unwrap();
        vault
            .put(
                &CredentialSlot::workspace(WorkspaceId::new("acme"), "archive-s3"),
                Secret::from(
                    r#"{"access_key_id":"AKIDTEST","secret_access_key":"s3-secret-canary"}"#,
                ),
            )
            .await
            .unwrap();
    }
    let served = Served::start(&config).await;
    let archive = served.gateway.archive.clone().unwrap();
    let sent = message("archive me on S3, dave@example.net", true);
    let (id, received) = call(&served.base, &served.gateway_key, &sent).await;
    assert!(
        eventually(Duration::from_secs(15), || archive.archived_calls() >= 1).await,
        "written to S3 (pending {}, failed puts {})",
        archive.pending(),
        archive.failed_puts()
    );

    // The objects, fetched raw from the bucket: ciphertext only.
    let raw = raw_bucket(&moto.endpoint);
    let day = fortress_pat::archive::request_day(&id).unwrap();
    let batch = ObjectPath::from(format!("pat/acme/{day}/{id}_{id}.batch"));
    {
        let bytes = raw
            .get(&batch)
            .await
            .expect("stored under its day, named by its request id")
            .bytes()
            .await
            .unwrap();
        assert!(bytes.starts_with(b"FPB1"));
        for needle in [
            UPSTREAM_KEY.as_bytes(),
            b"dave@example.net".as_slice(),
            b"archive me".as_slice(),
        ] {
            assert!(!contains(&bytes, needle));
        }
    }

    // Read back through the admin API.
    let auditor = served.admin_token(Role::Auditor).await;
    let body: Value = http
        .get(format!("{}/admin/api/archive/{id}", served.base))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v["base64"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(decode(&body["request"]), sent.as_bytes());
    assert_eq!(decode(&body["response"]), received);
    // The S3 secret is in no file of the data directory (the vault holds it encrypted).
    for file in common::files(&deployment.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, b"s3-secret-canary"), "{file:?}");
    }

    // Retention: an old day is purged, today's call stays.
    let old = ObjectPath::from("pat/acme/2000-01-01/old.request");
    raw.put(&old, PutPayload::from_static(b"x")).await.unwrap();
    let report = archive
        .purge(chrono::Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!((report.days, report.objects), (1, 1));
    assert!(matches!(
        raw.head(&old).await,
        Err(object_store::Error::NotFound { .. })
    ));
    raw.head(&batch).await.expect("today's call is kept");
    served.stop().await;
}
