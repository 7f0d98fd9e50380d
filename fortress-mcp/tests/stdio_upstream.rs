//! A stdio upstream that crashes or hangs: the client gets a JSON-RPC error, and a crashed
//! upstream is restarted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{initialize, post};
use fortress_mcp::server::ServerConfig;
use fortress_mcp::upstream::Upstream;
use fortress_mcp::upstream::stdio::{StdioConfig, StdioUpstream};
use fortress_mcp::virtual_server::Naming;
use serde_json::{Value, json};

fn crashy() -> Arc<StdioUpstream> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/crashy_server.py");
    let mut config = StdioConfig::new("python3", [script.display().to_string()]);
    config.request_timeout = Duration::from_secs(3);
    config.probe_timeout = Duration::from_secs(5);
    config.backoff_initial = Duration::from_millis(20);
    Arc::new(StdioUpstream::spawn("crashy", config))
}

async fn call(url: &str, session: &str, id: i64, tool: &str) -> Value {
    post(
        url,
        &[("mcp-session-id", session)],
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}}),
    )
    .await
    .json()
}

#[tokio::test]
async fn a_crashing_upstream_answers_with_an_error_and_is_restarted() {
    let upstream = crashy();
    let naming = Naming {
        prefix: false,
        ..Naming::default()
    };
    let s = common::serve(
        vec![upstream.clone() as Arc<dyn Upstream>],
        naming,
        ServerConfig::default(),
        None,
    )
    .await;
    let session = initialize(&s.url).await;
    let first = call(&s.url, &session, 1, "pid").await;
    let first_pid = first["result"]["content"][0]["text"]
        .as_str()
        .expect("a pid")
        .to_owned();

    let crashed = call(&s.url, &session, 2, "crash").await;
    assert_eq!(crashed["id"], 2);
    assert_eq!(crashed["error"]["code"], -32001, "{crashed}");
    assert!(
        crashed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{crashed}"
    );

    // The next request waits for the restarted process.
    let again = call(&s.url, &session, 3, "pid").await;
    let second_pid = again["result"]["content"][0]["text"]
        .as_str()
        .expect("a pid after restart");
    assert_ne!(second_pid, first_pid, "a new process answers");
    assert!(upstream.starts() >= 2);
}

#[tokio::test]
async fn a_hanging_upstream_times_out_with_an_error_and_is_restarted() {
    let upstream = crashy();
    let s = common::serve(
        vec![upstream.clone() as Arc<dyn Upstream>],
        Naming::default(),
        ServerConfig::default(),
        None,
    )
    .await;
    let session = initialize(&s.url).await;
    let before = call(&s.url, &session, 1, "crashy__pid").await;
    let before = before["result"]["content"][0]["text"]
        .as_str()
        .expect("a pid")
        .to_owned();
    for id in [2, 3] {
        let reply = call(&s.url, &session, id, "crashy__hang").await;
        assert_eq!(reply["id"], id);
        assert_eq!(reply["error"]["code"], -32001);
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not answer"),
            "{reply}"
        );
    }
    // Two consecutive timeouts (the default threshold) restart the wedged process.
    let after = call(&s.url, &session, 4, "crashy__pid").await;
    let after = after["result"]["content"][0]["text"]
        .as_str()
        .expect("a pid after restart");
    assert_ne!(after, before);
    assert!(upstream.starts() >= 2);
}
