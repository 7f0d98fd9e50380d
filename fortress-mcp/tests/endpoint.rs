//! The client-facing endpoint against in-process upstreams: both eras, bad input, namespacing,
//! pagination, cancellation, and the governance seam with the real core stack.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeUpstream, initialize, modern, post, send};
use fortress_core::prelude::*;
use fortress_mcp::server::ServerConfig;
use fortress_mcp::upstream::Upstream;
use fortress_mcp::virtual_server::Naming;
use serde_json::{Value, json};

fn one(upstream: Arc<FakeUpstream>) -> Vec<Arc<dyn Upstream>> {
    vec![upstream as Arc<dyn Upstream>]
}

async fn transparent() -> (common::Running, Arc<FakeUpstream>) {
    let upstream = FakeUpstream::new("fake", 3, 2);
    let naming = Naming {
        prefix: false,
        ..Naming::default()
    };
    let running = common::serve(one(upstream.clone()), naming, ServerConfig::default(), None).await;
    (running, upstream)
}

#[tokio::test]
async fn malformed_json_is_32700_and_invalid_request_is_32600() {
    let (s, _) = transparent().await;
    let reply = send(http::Method::POST, &s.url, &[], "{not json").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32700);
    let reply = post(
        &s.url,
        &[],
        json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32600);
}

#[tokio::test]
async fn unknown_method_is_32601_in_both_eras() {
    let (s, _) = transparent().await;
    let session = initialize(&s.url).await;
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":2,"method":"nope/nothing"}),
    )
    .await;
    assert_eq!(reply.json()["error"]["code"], -32601);
    assert_eq!(reply.json()["id"], 2);
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "nope/nothing"),
        ],
        modern("nope/nothing", 3, json!({})),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], -32601);
}

#[tokio::test]
async fn unsupported_protocol_version_lists_supported_versions() {
    let (s, _) = transparent().await;
    let mut body = modern("tools/list", 4, json!({}));
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("1900-01-01");
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "1900-01-01"),
            ("mcp-method", "tools/list"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], -32022);
    assert_eq!(error["data"]["requested"], "1900-01-01");
    let supported: Vec<&str> = error["data"]["supported"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(supported.contains(&"2026-07-28") && supported.contains(&"2025-11-25"));
}

#[tokio::test]
async fn modern_headers_must_match_the_body() {
    let (s, _) = transparent().await;
    let body = modern("tools/call", 5, json!({"name": "x", "arguments": {}}));
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "y"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32020);
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.json()["error"]["code"], -32020, "missing Mcp-Name");
    let mut no_caps = modern("tools/list", 6, json!({}));
    no_caps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        no_caps,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32602);
}

#[tokio::test]
async fn unknown_session_is_404_and_delete_ends_a_session() {
    let (s, _) = transparent().await;
    let reply = post(
        &s.url,
        &[("mcp-session-id", "no-such-session")],
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(reply.status, 404);
    let session = initialize(&s.url).await;
    let reply = send(
        http::Method::DELETE,
        &s.url,
        &[("mcp-session-id", &session)],
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let upstream = FakeUpstream::new("fake", 1, 1);
    let config = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let s = common::serve(one(upstream), Naming::default(), config, None).await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad": "x".repeat(4096)}});
    let reply = post(&s.url, &[], big).await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn foreign_origins_are_refused_and_loopback_ones_allowed() {
    let (s, _) = transparent().await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}});
    let reply = post(&s.url, &[("origin", "http://evil.example")], ping.clone()).await;
    assert_eq!(reply.status, 403);
    let reply = post(&s.url, &[("origin", "http://localhost:5173")], ping).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn legacy_and_modern_clients_see_the_same_tools_transparently() {
    let (s, _) = transparent().await;
    let session = initialize(&s.url).await;
    let legacy = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":7,"method":"tools/list"}),
    )
    .await
    .json();
    assert_eq!(legacy["id"], 7);
    assert_eq!(legacy["result"]["tools"][0]["name"], "tool0");
    assert_eq!(
        legacy["result"]["nextCursor"], "p2",
        "upstream cursor passes through"
    );
    assert!(legacy["result"].get("resultType").is_none());
    let modern_reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        modern("tools/list", 8, json!({"cursor": "p2"})),
    )
    .await
    .json();
    assert_eq!(modern_reply["result"]["tools"][0]["name"], "tool2");
    // A modern request is stateless even when it carries a (stale) session header.
    let stale = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-session-id", "stale"),
        ],
        modern("tools/list", 9, json!({})),
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(modern_reply["result"]["resultType"], "complete");
    assert_eq!(modern_reply["result"]["cacheScope"], "private");
    assert!(modern_reply["result"].get("nextCursor").is_none());
}

