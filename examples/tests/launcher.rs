//! The one-command launcher, in-process on ephemeral ports with a temporary data dir: a PAT
//! call with the printed key and an MCP tools/call both show in the one dashboard's traffic
//! history, and one workspace kill switch engaged through the admin API refuses the next
//! call of each (both demos share one workspace).

use std::time::{Duration, Instant};

use fortress_examples::launcher::{LaunchOptions, OWNER, launch};
use serde_json::{Value, json};

fn ephemeral() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn pat_call(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "Hi, I am bob@example.com"}]}))
        .send()
        .await
        .expect("the PAT gateway answers")
}

async fn mcp_call(client: &reqwest::Client, url: &str, key: &str, id: i64) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "zendesk__get_ticket", "arguments": {"ticket_id": 3},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
        }
    }});
    let reply = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", key)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "zendesk__get_ticket")
        .json(&body)
        .send()
        .await
        .expect("the MCP gateway answers");
    assert_eq!(reply.status(), 200);
    reply.json().await.expect("a JSON-RPC answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_starts_both_gateways_under_one_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let fortress = launch(LaunchOptions {
        mcp_listen: ephemeral(),
        pat_listen: ephemeral(),
        dashboard_listen: ephemeral(),
        data_dir: dir.path().join("data"),
    })
    .await
    .expect("everything starts");

    // What a new user reads: the three URLs, the key, the login.
    let printed = fortress.instructions();
    let key = fortress.pat_key.expose_str().unwrap().to_owned();
    let mcp_key = fortress.mcp_key.expose_str().unwrap().to_owned();
    let password = fortress
        .owner_password
        .as_ref()
        .and_then(|p| p.expose_str())
        .expect("a fresh data dir creates the owner")
        .to_owned();
    for needle in [
        fortress.mcp_url.as_str(),
        &format!(
            "claude mcp add --transport http fortress-demo {}",
            fortress.mcp_url
        ),
        &format!("curl {}/v1/messages", fortress.pat_url),
        &key,
        &mcp_key,
        &fortress.dashboard_url,
        &password,
    ] {
        assert!(
            printed.contains(needle),
            "{needle:?} missing from:\n{printed}"
        );
    }

    let client = reqwest::Client::new();
    let pat = pat_call(&client, &fortress.pat_url, &key).await;
    assert_eq!(pat.status(), 200);
    let answer: Value = pat.json().await.unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    let mcp = mcp_call(&client, &fortress.mcp_url, &mcp_key, 1).await;
    assert_eq!(
        mcp["result"]["structuredContent"]["subject"], "Invoice address change",
        "{mcp}"
    );

    // The dashboard: log in, see both calls in the traffic history.
    let dash = fortress.dashboard_url.trim_end_matches('/').to_owned();
    let login = client
        .post(format!("{dash}/api/login"))
        .json(&json!({"username": OWNER, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let session: Value = login.json().await.unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    let traffic = |filter: &'static str| {
        let (client, dash, cookie) = (client.clone(), dash.clone(), cookie.clone());
        async move {
            let page: Value = client
                .get(format!("{dash}/api/traffic?{filter}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["events"].as_array().cloned().unwrap_or_default()
        }
    };
    // Recording is asynchronous: poll the history, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let claude = traffic("model=claude-sonnet-4-5").await;
        let helpdesk = traffic("connector=zendesk").await;
        if !claude.is_empty() && !helpdesk.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both calls in one history: {claude:?} {helpdesk:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Both gateways' policy sets are in the one editor.
    let (sets, status) = {
        let reply = client
            .get(format!("{dash}/api/policy"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let status = reply.status();
        (reply.json::<Value>().await.unwrap(), status)
    };
    assert_eq!(status, 200);
    assert_eq!(sets["sets"], json!(["pat", "mcp"]), "{sets}");

    // One workspace kill switch stops both gateways.
    let engage = |target: Value| {
        let (client, dash, cookie, csrf) =
            (client.clone(), dash.clone(), cookie.clone(), csrf.clone());
        async move {
            client
                .post(format!("{dash}/api/kill-switches"))
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .json(&json!({"target": target, "reason": "launcher test"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        engage(json!({"kind": "workspace", "workspace": fortress_core::admin::embedded::DEMO_WORKSPACE})).await,
        201
    );
    let refused = pat_call(&client, &fortress.pat_url, &key).await;
    assert_eq!(refused.status(), 403);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["type"], "permission_error", "{refused}");
    let stopped = mcp_call(&client, &fortress.mcp_url, &mcp_key, 2).await;
    assert!(
        stopped["error"].is_object() || stopped["result"]["isError"] == true,
        "{stopped}"
    );
    assert!(
        stopped
            .get("result")
            .is_none_or(|r| r.get("structuredContent").is_none())
    );

    // The dashboard manages MCP's connectors too.
    let connectors: Value = client
        .get(format!("{dash}/api/connectors"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(connectors.to_string().contains("zendesk"), "{connectors}");

    fortress.shutdown().await.expect("a clean stop");
    assert!(dir.path().join("data/audit.sqlite3").exists());
}
