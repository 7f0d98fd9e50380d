//! A minimal, fast, modern-era (2026-07-28) MCP upstream for load benchmarks: it answers
//! `server/discover`, `tools/list` and `tools/call` statelessly, with no work per call, so a
//! benchmark measures the gateway rather than the upstream.
//!
//! ```text
//! cargo run --release -p fortress-mcp --example fast_upstream -- 127.0.0.1:3100
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

async fn answer(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let reply = match method {
        "server/discover" => json!({"jsonrpc": "2.0", "id": id, "result": {
            "resultType": "complete", "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "public",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "fast", "version": "1"}}}}),
        "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {
            "resultType": "complete", "ttlMs": 0, "cacheScope": "public",
            "tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}}),
        "tools/call" => json!({"jsonrpc": "2.0", "id": id, "result": {
            "resultType": "complete", "content": [{"type": "text", "text": "ok"}]}}),
        _ => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})
        }
    };
    let mut response = http::Response::new(Full::new(Bytes::from(reply.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("fast upstream on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
