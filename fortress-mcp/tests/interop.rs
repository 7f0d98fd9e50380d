//! End to end with implementations nobody here wrote: the official Python `mcp` SDK client
//! (both eras) and `@modelcontextprotocol/server-everything` (legacy era, over stdio and
//! Streamable HTTP), plus a modern-era upstream built with the Python SDK. Every client-era ×
//! upstream-era pair runs the same scenario through Fortress (prefixing off, so the gateway is
//! transparent) and directly against the upstream, and the outputs must be equal.
//!
//! The third-party dependencies are installed by `scripts/setup-test-deps.sh`, which these
//! tests run first (it is idempotent and quick when everything is present). If they cannot be
//! installed, the tests fail and say why.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the setup script once per test process; panics with its output on failure.
fn deps() -> &'static (PathBuf, PathBuf) {
    static DEPS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DEPS.get_or_init(|| {
        let script = root().join("scripts/setup-test-deps.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "the interop test dependencies could not be installed by {}:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let python = root().join(".venv/bin/python");
        let everything =
            root().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        assert!(
            python.exists(),
            "{} is missing after setup",
            python.display()
        );
        assert!(
            everything.exists(),
            "{} is missing after setup",
            everything.display()
        );
        (python, everything)
    })
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Spawns `command` and waits until a line of its stderr (or stdout) contains `ready`.
fn spawn_until(mut command: Command, ready: &str, from_stdout: bool) -> (Proc, String) {
    if from_stdout {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    } else {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
    }
    let mut child = command.spawn().expect("spawn");
    let stream: Box<dyn std::io::Read + Send> = if from_stdout {
        Box::new(child.stdout.take().expect("stdout"))
    } else {
        Box::new(child.stderr.take().expect("stderr"))
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if !sent && line.contains(&ready) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the process never became ready"));
    (Proc(child), line)
}

fn everything_http() -> (Proc, String) {
    let (_, everything) = deps();
    let port = free_port();
    let mut command = Command::new("node");
    command
        .arg(everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    let (proc, _) = spawn_until(command, "listening on port", false);
    (proc, format!("http://127.0.0.1:{port}/mcp"))
}

fn everything_sse() -> (Proc, String) {
    let (_, everything) = deps();
    let port = free_port();
    let mut command = Command::new("node");
    command
        .arg(everything)
        .arg("sse")
        .env("PORT", port.to_string());
    let (proc, _) = spawn_until(command, "running on port", false);
    (proc, format!("http://127.0.0.1:{port}/sse"))
}

fn modern_http() -> (Proc, String) {
    let (python, _) = deps();
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(interop_dir().join("modern_server.py"))
        .arg("http")
        .arg(port.to_string());
    let (proc, _) = spawn_until(command, "Uvicorn running", false);
    (proc, format!("http://127.0.0.1:{port}/mcp"))
}

/// Starts the real binary with one upstream, transparently (no prefix), with governance
/// that lets everything through unchanged: loopback clients anonymous, a permit-all policy,
/// no pinning, no redaction (the results must equal the upstream's).
fn fortress(upstream: &str) -> (Proc, String, tempfile::TempDir) {
    fortress_with(upstream, false)
}

/// [`fortress`], with virtual names prefixed by the upstream's name `up` when `prefix`.
fn fortress_with(upstream: &str, prefix: bool) -> (Proc, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("permit-all.cedar");
    std::fs::write(&policy, "permit (principal, action, resource);").expect("policy");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[naming]\nprefix = {prefix}\n\n\
         [data]\ndir = {data:?}\n\n[auth]\nanonymous = true\n\n[policy]\nfiles = [{policy:?}]\n\n\
         [pinning]\nmode = \"off\"\n\n[redaction]\nenabled = false\n\n\
         [[upstream]]\nname = \"up\"\n{upstream}\n",
        data = dir.path().join("data"),
    );
    let path = dir.path().join("fortress.toml");
    std::fs::write(&path, config).expect("config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"));
    command.arg("serve").arg("--config").arg(&path);
    let (proc, line) = spawn_until(command, "listening on ", true);
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    (proc, url, dir)
}

fn stdio_everything_upstream() -> String {
    let (_, everything) = deps();
    format!(
        "command = \"node\"\nargs = [{:?}, \"stdio\"]",
        everything.display().to_string()
    )
}

fn stdio_modern_upstream() -> String {
    let (python, _) = deps();
    format!(
        "command = {:?}\nargs = [{:?}, \"stdio\"]",
        python.display().to_string(),
        interop_dir().join("modern_server.py").display().to_string()
    )
}

/// Runs the Python client scenario; returns its JSON output.
fn client(mode: &str, scenario: &str, target: &[&str], skip_sampling: bool) -> Value {
    let (python, _) = deps();
    let mut command = Command::new(python);
    command
        .arg(interop_dir().join("client.py"))
        .args(["--mode", mode, "--scenario", scenario]);
    if skip_sampling {
        command.arg("--skip-sampling");
    }
    command.args(target);
    let started = Instant::now();
    let output = command.output().expect("run the python client");
    assert!(
        output.status.success(),
        "python client ({mode}, {scenario}, {target:?}) failed after {:?}:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_same(through: &Value, direct: &Value) {
    fn first_difference(path: String, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    first_difference(
                        format!("{path}.{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    )
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(format!("{path}[{i}]"), p, q)),
            _ if a == b => None,
            _ => {
                let show = |v: &Value| v.to_string().chars().take(600).collect::<String>();
                Some(format!(
                    "{path}: through Fortress {} / directly {}",
                    show(a),
                    show(b)
                ))
            }
        }
    }
    if let Some(difference) = first_difference(String::new(), through, direct) {
        panic!("results differ through Fortress at {difference}");
    }
}

fn assert_scenario_ran(out: &Value, sampled: bool) {
    assert!(!out["tools"].as_array().expect("tools").is_empty());
    assert!(
        out["echo"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("hello fortress")
    );
    assert!(
        out["progress"].as_array().expect("progress").len() >= 2,
        "progress relayed: {}",
        out["progress"]
    );
    if sampled {
        let text = out["sampling"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(
            text.contains("Paris"),
            "sampling relayed to the client: {text}"
        );
    }
    assert!(!out["resources"].as_array().expect("resources").is_empty());
    assert!(
        out["read"]["contents"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        !out["prompt"]["messages"]
            .as_array()
            .expect("messages")
            .is_empty()
    );
}

fn everything_stdio_direct(mode: &str, skip_sampling: bool) -> Value {
    let (_, everything) = deps();
    let everything = everything.display().to_string();
    client(
        mode,
        "everything",
        &["--stdio", "node", &everything, "stdio"],
        skip_sampling,
    )
}

#[test]
fn legacy_client_through_fortress_to_legacy_stdio_upstream() {
    let direct = everything_stdio_direct("legacy", false);
    let (_f, url, _d) = fortress(&stdio_everything_upstream());
    let through = client("legacy", "everything", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn modern_client_through_fortress_to_legacy_stdio_upstream() {
    // A modern client cannot reach a legacy server directly; it must see through Fortress what
    // a legacy client sees directly. The upstream's sampling request reaches the modern client
    // as an `input_required` result, and its retry resumes the parked upstream call.
    // server-everything also asks `roots/list` 350 ms after `initialize`: when that lands in
    // the progress call, the call is parked too and its progress must follow the retry's
    // token (tests/mrtr_progress.rs reproduces this deterministically).
    let direct = everything_stdio_direct("legacy", false);
    let (_f, url, _d) = fortress(&stdio_everything_upstream());
    let through = client("2026-07-28", "everything", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn legacy_client_through_fortress_to_legacy_http_upstream() {
    let (_u, upstream) = everything_http();
    let direct = client("legacy", "everything", &[&upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    let through = client("legacy", "everything", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn modern_client_through_fortress_to_legacy_http_upstream() {
    let (_u, upstream) = everything_http();
    let direct = client("legacy", "everything", &[&upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    let through = client("2026-07-28", "everything", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn modern_client_through_fortress_to_modern_http_upstream() {
    let (_u, upstream) = modern_http();
    let direct = client("2026-07-28", "modern", &[&upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    let through = client("2026-07-28", "modern", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn legacy_client_through_fortress_to_modern_http_upstream() {
    // Fortress speaks 2026-07-28 to the upstream and fulfils its `input_required` rounds by
    // asking the legacy client ordinary sampling requests.
    let (_u, upstream) = modern_http();
    let direct = client("2026-07-28", "modern", &[&upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    let through = client("legacy", "modern", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn modern_client_through_fortress_to_modern_stdio_upstream() {
    let (_u, upstream) = modern_http();
    let direct = client("2026-07-28", "modern", &[&upstream], false);
    let (_f, url, _d) = fortress(&stdio_modern_upstream());
    let through = client("2026-07-28", "modern", &[&url], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn stdio_only_clients_reach_fortress_through_the_connect_bridge() {
    let (_u, upstream) = modern_http();
    let direct = client("2026-07-28", "modern", &[&upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    let bridge = env!("CARGO_BIN_EXE_fortress-mcp");
    for mode in ["legacy", "2026-07-28"] {
        let through = client(mode, "modern", &["--stdio", bridge, "connect", &url], false);
        assert_scenario_ran(&through, true);
        assert_same(&through, &direct);
    }
}

#[test]
fn http_sse_clients_of_2024_11_05_are_served() {
    let direct = everything_stdio_direct("legacy", false);
    let (_f, url, _d) = fortress(&stdio_everything_upstream());
    let sse = url.replace("/mcp", "/sse");
    let through = client("legacy", "everything", &["--sse", &sse], false);
    assert_scenario_ran(&through, true);
    assert_same(&through, &direct);
}

#[test]
fn clients_of_both_eras_reach_a_2024_11_05_http_sse_upstream() {
    let (_u, upstream) = everything_sse();
    let direct = client("legacy", "everything", &["--sse", &upstream], false);
    let (_f, url, _d) = fortress(&format!("url = {upstream:?}"));
    for mode in ["legacy", "2026-07-28"] {
        let through = client(mode, "everything", &[&url], false);
        assert_scenario_ran(&through, true);
        assert_same(&through, &direct);
    }
}

/// The JSON-RPC messages of a long-lived SSE answer (a GET stream, `subscriptions/listen`),
/// as they arrive; the stream is read until the receiver is dropped.
async fn open_stream(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> tokio::sync::mpsc::Receiver<Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let payload = if method == http::Method::GET {
        bytes::Bytes::new()
    } else {
        bytes::Bytes::from(body.to_string())
    };
    let response = client
        .request(builder.body(http_body_util::Full::new(payload)).unwrap())
        .await
        .expect("the stream opens");
    assert_eq!(response.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut body = response.into_body();
        let mut decoder = fortress_mcp::sse::SseDecoder::new(1 << 20);
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for event in decoder.push(&data).unwrap_or_default() {
                if let Ok(message) = serde_json::from_str::<Value>(event.data()) {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The next message with `method` on `stream`, within 20 s.
async fn next_with(stream: &mut tokio::sync::mpsc::Receiver<Value>, method: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = stream.recv().await.expect("the stream stays open");
            if message["method"] == method {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {method} in time"))
}

/// A legacy session through Fortress: its id.
async fn legacy_session(url: &str) -> String {
    let reply = common::post(
        url,
        &[],
        serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["result"]["capabilities"]["resources"]["subscribe"],
        true,
        "server-everything supports subscriptions, so Fortress advertises them: {}",
        reply.body
    );
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let initialized = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    common::post(url, &[("mcp-session-id", &session)], initialized).await;
    session
}

/// A legacy request in `session`: every message of the answer (JSON or SSE).
async fn legacy_rpc(url: &str, session: &str, id: i64, method: &str, params: Value) -> Vec<Value> {
    let body = serde_json::json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    let reply = common::post(url, &[("mcp-session-id", session)], body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let messages = if reply.body.trim_start().starts_with('{') {
        vec![reply.json()]
    } else {
        reply.sse_messages()
    };
    let last = messages.last().expect("an answer");
    assert!(last["result"].is_object(), "{method}: {messages:?}");
    messages
}

fn logged(messages: &[Value], needle: &str) -> bool {
    messages.iter().any(|m| {
        m["method"] == "notifications/message" && m["params"]["data"].to_string().contains(needle)
    })
}

/// Legacy clients through Fortress to server-everything (stdio, names prefixed):
/// `logging/setLevel` reaches the upstream (its subscribe log is suppressed at `emergency`
/// and delivered at `debug`), `resources/subscribe` is relayed with the URI mapped, and
/// `notifications/resources/updated` reaches only the session that subscribed to that
/// resource, under its namespaced URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_clients_set_the_log_level_and_subscribe_to_resources_through_fortress() {
    let (_f, url, _d) = fortress_with(&stdio_everything_upstream(), true);
    let a = legacy_session(&url).await;
    let b = legacy_session(&url).await;
    let mut a_stream = open_stream(
        http::Method::GET,
        &url,
        &[("mcp-session-id", &a)],
        Value::Null,
    )
    .await;
    let mut b_stream = open_stream(
        http::Method::GET,
        &url,
        &[("mcp-session-id", &b)],
        Value::Null,
    )
    .await;

    let listed = legacy_rpc(&url, &a, 1, "resources/list", serde_json::json!({})).await;
    let resources = listed.last().unwrap()["result"]["resources"]
        .as_array()
        .unwrap()
        .clone();
    let uris: Vec<String> = resources
        .iter()
        .filter_map(|r| r["uri"].as_str().map(str::to_owned))
        .take(2)
        .collect();
    assert_eq!(uris.len(), 2, "{resources:?}");
    assert!(
        uris.iter().all(|u| u.starts_with("up__demo://")),
        "{uris:?}"
    );

    // At `emergency` the upstream keeps its info-level acknowledgement to itself.
    legacy_rpc(
        &url,
        &a,
        2,
        "logging/setLevel",
        serde_json::json!({"level": "emergency"}),
    )
    .await;
    let quiet = legacy_rpc(
        &url,
        &a,
        3,
        "resources/subscribe",
        serde_json::json!({"uri": uris[0]}),
    )
    .await;
    assert!(!logged(&quiet, "Subscribe"), "{quiet:?}");
    // At `debug` it speaks: the relayed level reached it.
    legacy_rpc(
        &url,
        &a,
        4,
        "logging/setLevel",
        serde_json::json!({"level": "debug"}),
    )
    .await;
    let loud = legacy_rpc(
        &url,
        &b,
        5,
        "resources/subscribe",
        serde_json::json!({"uri": uris[1]}),
    )
    .await;
    assert!(logged(&loud, "Subscribe"), "{loud:?}");
    let bad = common::post(
        &url,
        &[("mcp-session-id", &a)],
        serde_json::json!({"jsonrpc":"2.0","id":6,"method":"logging/setLevel","params":{"level":"loud"}}),
    )
    .await;
    assert_eq!(bad.json()["error"]["code"], -32602, "{}", bad.body);

    // The upstream now sends an update for each subscribed resource, in subscription order.
    legacy_rpc(
        &url,
        &a,
        7,
        "tools/call",
        serde_json::json!({"name": "up__toggle-subscriber-updates", "arguments": {}}),
    )
    .await;
    let to_a = next_with(&mut a_stream, "notifications/resources/updated").await;
    assert_eq!(to_a["params"]["uri"], uris[0].as_str(), "{to_a}");
    // b's first update is its own resource: a's, sent before it, was not relayed to b.
    let to_b = next_with(&mut b_stream, "notifications/resources/updated").await;
    assert_eq!(to_b["params"]["uri"], uris[1].as_str(), "{to_b}");
    let next_to_a = next_with(&mut a_stream, "notifications/resources/updated").await;
    assert_eq!(next_to_a["params"]["uri"], uris[0].as_str(), "{next_to_a}");

    // Unsubscribing b's last hold is relayed upstream (the upstream acknowledges it).
    let gone = legacy_rpc(
        &url,
        &b,
        8,
        "resources/unsubscribe",
        serde_json::json!({"uri": uris[1]}),
    )
    .await;
    assert!(logged(&gone, "Unsubscribe"), "{gone:?}");
}

/// A modern client's `subscriptions/listen` with `resourceSubscriptions` (a namespaced URI)
/// subscribes upstream and relays the updates on the listen stream, tagged with the
/// subscription id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_clients_listen_to_resource_updates_through_fortress() {
    let (_f, url, _d) = fortress_with(&stdio_everything_upstream(), true);
    let modern_headers = |method: &'static str| {
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ]
    };
    let listed = common::post(
        &url,
        &modern_headers("resources/list"),
        common::modern("resources/list", 1, serde_json::json!({})),
    )
    .await;
    let uri = listed.json()["result"]["resources"][0]["uri"]
        .as_str()
        .expect("a resource")
        .to_owned();
    assert!(uri.starts_with("up__"), "{uri}");

    let mut listen = open_stream(
        http::Method::POST,
        &url,
        &modern_headers("subscriptions/listen"),
        common::modern(
            "subscriptions/listen",
            42,
            serde_json::json!({"notifications": {
                "resourceSubscriptions": [uri, "nope__demo://x"],
                "toolsListChanged": true
            }}),
        ),
    )
    .await;
    let ack = next_with(&mut listen, "notifications/subscriptions/acknowledged").await;
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    // A URI of no upstream is not accepted.
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        serde_json::json!([uri]),
        "{ack}"
    );

    let toggled = common::post(
        &url,
        &{
            let mut h = modern_headers("tools/call");
            h.push(("mcp-name", "up__toggle-subscriber-updates"));
            h
        },
        common::modern(
            "tools/call",
            2,
            serde_json::json!({"name": "up__toggle-subscriber-updates", "arguments": {}}),
        ),
    )
    .await;
    assert_eq!(toggled.status, 200, "{}", toggled.body);
    let update = next_with(&mut listen, "notifications/resources/updated").await;
    assert_eq!(update["params"]["uri"], uri.as_str(), "{update}");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
}