#[tokio::test]
async fn server_discover_answers_modern_clients() {
    let (s, _) = transparent().await;
    let reply = post(
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        modern("server/discover", 1, json!({})),
    )
    .await
    .json();
    let result = &reply["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(result["resultType"], "complete");
}

#[tokio::test]
async fn namespaced_aggregation_routes_calls_and_walks_every_page() {
    let a = FakeUpstream::new("alpha", 3, 2);
    let b = FakeUpstream::new("beta", 1, 5);
    let naming = Naming {
        separator: ".".into(),
        prefix: true,
    };
    let s = common::serve(
        vec![a as Arc<dyn Upstream>, b as Arc<dyn Upstream>],
        naming,
        ServerConfig::default(),
        None,
    )
    .await;
    let session = initialize(&s.url).await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..10 {
        let mut params = json!({});
        if let Some(c) = &cursor {
            params["cursor"] = json!(c);
        }
        let reply = post(
            &s.url,
            &[("mcp-session-id", &session)],
            json!({"jsonrpc":"2.0","id":page,"method":"tools/list","params":params}),
        )
        .await
        .json();
        for tool in reply["result"]["tools"].as_array().unwrap() {
            names.push(tool["name"].as_str().unwrap().to_owned());
        }
        cursor = reply["result"]["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        names,
        ["alpha.tool0", "alpha.tool1", "alpha.tool2", "beta.tool0"]
    );
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"beta.tool0","arguments":{"q":1}}}),
    )
    .await
    .json();
    assert_eq!(reply["id"], "c");
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "beta:tool0:{\"q\":1}"
    );
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"gamma.tool0"}}),
    )
    .await
    .json();
    assert_eq!(reply["error"]["code"], -32602);
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":10,"method":"tools/list","params":{"cursor":"garbage!"}}),
    )
    .await
    .json();
    assert_eq!(reply["error"]["code"], -32602);
}

#[tokio::test]
async fn progress_streams_as_sse_with_the_clients_token() {
    let (s, _) = transparent().await;
    let session = initialize(&s.url).await;
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"progress","_meta":{"progressToken":"mine"}}}),
    )
    .await;
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let messages = reply.sse_messages();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0]["method"], "notifications/progress");
    assert_eq!(messages[0]["params"]["progressToken"], "mine");
    assert_eq!(messages[2]["id"], 11);
    assert_eq!(messages[2]["result"]["content"][0]["text"], "done");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let (s, upstream) = transparent().await;
    let session = initialize(&s.url).await;
    let url = s.url.clone();
    let request = tokio::spawn(async move {
        post(
            &url,
            &[("mcp-session-id", &session)],
            json!({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"hang"}}),
        )
        .await
    });
    // Wait until the upstream has the request, then drop the client connection.
    while upstream.calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    request.abort();
    tokio::time::timeout(Duration::from_secs(10), upstream.cancelled.cancelled())
        .await
        .expect("the upstream request is cancelled when the client goes away");
}

#[tokio::test]
async fn graceful_shutdown_stops_serving() {
    let (s, _) = transparent().await;
    s.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), s.task)
        .await
        .expect("shutdown finishes")
        .expect("task")
        .expect("serve ends cleanly");
}

fn governance(audit: Arc<MemoryAuditSink>, rules: Vec<AllowRule>) -> GovernanceStack {
    GovernanceStack::builder()
        .audit(audit)
        .policy(Arc::new(AllowListPolicy::new(rules)))
        .redactor(Arc::new(PatternRedactor::basic()))
        .vault(Arc::new(MemoryVault::new()))
        .credential_slots(Arc::new(|_: &Call| None))
        .responder(Arc::new(fortress_mcp::seam::JsonRpcResponder))
        .build()
        .expect("stack")
}

#[tokio::test]
async fn a_denying_policy_through_the_real_stack_yields_a_json_rpc_error() {
    let audit = Arc::new(MemoryAuditSink::new());
    let stack = governance(
        audit.clone(),
        vec![
            AllowRule::anyone("tools/list", "*"),
            AllowRule::anyone("tools/call", "tool:fake/allowed"),
        ],
    );
    let upstream = FakeUpstream::new("fake", 2, 5);
    let s = common::serve(
        one(upstream.clone()),
        Naming::default(),
        ServerConfig::default(),
        Some(&stack),
    )
    .await;
    let session = initialize(&s.url).await;
    let denied = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"fake__secret","arguments":{}}}),
    )
    .await;
    assert_eq!(denied.status, 200);
    let denied = denied.json();
    assert_eq!(
        denied["id"], 21,
        "the denial carries the client's request id"
    );
    assert_eq!(denied["error"]["code"], fortress_mcp::seam::FORBIDDEN);
    assert_eq!(denied["error"]["message"], "denied by policy");
    assert_eq!(denied["error"]["data"]["denial"], "forbidden");
    assert_eq!(
        upstream.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "never reached the upstream"
    );
    let allowed = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"fake__allowed","arguments":{"x":1}}}),
    )
    .await
    .json();
    assert_eq!(
        allowed["result"]["content"][0]["text"],
        "fake:allowed:{\"x\":1}"
    );
    let events = audit.wait_for(2).await;
    let outcomes: Vec<String> = events.iter().map(|e| format!("{:?}", e.outcome)).collect();
    assert!(
        outcomes.iter().any(|o| o.contains("Denied")),
        "{outcomes:?}"
    );
    let described = events
        .iter()
        .find(|e| format!("{:?}", e.outcome).contains("Denied"))
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    assert!(
        described.contains("secret") && described.contains("fake"),
        "{described}"
    );
}

