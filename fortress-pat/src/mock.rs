//! A local stand-in for the Claude API, realistic enough for the official SDKs: messages
//! (JSON and SSE), count_tokens, models and message batches. Tests and the demo start it on
//! an ephemeral port; it checks the injected `x-api-key` and records the headers it got.
//!
//! The reply echoes the last user text (`"Echo: …"`), streamed in small deltas, so content
//! the caller sends comes back and can be seen to be redacted. A few model names trigger
//! failures: `mock-stream-error` sends `event: error` mid-stream, `mock-truncate` ends a
//! stream without `message_stop`, `mock-overloaded` answers 529.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fortress_core::body::{self, Body};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sse::SseEvent;

/// The models the mock lists.
pub const MOCK_MODELS: [&str; 3] = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"];

/// How many requests the mock remembers (the oldest half is forgotten beyond that).
const MAX_RECORDED: usize = 8192;

/// What the mock recorded about one request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method and path.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
}

#[derive(Debug)]
struct State {
    api_key: String,
    delta_chars: usize,
    seen: Mutex<Vec<Recorded>>,
    /// Batch id → its requests (each ends at once; results are computed when read).
    batches: Mutex<std::collections::HashMap<String, Vec<Value>>>,
}

/// A running mock.
#[derive(Clone, Debug)]
pub struct MockClaude {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl MockClaude {
    /// Starts a mock on 127.0.0.1 that accepts `api_key`, streaming `delta_chars`
    /// characters per text delta.
    pub async fn start(api_key: &str, delta_chars: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            api_key: api_key.to_owned(),
            delta_chars: delta_chars.max(1),
            seen: Mutex::new(Vec::new()),
            batches: Mutex::new(std::collections::HashMap::new()),
        });
        let stop = CancellationToken::new();
        let (s, token) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                // Small SSE writes must not wait for delayed ACKs.
                let _ = stream.set_nodelay(true);
                let state = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, stop })
    }

    /// The base URL to point an upstream client at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("request-id", http::HeaderValue::from_static("req_mock"));
    response
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// Rough token count: a quarter of the characters, at least one.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn input_text(params: &Value) -> (String, String) {
    let mut all = text_of(params.get("system").unwrap_or(&Value::Null));
    let mut last_user = String::new();
    for message in params
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = text_of(message.get("content").unwrap_or(&Value::Null));
        all.push_str(&text);
        if message.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    (all, last_user)
}

fn model_object(id: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = request.into_parts();
    {
        let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded, so a long load benchmark does not grow the mock without end.
        if seen.len() >= MAX_RECORDED {
            seen.drain(..MAX_RECORDED / 2);
        }
        seen.push(Recorded {
            path: format!("{} {}", parts.method, parts.uri.path()),
            headers: parts.headers.clone(),
        });
    }
    let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.api_key.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    let bytes = match incoming.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let params: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::POST, "/v1/messages") => messages(state, &params),
        (&Method::POST, "/v1/messages/count_tokens") => {
            let (all, _) = input_text(&params);
            json_response(StatusCode::OK, &json!({"input_tokens": tokens(&all)}))
        }
        (&Method::GET, "/v1/models") => {
            let data: Vec<Value> = MOCK_MODELS.iter().map(|m| model_object(m)).collect();
            json_response(
                StatusCode::OK,
                &json!({"data": data, "has_more": false,
                        "first_id": MOCK_MODELS[0], "last_id": MOCK_MODELS[2]}),
            )
        }
        (&Method::GET, p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if MOCK_MODELS.contains(&id) {
                json_response(StatusCode::OK, &model_object(id))
            } else {
                error(StatusCode::NOT_FOUND, "not_found_error", "model not found")
            }
        }
        (&Method::POST, "/v1/messages/batches") => {
            let requests = params
                .get("requests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = requests.len();
            let id = format!("msgbatch_{}", uuid::Uuid::new_v4().simple());
            state
                .batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), requests);
            json_response(
                StatusCode::OK,
                &json!({"id": id, "type": "message_batch",
                    "processing_status": "in_progress",
                    "request_counts": {"processing": n, "succeeded": 0, "errored": 0,
                                       "canceled": 0, "expired": 0},
                    "ended_at": null, "created_at": "2025-01-01T00:00:00Z",
                    "expires_at": "2025-01-02T00:00:00Z", "cancel_initiated_at": null,
                    "results_url": null}),
            )
        }
        (&Method::GET, p) if p.starts_with("/v1/messages/batches/") => {
            let rest = &p["/v1/messages/batches/".len()..];
            let (id, results) = match rest.strip_suffix("/results") {
                Some(id) => (id, true),
                None => (rest, false),
            };
            let requests = state
                .batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned();
            match (requests, results) {
                (None, _) => error(StatusCode::NOT_FOUND, "not_found_error", "batch not found"),
                (Some(requests), false) => {
                    // Like the API: an absolute URL on the answering host.
                    let host = parts
                        .headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("localhost");
                    let results_url = format!("http://{host}/v1/messages/batches/{id}/results");
                    json_response(
                        StatusCode::OK,
                        &json!({"id": id, "type": "message_batch", "processing_status": "ended",
                        "request_counts": {"processing": 0, "succeeded": requests.len(),
                            "errored": 0, "canceled": 0, "expired": 0},
                        "ended_at": "2025-01-01T00:01:00Z", "created_at": "2025-01-01T00:00:00Z",
                        "expires_at": "2025-01-02T00:00:00Z", "cancel_initiated_at": null,
                        "results_url": results_url}),
                    )
                }
                (Some(requests), true) => batch_results(&requests),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found_error", "not found"),
    }
}

