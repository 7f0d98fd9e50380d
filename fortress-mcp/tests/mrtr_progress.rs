//! A modern client's call parked for input (an upstream question mid-call, turned into an
//! `input_required` result) keeps its progress when the client's retry resumes it, and a
//! modern request that cannot return `input_required` is never parked.
//!
//! This reproduces, deterministically, what made the modern-client/legacy-stdio interop test
//! flaky: `server-everything` asks `roots/list` 350 ms after `initialize`, unrelated to any
//! request; over stdio Fortress routes it to the call in flight, which for a modern client is
//! parked. The client's retry is a new request with a new progress token, and the resumed
//! call's progress was relayed under the first request's token, which the client no longer
//! tracked, so every later progress notification was dropped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::post;
use fortress_mcp::jsonrpc::{ErrorObject, Notification};
use fortress_mcp::server::ServerConfig;
use fortress_mcp::upstream::{CallContext, ServerDescription, Upstream};
use fortress_mcp::version::Era;
use fortress_mcp::virtual_server::Naming;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// An upstream that asks the client for its roots in the middle of its work.
struct AskingUpstream {
    notifications: broadcast::Sender<Notification>,
    /// Set when a `tools/list` question was answered (it must not be).
    list_question_answered: AtomicBool,
}

fn progress(token: &Value, value: u64) -> Notification {
    let mut params = Map::new();
    params.insert("progressToken".into(), token.clone());
    params.insert("progress".into(), Value::from(value));
    Notification::new("notifications/progress", Some(params))
}

#[async_trait]
impl Upstream for AskingUpstream {
    fn name(&self) -> &str {
        "asking"
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        match method {
            // Progress, a question, more progress: the stdio upstream's token as it arrives.
            "tools/call" => {
                let token = params
                    .as_ref()
                    .and_then(|p| p.get("_meta"))
                    .and_then(|m| m.get("progressToken"))
                    .cloned()
                    .unwrap_or(Value::Null);
                ctx.notify(progress(&token, 1)).await;
                let roots = ctx.ask("roots/list", None).await?;
                ctx.notify(progress(&token, 2)).await;
                ctx.notify(progress(&token, 3)).await;
                Ok(json!({"content": [{"type": "text", "text": roots.to_string()}]}))
            }
            "tools/list" => {
                if ctx.ask("roots/list", None).await.is_ok() {
                    self.list_question_answered.store(true, Ordering::SeqCst);
                }
                Ok(json!({"tools": [{"name": "work", "inputSchema": {"type": "object"}}]}))
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        Ok(ServerDescription {
            era: Era::Legacy,
            protocol_version: "2025-11-25".into(),
            capabilities: json!({"tools": {}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            server_info: None,
            instructions: None,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notifications.subscribe()
    }
}

async fn serve() -> (common::Running, Arc<AskingUpstream>) {
    let upstream = Arc::new(AskingUpstream {
        notifications: broadcast::channel(4).0,
        list_question_answered: AtomicBool::new(false),
    });
    let naming = Naming {
        prefix: false,
        ..Naming::default()
    };
    let running = common::serve(
        vec![upstream.clone() as Arc<dyn Upstream>],
        naming,
        ServerConfig::default(),
        None,
    )
    .await;
    (running, upstream)
}

/// A modern request from a client that declares `roots`, with `extra` params.
fn modern(method: &str, id: i64, mut params: Value, progress_token: Option<&str>) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"roots": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    });
    if let Some(token) = progress_token {
        params["_meta"]["progressToken"] = Value::from(token);
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn call(url: &str, body: Value) -> Vec<Value> {
    let method = body["method"].as_str().unwrap_or_default().to_owned();
    let name = body["params"]["name"].as_str().map(str::to_owned);
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method.as_str()),
    ];
    if let Some(name) = &name {
        headers.push(("mcp-name", name.as_str()));
    }
    let reply = post(url, &headers, body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    if reply.headers["content-type"] == "text/event-stream" {
        reply.sse_messages()
    } else {
        vec![reply.json()]
    }
}

fn progress_of(messages: &[Value]) -> Vec<(Value, Value)> {
    messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_resumed_call_relays_progress_under_the_retrys_token() {
    let (s, _) = serve().await;
    let first = call(
        &s.url,
        modern("tools/call", 1, json!({"name": "work"}), Some("first")),
    )
    .await;
    let asked = first.last().expect("a final response");
    assert_eq!(asked["id"], 1);
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    assert_eq!(
        asked["result"]["inputRequests"]["fortress"]["method"],
        "roots/list"
    );
    assert_eq!(
        progress_of(&first),
        vec![(json!("first"), json!(1))],
        "progress before the question goes to the first request"
    );
    let state = asked["result"]["requestState"].clone();

    let retry = call(
        &s.url,
        modern(
            "tools/call",
            2,
            json!({
                "name": "work",
                "requestState": state,
                "inputResponses": {"fortress": {"roots": []}},
            }),
            Some("retry"),
        ),
    )
    .await;
    let done = retry.last().expect("a final response");
    assert_eq!(done["id"], 2);
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], r#"{"roots":[]}"#,
        "the client's answer reached the upstream"
    );
    assert_eq!(
        progress_of(&retry),
        vec![(json!("retry"), json!(2)), (json!("retry"), json!(3))],
        "the resumed call's progress carries the retry's own token"
    );
}

#[tokio::test]
async fn a_retry_without_a_progress_token_gets_no_progress() {
    let (s, _) = serve().await;
    let first = call(
        &s.url,
        modern("tools/call", 1, json!({"name": "work"}), Some("first")),
    )
    .await;
    let state = first.last().expect("a final response")["result"]["requestState"].clone();
    let retry = call(
        &s.url,
        modern(
            "tools/call",
            2,
            json!({
                "name": "work",
                "requestState": state,
                "inputResponses": {"fortress": {"roots": []}},
            }),
            None,
        ),
    )
    .await;
    assert_eq!(retry.len(), 1, "only the final response: {retry:?}");
    assert_eq!(retry[0]["result"]["resultType"], "complete");
}

#[tokio::test]
async fn a_modern_list_is_never_parked_for_an_upstream_question() {
    let (s, upstream) = serve().await;
    let listed = call(&s.url, modern("tools/list", 1, json!({}), None)).await;
    let result = &listed.last().expect("a final response")["result"];
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_eq!(result["tools"][0]["name"], "work");
    assert!(
        !upstream.list_question_answered.load(Ordering::SeqCst),
        "tools/list cannot return input_required, so its question is refused"
    );
}
