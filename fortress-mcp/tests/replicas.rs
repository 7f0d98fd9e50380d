//! Scale-out end to end: three real `fortress-mcp serve` processes sharing one fresh
//! PostgreSQL database (on 127.0.0.1:5432) and one Redis (a unique channel prefix), in
//! front of one MCP server over Streamable HTTP, with the client spreading its calls:
//!
//! - a kill switch engaged through one replica's configuration stops calls on every
//!   replica within 1 s (the replicas' database poll is 10 s, so Redis carries it);
//! - a legacy session started on one replica continues on the others;
//! - SIGKILL of one replica under load loses no acknowledged audit event, and the shared
//!   chain verifies.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys, default_key_path};
use fortress_core::audit::store::{AuditStore, PostgresAuditStore};
use fortress_core::audit::verify::{VerifyOptions, verify_store};
use fortress_mcp::server::ServerConfig;
use fortress_mcp::virtual_server::Naming;
use serde_json::{Value, json};

fn postgres_base() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_BASE")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn redis_url() -> String {
    std::env::var("FORTRESS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database of its own, dropped at the end.
struct FreshDatabase {
    name: String,
}

impl FreshDatabase {
    async fn create() -> Self {
        let name = format!("fortress_replicas_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&format!("{}/test", postgres_base()))
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        Self { name }
    }

    fn url(&self) -> String {
        format!("{}/{}", postgres_base(), self.name)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&format!("{}/test", postgres_base())).await
                {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A replica process, killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One deployment: the shared data directory (pepper, audit signing key, session key —
/// in production these come from a secret store), the configuration, the database.
struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    db: FreshDatabase,
}

const POLICY: &str = r#"
permit (principal, action, resource);
"#;

impl Cluster {
    async fn new(upstream: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("main.cedar"), POLICY).unwrap();
        let db = FreshDatabase::create().await;
        let prefix = format!("replicas-{}", uuid::Uuid::new_v4().simple());
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[data]
dir = {data:?}
database_url = "{database}"

[cluster]
redis_url = "{redis}"
prefix = "{prefix}"
poll_ms = 10000

[policy]
dir = {policies:?}

[pinning]
mode = "off"

[[upstream]]
name = "crm"
url = "{upstream}"
"#,
            database = db.url(),
            redis = redis_url(),
        );
        let path = dir.path().join("fortress.toml");
        std::fs::write(&path, config).unwrap();
        Self {
            _dir: dir,
            data,
            config: path,
            db,
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
            .args(&args[..1])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
            .output()
            .expect("run fortress-mcp");
        assert!(
            output.status.success(),
            "fortress-mcp {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn create_key(&self, subject: &str) -> String {
        let out = self.cli(&[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--subject",
            subject,
        ]);
        out.lines()
            .find_map(|l| l.strip_prefix("key: "))
            .expect("a key line")
            .to_owned()
    }

    fn start(&self) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fortress-mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("fortress-mcp never listened");
        Replica { child, url }
    }

    /// Starts `n` replicas (in turn: concurrent first starts are covered by the
    /// migration lock, but sequential starts keep the test's output readable).
    fn start_many(&self, n: usize) -> Vec<Replica> {
        (0..n).map(|_| self.start()).collect()
    }

    async fn audit_store(&self) -> PostgresAuditStore {
        PostgresAuditStore::connect(&self.db.url())
            .await
            .expect("audit store")
    }

    fn trusted(&self) -> TrustedKeys {
        let key = Ed25519KeyProvider::load_or_create(&default_key_path(&self.data)).unwrap();
        TrustedKeys::new([key.verifying_key()])
    }
}

/// The MCP server behind the replicas: an in-process upstream served over Streamable HTTP.
async fn upstream() -> common::Running {
    common::serve(
        vec![common::FakeUpstream::new("crm", 2, 10)],
        // The replicas add the `crm__` prefix; the upstream itself serves plain names.
        Naming {
            prefix: false,
            ..Naming::default()
        },
        ServerConfig::default(),
        None,
    )
    .await
}

async fn modern_call(url: &str, key: &str, tool: &str) -> common::Reply {
    try_modern_call(url, key, tool)
        .await
        .unwrap_or_else(|e| panic!("exchange with {url}: {e}"))
}

/// A modern `tools/call`; `Err` when the replica cannot be reached or the answer is cut.
async fn try_modern_call(url: &str, key: &str, tool: &str) -> Result<common::Reply, String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = common::modern("tools/call", 1, json!({"name": tool, "arguments": {}}));
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(common::Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The JSON-RPC answer of a reply, whether JSON or SSE.
fn answer(reply: &common::Reply) -> Value {
    if reply.body.trim_start().starts_with('{') {
        reply.json()
    } else {
        reply
            .sse_messages()
            .into_iter()
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    }
}

fn succeeded(reply: &common::Reply) -> bool {
    reply.status == 200 && answer(reply).get("result").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_switch_flipped_once_stops_every_replica_within_a_second() {
    let upstream = upstream().await;
    let cluster = Cluster::new(&upstream.url).await;
    let key = cluster.create_key("alice");
    let replicas = cluster.start_many(3);
    for replica in &replicas {
        let reply = modern_call(&replica.url, &key, "crm__tool0").await;
        assert!(succeeded(&reply), "{}: {}", replica.url, reply.body);
    }

    cluster.cli(&[
        "kill",
        "engage",
        "--connector",
        "crm",
        "--reason",
        "incident 11",
        "--by",
        "ops",
    ]);
    let flipped = Instant::now();
    for replica in &replicas {
        loop {
            let reply = modern_call(&replica.url, &key, "crm__tool0").await;
            if !succeeded(&reply) {
                let text = answer(&reply).to_string();
                assert!(text.contains("kill") || text.contains("stopped"), "{text}");
                break;
            }
            assert!(
                flipped.elapsed() < Duration::from_secs(1),
                "{} still serves after 1 s",
                replica.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = flipped.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Released the same way, every replica serves again.
    cluster.cli(&["kill", "release", "--connector", "crm"]);
    let released = Instant::now();
    for replica in &replicas {
        while !succeeded(&modern_call(&replica.url, &key, "crm__tool0").await) {
            assert!(released.elapsed() < Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Each change audited once, where it was made.
    let events = cluster
        .audit_store()
        .await
        .events_after(0, 10_000)
        .await
        .unwrap();
    let switch_events = events
        .iter()
        .filter(|e| e.columns.action.starts_with("kill_switch."))
        .count();
    assert_eq!(switch_events, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_legacy_session_started_on_one_replica_continues_on_the_others() {
    let upstream = upstream().await;
    let cluster = Cluster::new(&upstream.url).await;
    let key = cluster.create_key("alice");
    let other_key = cluster.create_key("mallory");
    let replicas = cluster.start_many(3);
    let bearer = format!("Bearer {key}");
    let auth = [("authorization", bearer.as_str())];

    let reply = common::post(
        &replicas[0].url,
        &auth,
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{"sampling":{}},
            "clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = reply
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let with_session = [
        ("authorization", bearer.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let reply = common::post(
        &replicas[0].url,
        &with_session,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);

    for (i, replica) in replicas.iter().enumerate().skip(1) {
        let reply = common::post(
            &replica.url,
            &with_session,
            json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"crm__tool1","arguments":{"n":i}}}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let text = answer(&reply)["result"]["content"][0]["text"].to_string();
        assert!(text.contains("crm:tool1"), "{text}");
        let list = common::post(
            &replica.url,
            &with_session,
            json!({"jsonrpc":"2.0","id":10 + i,"method":"tools/list"}),
        )
        .await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert_eq!(
            answer(&list)["result"]["tools"].as_array().map(Vec::len),
            Some(2)
        );
    }

    // The id is bound to its subject: another key cannot borrow it on any replica.
    let other = format!("Bearer {other_key}");
    let borrowed = common::post(
        &replicas[2].url,
        &[
            ("authorization", other.as_str()),
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        json!({"jsonrpc":"2.0","id":99,"method":"tools/list"}),
    )
    .await;
    assert_eq!(borrowed.status, 404, "{}", borrowed.body);
    // A forged id is unknown everywhere.
    let mut forged = session.clone();
    forged.pop();
    forged.push(if session.ends_with('A') { 'B' } else { 'A' });
    let reply = common::post(
        &replicas[1].url,
        &[
            ("authorization", bearer.as_str()),
            ("mcp-session-id", forged.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        json!({"jsonrpc":"2.0","id":98,"method":"tools/list"}),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_a_replica_loses_no_acknowledged_audit_event() {
    let upstream = upstream().await;
    let cluster = Cluster::new(&upstream.url).await;
    let key = Arc::new(cluster.create_key("alice"));
    let mut replicas = cluster.start_many(3);
    let urls: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.url.clone()).collect());

    // 4 clients spread 30 calls each over the replicas, each call naming a unique tool so
    // its audit event can be found; replica 0 is killed while they run.
    let mut clients = Vec::new();
    for c in 0..4 {
        let urls = urls.clone();
        let key = key.clone();
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..30 {
                let tool = format!("crm__c{c}n{i}");
                let url = &urls[(c + i) % urls.len()];
                let reply = tokio::time::timeout(
                    Duration::from_secs(10),
                    try_modern_call(url, &key, &tool),
                )
                .await;
                if let Ok(Ok(reply)) = reply {
                    if succeeded(&reply) {
                        acknowledged.push(format!("tool:crm/c{c}n{i}"));
                    }
                }
            }
            acknowledged
        }));
    }
    // Let some traffic through, then SIGKILL replica 0 (no graceful shutdown).
    let store = cluster.audit_store().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.events_after(0, 1000).await.unwrap().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "no traffic reached the audit trail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = replicas.remove(0);
    drop(killed);

    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 60,
        "only {} calls answered",
        acknowledged.len()
    );

    // Stop the survivors gracefully so their last checkpoints are written.
    for replica in &replicas {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(replica.child.id().to_string())
            .status();
    }
    for replica in &mut replicas {
        let _ = replica.child.wait();
    }

    let events = store.events_after(0, 100_000).await.unwrap();
    let recorded: std::collections::HashSet<&str> =
        events.iter().map(|e| e.columns.resource.as_str()).collect();
    for resource in &acknowledged {
        assert!(
            recorded.contains(resource.as_str()),
            "{resource} was acknowledged but not audited"
        );
    }
    // The survivors' final checkpoints cover the killed replica's last events too.
    let report = verify_store(&store, &cluster.trusted(), VerifyOptions::default())
        .await
        .expect("the shared chain verifies, fully signed");
    assert_eq!(report.events, events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_legacy_session_deleted_on_one_replica_is_gone_on_every_replica() {
    let upstream = upstream().await;
    let cluster = Cluster::new(&upstream.url).await;
    let key = cluster.create_key("alice");
    let replicas = cluster.start_many(3);
    let bearer = format!("Bearer {key}");

    let reply = common::post(
        &replicas[0].url,
        &[("authorization", bearer.as_str())],
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = reply
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let with_session = [
        ("authorization", bearer.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let list = |url: String| {
        let headers = with_session;
        async move {
            common::post(
                &url,
                &headers,
                json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            )
            .await
        }
    };
    // Every replica holds the session (resumed from its id) before it is deleted.
    for replica in &replicas {
        let reply = list(replica.url.clone()).await;
        assert_eq!(reply.status, 200, "{}: {}", replica.url, reply.body);
    }

    let deleted = common::send(http::Method::DELETE, &replicas[1].url, &with_session, "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let at = Instant::now();
    // The replica that deleted it refuses it at once…
    assert_eq!(list(replicas[1].url.clone()).await.status, 404);
    // …and the others within the propagation bound (their database poll is 10 s, so the
    // Redis announcement carries it).
    for replica in [&replicas[0], &replicas[2]] {
        loop {
            let reply = list(replica.url.clone()).await;
            if reply.status == 404 {
                break;
            }
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "{} still serves the deleted session after 1 s",
                replica.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A second DELETE anywhere finds nothing to end.
    let again = common::send(http::Method::DELETE, &replicas[2].url, &with_session, "").await;
    assert_eq!(again.status, 404, "{}", again.body);
    // A replica started after the deletion refuses it too (it reads the shared table).
    let late = cluster.start();
    assert_eq!(list(late.url.clone()).await.status, 404);
}
