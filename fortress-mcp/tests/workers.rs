//! The real `fortress-mcp serve` binary with `[server] workers = 2`: connections are served
//! on two single-threaded runtimes sharing one port, every call is still governed and
//! audited, and SIGTERM still drains and exits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fortress_core::audit::{AuditStore, SqliteAuditStore};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// A child process killed when the test ends (unless it already exited).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A modern-era upstream with one tool, `echo`, answering `ok`.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                    let body = BodyExt::collect(request.into_body()).await?.to_bytes();
                    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let id = message["id"].clone();
                    let result = match message["method"].as_str() {
                        Some("server/discover") => json!({"resultType": "complete",
                            "supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}),
                        Some("tools/list") => json!({"resultType": "complete",
                            "tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
                        _ => json!({"resultType": "complete",
                            "content": [{"type": "text", "text": "ok"}]}),
                    };
                    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
                    let mut response =
                        http::Response::new(Full::new(Bytes::from(reply.to_string())));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, hyper::Error>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/mcp")
}

fn serve(config: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("FORTRESS_LOG", "warn")
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
    (Proc(child), url)
}

/// The names of the process's threads (Linux).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_serve_governed_calls_on_one_port_and_shut_down_cleanly() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("permit.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let config = dir.path().join("fortress.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 2
[naming]
prefix = false
[data]
dir = "{data}"
[auth]
anonymous = true
[policy]
files = ["{policy}"]
[pinning]
mode = "off"
[[upstream]]
name = "fast"
url = "{upstream}"
"#,
            data = dir.path().join("data").display(),
            policy = dir.path().join("permit.cedar").display(),
        ),
    )
    .unwrap();
    let (mut process, url) = serve(&config);
    let pid = process.0.id();
    // The workers start right after the address is printed: wait for both (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = thread_names(pid);
        if ["fortress-wk-0", "fortress-wk-1"]
            .iter()
            .all(|w| names.iter().any(|n| n == w))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no worker threads in {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    const CALLS: usize = 24;
    let mut answers = Vec::new();
    for i in 0..CALLS {
        // A fresh connection each time, so the kernel spreads them over both listeners.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "echo", "arguments": {},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}});
        let reply: Value = client
            .post(&url)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", "echo")
            .json(&body)
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON");
        answers.push(reply);
    }
    for (i, reply) in answers.iter().enumerate() {
        assert_eq!(reply["id"], i, "{reply}");
        assert_eq!(reply["result"]["content"][0]["text"], "ok", "{reply}");
    }

    // SIGTERM: the workers stop accepting and drain, and the process exits by itself.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = process.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "fortress-mcp did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");

    // Every call was audited, whichever worker served it.
    let store = SqliteAuditStore::open_in(&dir.path().join("data"))
        .await
        .unwrap();
    let events = store.events_after(0, 10_000).await.unwrap();
    let calls = events
        .iter()
        .filter_map(|e| e.event().ok())
        .filter(|e| e.action == "tools/call")
        .count();
    assert_eq!(calls, CALLS);
}
