//! Load benchmark: the same fast mock Claude API reached directly, through a bare nginx
//! `proxy_pass` hop (when `nginx` is installed), and through PAT Fortress with keys, policy,
//! budgets, rate limits, vault, redaction and audit all on.
//!
//! Run: `cargo bench -p fortress-pat --bench load` (optionally `LOAD_SECS=3 LOAD_CONNS=8`).
//! Each target gets the same closed-loop load: `LOAD_CONNS` keep-alive connections sending
//! back to back for `LOAD_SECS`; then one connection for the latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use fortress_pat::keys::{KeyStore, NewKey};
use fortress_pat::limits::{BudgetRule, Ledger, LimitsConfig, RateRule, Scope, Window};
use fortress_pat::mock::MockClaude;
use fortress_pat::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use fortress_pat::upstream::{Upstream, UpstreamConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const UPSTREAM_KEY: &str = "sk-ant-bench-upstream";

struct Target {
    name: &'static str,
    base: String,
    key: String,
}

fn body(size: usize, stream: bool) -> Bytes {
    // A user message padded to about `size` bytes.
    let pad = "lorem ipsum ".repeat(size / 12);
    Bytes::from(
        serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": pad}]})
        .to_string(),
    )
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn one(client: &HttpClient, target: &Target, payload: &Bytes, ttfb: bool) -> Duration {
    let req = http::Request::post(format!("{}/v1/messages", target.base))
        .header("x-api-key", &target.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(payload.clone()))
        .unwrap_or_default();
    let start = Instant::now();
    let Ok(response) = client.request(req).await else {
        return Duration::MAX;
    };
    let mut body = response.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        if first.is_none() && frame.as_ref().is_ok_and(|f| f.is_data()) {
            first = Some(start.elapsed());
        }
    }
    if ttfb {
        first.unwrap_or(Duration::MAX)
    } else {
        start.elapsed()
    }
}

async fn throughput(target: &Target, payload: Bytes, conns: usize, secs: u64) -> f64 {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let target = Arc::new(Target {
        name: target.name,
        base: target.base.clone(),
        key: target.key.clone(),
    });
    for _ in 0..conns {
        let (client, target, payload) = (client.clone(), target.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if one(&client, &target, &payload, false).await != Duration::MAX {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / secs as f64
}

async fn latency(target: &Target, payload: Bytes, n: usize, ttfb: bool) -> (Duration, Duration) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(one(&client, target, &payload, ttfb).await);
    }
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100])
}

fn start_nginx(upstream: &str) -> Option<(std::process::Child, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let upstream = upstream.trim_start_matches("http://");
    let conf = format!(
        "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d};
  upstream mock {{ server {upstream}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_buffering off; client_max_body_size 64m; }} }} }}",
        d = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = std::process::Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Wait until it accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, format!("http://127.0.0.1:{port}"), dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

async fn start_pat(mock: &MockClaude, archive_dir: std::path::PathBuf) -> (String, String) {
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), ANTHROPIC_CONNECTOR);
    let _ = vault.put(&slot, Secret::from(UPSTREAM_KEY)).await;
    let keys = KeyStore::in_memory(fortress_pat::keys::FORMAT, Secret::from("pepper"))
        .await
        .expect("key store");
    let key = keys
        .create(NewKey::user("acme", "bench"))
        .await
        .expect("key");
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::Workspace,
            window: Window::Day,
            max_tokens: Some(u64::MAX / 4),
            max_usd: Some(1e12),
        }],
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(100_000_000),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    };
    let service = PatService::new(PatParts {
        keys,
        ledger: Arc::new(Ledger::new(limits)),
        policy: Arc::new(AllowListPolicy::new([AllowRule::anyone(
            "*",
            "model:claude-*",
        )])),
        vault: Arc::new(vault),
        redactor: Arc::new(PatternRedactor::basic()),
        audit: Arc::new(MemoryAuditSink::new()),
        upstream: Upstream::new(&UpstreamConfig::new(mock.base_url())).expect("upstream"),
        archive: Some(fortress_pat::archive::Archiver::start(
            Arc::new(fortress_pat::archive::ArchiveSealer::new(Arc::new(
                fortress_core::vault::keys::ManagedKeys::new(
                    fortress_core::vault::keys::RootKey::generate(),
                ),
            ))),
            fortress_pat::archive::store::local(&archive_dir).expect("archive dir"),
            None,
            fortress_pat::archive::ArchiveOptions::default(),
        )),
    })
    .expect("service");
    let listener = fortress_pat::server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(fortress_pat::server::serve(
        listener,
        service,
        None,
        std::future::pending(),
    ));
    (base, key.token.expose_str().unwrap_or_default().to_owned())
}

fn main() {
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let conns: usize = std::env::var("LOAD_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mock = MockClaude::start(UPSTREAM_KEY, 16).await.expect("mock");
        let archive_dir = tempfile::tempdir().expect("archive dir");
        let (pat_base, pat_key) = start_pat(&mock, archive_dir.path().to_owned()).await;
        let nginx = start_nginx(&mock.base_url());
        let mut targets = vec![Target {
            name: "direct mock",
            base: mock.base_url(),
            key: UPSTREAM_KEY.into(),
        }];
        if let Some((_, base, _)) = &nginx {
            targets.push(Target {
                name: "nginx hop",
                base: base.clone(),
                key: UPSTREAM_KEY.into(),
            });
        }
        targets.push(Target {
            name: "fortress-pat",
            base: pat_base,
            key: pat_key,
        });
        println!(
            "load: {conns} connections x {secs} s per figure; latency over 500 sequential requests"
        );
        for (label, size, stream) in [
            ("non-streaming 1 KB", 1024, false),
            ("non-streaming 16 KB", 16 * 1024, false),
            ("streaming", 1024, true),
        ] {
            println!("\n{label}:");
            let mut base_rps = None;
            for target in &targets {
                let payload = body(size, stream);
                let rps = throughput(target, payload.clone(), conns, secs).await;
                let (p50, p99) = latency(target, payload, 500, stream).await;
                let ratio = base_rps.map_or(1.0, |b: f64| rps / b);
                base_rps.get_or_insert(rps);
                println!(
                    "  {:<13} {:>8.0} req/s ({:.2}x direct)  {} p50 {:>7.3} ms  p99 {:>7.3} ms",
                    target.name,
                    rps,
                    ratio,
                    if stream { "TTFB" } else { "latency" },
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
            }
        }
        if let Some((mut child, _, _dir)) = nginx {
            // TERM lets the nginx master stop its worker too.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        mock.stop();
    });
}
