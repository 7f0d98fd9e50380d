//! `fortress-mcp demo` through the real binary: it prints its URL, lists the helpdesk tools,
//! answers a search with the requester's e-mail masked, applies the demo policy, and shuts
//! down cleanly on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{initialize, modern, post};
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
    assert!(
        rest.contains(&format!("fortress-mcp connect {url}")),
        "{rest}"
    );

    let session = initialize(&url).await;
    let rpc = |id: i64, method: &str, params: Value| {
        let (url, session) = (url.clone(), session.clone());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        async move {
            let reply = post(&url, &[("mcp-session-id", &session)], body).await;
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
