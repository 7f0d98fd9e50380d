//! Helpers shared by the fortress-mcp integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use fortress_mcp::jsonrpc::{ErrorObject, Notification};
use fortress_mcp::server::{McpServer, ServerConfig};
use fortress_mcp::upstream::{CallContext, ServerDescription, Upstream};
use fortress_mcp::version::Era;
use fortress_mcp::virtual_server::{Naming, VirtualServer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// An in-process upstream with `count` tools named `tool0…`, paginated `page` per page.
pub struct FakeUpstream {
    pub name: String,
    pub count: usize,
    pub page: usize,
    pub cancelled: CancellationToken,
    pub calls: AtomicUsize,
    pub notifications: broadcast::Sender<Notification>,
}

impl FakeUpstream {
    pub fn new(name: &str, count: usize, page: usize) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            count,
            page,
            cancelled: CancellationToken::new(),
            calls: AtomicUsize::new(0),
            notifications: broadcast::channel(16).0,
        })
    }
}

#[async_trait]
impl Upstream for FakeUpstream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let params = params.unwrap_or_default();
        match method {
            "tools/list" => {
                let start: usize = params
                    .get("cursor")
                    .and_then(Value::as_str)
                    .and_then(|c| c.strip_prefix("p"))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let end = (start + self.page).min(self.count);
                let tools: Vec<Value> = (start..end)
                    .map(|i| json!({"name": format!("tool{i}"), "inputSchema": {"type": "object"}}))
                    .collect();
                let mut result = json!({ "tools": tools });
                if end < self.count {
                    result["nextCursor"] = Value::from(format!("p{end}"));
                }
                Ok(result)
            }
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                match name {
                    "hang" => {
                        // Waits until the client's disconnect cancels the request.
                        ctx.cancel.cancelled().await;
                        self.cancelled.cancel();
                        Err(ErrorObject::new(-32001, "cancelled"))
                    }
                    "progress" => {
                        let token = params
                            .get("_meta")
                            .and_then(|m| m.get("progressToken"))
                            .cloned();
                        if let Some(token) = token {
                            for i in 1..=2 {
                                let mut p = Map::new();
                                p.insert("progressToken".into(), token.clone());
                                p.insert("progress".into(), Value::from(i));
                                ctx.notify(Notification::new("notifications/progress", Some(p)))
                                    .await;
                            }
                        }
                        Ok(json!({"content": [{"type": "text", "text": "done"}]}))
                    }
                    _ => Ok(json!({
                        "content": [{"type": "text", "text": format!("{}:{name}:{}", self.name, params.get("arguments").cloned().unwrap_or(Value::Null))}]
                    })),
                }
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        let capabilities = json!({"tools": {"listChanged": true}});
        Ok(ServerDescription {
            era: Era::Legacy,
            protocol_version: "2025-11-25".into(),
            capabilities: capabilities.as_object().cloned().unwrap_or_default(),
            server_info: Some(json!({"name": self.name, "version": "1"})),
            instructions: None,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notifications.subscribe()
    }
}

/// A running endpoint.
pub struct Running {
    pub url: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `upstreams` with `naming` through `seam` builder.
pub async fn serve(
    upstreams: Vec<Arc<dyn Upstream>>,
    naming: Naming,
    config: ServerConfig,
    governance: Option<&fortress_core::stack::GovernanceStack>,
) -> Running {
    let server = Arc::new(VirtualServer::new(upstreams, naming).expect("valid virtual server"));
    let seam = fortress_mcp::seam::seam_service(server.clone(), governance);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let path = config.path.clone();
    let endpoint = McpServer::new(config, server, seam);
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let task =
        tokio::spawn(async move { endpoint.serve(listener, signal.cancelled_owned()).await });
    Running {
        url: format!("http://{addr}{path}"),
        stop,
        task,
    }
}

/// What an HTTP exchange returned.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The JSON-RPC messages of an SSE body.
    pub fn sse_messages(&self) -> Vec<Value> {
        self.body
            .split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                (!data.is_empty())
                    .then(|| serde_json::from_str(&data.join("\n")).expect("SSE data is JSON"))
            })
            .collect()
    }
}

pub async fn send(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = client
        .request(builder.body(Full::new(body.into())).expect("request"))
        .await
        .expect("exchange");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    send(http::Method::POST, url, headers, body.to_string()).await
}

/// Modern request headers and `_meta` for `method`.
pub fn modern(method: &str, id: i64, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Starts a legacy session; returns its id.
pub async fn initialize(url: &str) -> String {
    let reply = post(
        url,
        &[],
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["result"]["protocolVersion"], "2025-06-18");
    reply
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned()
}