#[tokio::test]
async fn batches_are_served_in_2025_03_26_sessions_only() {
    let (s, _) = transparent().await;
    let reply = post(
        &s.url,
        &[],
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{}}}),
    )
    .await;
    let old = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tool0","arguments":{}}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{}},
        {"jsonrpc":"2.0","id":2,"method":"ping"},
        {"jsonrpc":"2.0","id":3}
    ]);
    let answers = post(&s.url, &[("mcp-session-id", &old)], batch.clone())
        .await
        .json();
    let answers = answers.as_array().expect("an array of responses");
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "fake:tool0:{}");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[2]["error"]["code"], -32600);
    let newer = initialize(&s.url).await;
    let refused = post(&s.url, &[("mcp-session-id", &newer)], batch).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["code"], -32600);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let upstream = FakeUpstream::new("fake", 1, 1);
    let config = ServerConfig {
        session_idle_timeout: Duration::ZERO,
        ..ServerConfig::default()
    };
    let s = common::serve(one(upstream), Naming::default(), config, None).await;
    let session = initialize(&s.url).await;
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(reply.status, 404, "a session idle past the timeout is gone");
}

/// Opens a streaming request and returns a receiver of its body chunks.
async fn open_stream(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (u16, tokio::sync::mpsc::Receiver<String>) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = client
        .request(
            builder
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut body = response.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx
                    .send(String::from_utf8_lossy(&data).into_owned())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    (status, rx)
}

async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<String>) -> Value {
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event in time")
            .expect("the stream is open");
        if let Some(data) = chunk.lines().find_map(|l| l.strip_prefix("data: ")) {
            return serde_json::from_str(data).expect("JSON event");
        }
    }
}

#[tokio::test]
async fn list_changes_reach_modern_listeners_and_legacy_get_streams() {
    let (s, upstream) = transparent().await;
    let listen = modern(
        "subscriptions/listen",
        31,
        json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}}),
    );
    let (status, mut modern_stream) = open_stream(
        http::Method::POST,
        &s.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "subscriptions/listen"),
        ],
        listen.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let ack = next_event(&mut modern_stream).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        31
    );

    let session = initialize(&s.url).await;
    let (status, mut legacy_stream) = open_stream(
        http::Method::GET,
        &s.url,
        &[("mcp-session-id", &session)],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);

    // Both streams subscribed before their response heads were sent; now the upstream speaks.
    let changed =
        fortress_mcp::jsonrpc::Notification::new("notifications/tools/list_changed", None);
    upstream
        .notifications
        .send(changed)
        .expect("the virtual server listens to its upstream");
    let relayed = next_event(&mut modern_stream).await;
    assert_eq!(relayed["method"], "notifications/tools/list_changed");
    assert_eq!(
        relayed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        31
    );
    let relayed = next_event(&mut legacy_stream).await;
    assert_eq!(relayed["method"], "notifications/tools/list_changed");

    // Graceful shutdown ends the listen stream with the subscription's result.
    s.stop.cancel();
    let closing = next_event(&mut modern_stream).await;
    assert_eq!(closing["id"], 31);
    assert_eq!(
        closing["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        31
    );
}

#[tokio::test]
async fn notifications_cancelled_cancels_the_upstream_request() {
    let (s, upstream) = transparent().await;
    let session = initialize(&s.url).await;
    let (url, id) = (s.url.clone(), session.clone());
    let request = tokio::spawn(async move {
        post(
            &url,
            &[("mcp-session-id", &id)],
            json!({"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"hang"}}),
        )
        .await
    });
    while upstream.calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let reply = post(
        &s.url,
        &[("mcp-session-id", &session)],
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user"}}),
    )
    .await;
    assert_eq!(reply.status, 202);
    tokio::time::timeout(Duration::from_secs(10), upstream.cancelled.cancelled())
        .await
        .expect("the upstream request is cancelled");
    let answered = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the cancelled request ends")
        .expect("task");
    assert_eq!(answered.json()["id"], "slow-1");
}
