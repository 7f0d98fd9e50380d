//! `fortress-mcp demo` through the real binary: it prints its URL and API key, refuses
//! clients without the key, lists the helpdesk tools, answers a search with the requester's
//! e-mail masked, applies the demo policy, is reachable through the printed `fortress-mcp
//! connect` command, and shuts down cleanly on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{modern, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const BANNER: &str = "MCP Fortress demo is listening on ";

#[tokio::test]
async fn the_demo_binary_serves_a_governed_helpdesk() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("FORTRESS_LOG", "warn")
        .env_remove("FORTRESS_MASTER_KEY")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push(line.clone());
            if let Some(url) = line.strip_prefix(BANNER) {
                return url.trim().to_owned();
            }
        }
        panic!("the demo ended without printing its URL: {printed:?}");
    })
    .await
    .expect("the demo prints its URL");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    // The rest of the instructions, up to their last line: copy-paste commands to connect.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
            if line.contains("(denied by policy)") {
                break;
            }
        }
        rest
    })
    .await
    .expect("the instructions are printed at once");
    let key = rest
        .lines()
        .find(|l| l.starts_with("API key"))
        .and_then(|l| l.split_whitespace().last())
        .expect("the demo prints its API key")
        .to_owned();
    assert!(key.starts_with("fmk_"), "{key}");
    let connect = format!("fortress-mcp connect {url} --header \"x-api-key: {key}\"");
    assert!(rest.contains(&connect), "{rest}");

    // Without the key: 401 and where to learn how to authenticate.
    let initialize = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let anonymous = post(&url, &[], initialize.clone()).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(
        anonymous.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer resource_metadata=")
    );
    let wrong = post(&url, &[("x-api-key", "fmk_0_0")], initialize.clone()).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);

    let opened = post(&url, &[("x-api-key", &key)], initialize).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let session = opened.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let rpc = |id: i64, method: &str, params: Value| {
        let (url, session, key) = (url.clone(), session.clone(), key.clone());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        async move {
            let reply = post(
                &url,
                &[("mcp-session-id", &session), ("x-api-key", &key)],
                body,
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.json()
        }
    };

    let tools = rpc(1, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"zendesk__search_tickets"), "{names:?}");
    assert!(names.contains(&"zendesk__update_ticket"), "{names:?}");

    // The seeded refund ticket comes back with its requester's e-mail and phone masked.
    let found = rpc(
        2,
        "tools/call",
        json!({"name": "zendesk__search_tickets", "arguments": {"query": "refund"}}),
    )
    .await;
    let result = &found["result"];
    assert_eq!(result["isError"], false, "{found}");
    let ticket = &result["structuredContent"]["tickets"][0];
    assert_eq!(ticket["subject"], "Refund for order #4821", "{found}");
    let description = ticket["description"].as_str().unwrap();
    assert!(
        !found.to_string().contains("jane.roe@example.com"),
        "{found}"
    );
    assert!(description.contains("[EMAIL"), "{description}");

    // The demo policy forbids closing tickets.
    let denied = rpc(
        3,
        "tools/call",
        json!({"name": "zendesk__update_ticket", "arguments": {"ticket_id": 1, "status": "closed"}}),
    )
    .await;
    assert_eq!(
        denied["error"]["code"],
        fortress_mcp::seam::FORBIDDEN,
        "{denied}"
    );
    let allowed = rpc(
        4,
        "tools/call",
        json!({"name": "zendesk__update_ticket", "arguments": {"ticket_id": 1, "status": "pending"}}),
    )
    .await;
    assert_eq!(
        allowed["result"]["structuredContent"]["status"], "pending",
        "{allowed}"
    );

    // A modern-era client (stateless, no session) reaches the connector too.
    let reply = post(
        &url,
        &[
            ("x-api-key", &key),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "zendesk__get_ticket"),
        ],
        modern(
            "tools/call",
            5,
            json!({"name": "zendesk__get_ticket", "arguments": {"ticket_id": 3}}),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let modern_result = &reply.json()["result"];
    assert_eq!(modern_result["resultType"], "complete", "{}", reply.body);
    assert_eq!(
        modern_result["structuredContent"]["subject"],
        "Invoice address change"
    );
    assert!(
        !reply.body.contains("priya.n@example.net"),
        "{}",
        reply.body
    );

    // The printed stdio bridge command, with the key, reaches the helpdesk.
    let bridged = bridge(&url, &key).await;
    assert_eq!(
        bridged["result"]["structuredContent"]["subject"], "Invoice address change",
        "{bridged}"
    );

    // SIGTERM: a graceful stop.
    let pid = child.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(dir.path().join("data/policy/demo.cedar").exists());
    assert!(dir.path().join("data/audit.sqlite3").exists());
}

/// Runs `fortress-mcp connect URL --header "x-api-key: KEY"` and calls `get_ticket` through
/// it (initialize, initialized, tools/call); returns the call's answer.
async fn bridge(url: &str, key: &str) -> Value {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
        .args(["connect", url, "--header", &format!("x-api-key: {key}")])
        .env("FORTRESS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the bridge starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |message: Value| {
        let mut line = message.to_string();
        line.push('\n');
        stdin.write_all(line.as_bytes()).await.unwrap();
    };
    let mut answer = async |id: i64| {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let message: Value = serde_json::from_str(&line).unwrap();
                if message["id"] == id {
                    return message;
                }
            }
            panic!("the bridge ended before answering {id}");
        })
        .await
        .expect("the bridge answers")
    };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    let opened = answer(1).await;
    assert_eq!(
        opened["result"]["protocolVersion"], "2025-06-18",
        "{opened}"
    );
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"zendesk__get_ticket","arguments":{"ticket_id":3}}}))
    .await;
    answer(2).await
}