/// The JSONL results of a batch: each request answered as a non-streamed message.
fn batch_results(requests: &[Value]) -> Response<Body> {
    let mut out = String::new();
    for request in requests {
        let custom_id = request.get("custom_id").cloned().unwrap_or(Value::Null);
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let result = match reply(&params) {
            Ok(message) => json!({"type": "succeeded", "message": message}),
            Err((_, kind, message)) => json!({"type": "errored",
                "error": {"type": "error", "error": {"type": kind, "message": message}}}),
        };
        out.push_str(&json!({"custom_id": custom_id, "result": result}).to_string());
        out.push('\n');
    }
    let mut response = Response::new(body::full(out));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-jsonl"),
    );
    response
}

/// A whole (non-streamed) answer, or `(status, error type, message)`.
fn reply(params: &Value) -> Result<Value, (StatusCode, &'static str, &'static str)> {
    let model = params.get("model").and_then(Value::as_str).unwrap_or("");
    let Some(max_tokens) = params.get("max_tokens").and_then(Value::as_u64) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        ));
    };
    let (all, last_user) = input_text(params);
    let input_tokens = tokens(&all);
    let mut reply = format!("Echo: {last_user}");
    let mut stop_reason = "end_turn";
    let cap = usize::try_from(max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
    if reply.chars().count() > cap {
        reply = reply.chars().take(cap).collect();
        stop_reason = "max_tokens";
    }
    let output_tokens = tokens(&reply).min(max_tokens.max(1));
    let id = format!("msg_mock_{}", uuid::Uuid::new_v4().simple());
    Ok(
        json!({"id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
    )
}

fn messages(state: &State, params: &Value) -> Response<Body> {
    let model = params.get("model").and_then(Value::as_str).unwrap_or("");
    if model == "mock-overloaded" {
        return error(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        );
    }
    let message = match reply(params) {
        Ok(message) => message,
        Err((status, kind, text)) => return error(status, kind, text),
    };
    if params.get("stream").and_then(Value::as_bool) == Some(true) {
        let field = |path: &str| message.pointer(path).cloned().unwrap_or(Value::Null);
        let count = |path: &str| field(path).as_u64().unwrap_or(0);
        return stream(
            state,
            field("/id").as_str().unwrap_or_default(),
            model,
            field("/content/0/text").as_str().unwrap_or_default(),
            field("/stop_reason").as_str().unwrap_or("end_turn"),
            count("/usage/input_tokens"),
            count("/usage/output_tokens"),
        );
    }
    json_response(StatusCode::OK, &message)
}

/// The SSE events of a streamed reply, in the API's order.
pub fn stream_events(
    id: &str,
    model: &str,
    reply: &str,
    delta_chars: usize,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Vec<SseEvent> {
    let ev = |name: &str, value: Value| SseEvent::new(name, value.to_string());
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": id, "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    let chars: Vec<char> = reply.chars().collect();
    for chunk in chars.chunks(delta_chars.max(1)) {
        let text: String = chunk.iter().collect();
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    events
}

fn stream(
    state: &State,
    id: &str,
    model: &str,
    reply: &str,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Response<Body> {
    let mut events = stream_events(
        id,
        model,
        reply,
        state.delta_chars,
        stop_reason,
        input_tokens,
        output_tokens,
    );
    match model {
        "mock-stream-error" => {
            events.truncate(4);
            events.push(SseEvent::new(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    .to_string(),
            ));
        }
        "mock-truncate" => {
            let n = events.len();
            events.truncate(n - 1);
        }
        _ => {}
    }
    let frames = events
        .into_iter()
        .map(|e| Ok::<_, Infallible>(http_body::Frame::data(e.encode())));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut response = Response::new(body::boxed(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert("request-id", http::HeaderValue::from_static("req_mock"));
    response
}
