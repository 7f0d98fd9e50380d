//! `fortress-mcp connect URL`: a stdio MCP server that forwards to a Streamable HTTP
//! endpoint, for clients that can only spawn stdio servers.
//!
//! Each line on stdin is one JSON-RPC message, POSTed as is; what comes back — a JSON
//! object or the messages of an SSE stream — is written to stdout one message per line.
//! The bridge is era-neutral: it keeps the `Mcp-Session-Id` a legacy `initialize` returns
//! (and opens the session's GET stream), and mirrors a modern request's `_meta` version,
//! method and name into the headers the modern transport requires.
//!
//! Extra headers (`--header "x-api-key: fmk_…"`, `--header "Authorization: Bearer …"`) go on
//! every request, so the bridge can reach an endpoint that authenticates its clients.
//!
//! ```
//! let header = fortress_mcp::bridge::parse_header("x-api-key: fmk_abc").unwrap();
//! assert_eq!(header.0, "x-api-key");
//! assert!(fortress_mcp::bridge::parse_header("no colon").is_err());
//! ```

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::jsonrpc::{ErrorObject, Message, Response, UPSTREAM_ERROR, parse_message};
use crate::sse::SseDecoder;
use crate::upstream::http::{
    METHOD_HEADER, NAME_HEADER, SESSION_HEADER, VERSION_HEADER, header_safe,
};
use crate::version::META_PROTOCOL_VERSION;

/// The bridge failed to start or its input broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The URL is not an `http://` URL.
    #[error("bad endpoint URL: {0}")]
    Url(String),
    /// A `--header` that is not `Name: value` (what is wrong, never the value itself).
    #[error("bad --header: {0} (expected \"Name: value\")")]
    Header(String),
    /// Reading stdin failed.
    #[error("reading stdin: {0}")]
    Stdin(#[source] std::io::Error),
}

#[derive(Default)]
struct State {
    session: Option<String>,
    version: Option<String>,
    /// Sent on every request (credentials: marked sensitive).
    headers: http::HeaderMap,
}

/// Parses a `Name: value` header argument. The value is marked sensitive (it is usually
/// a credential), and an invalid one is refused without echoing it.
pub fn parse_header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), BridgeError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| BridgeError::Header("no ':' between name and value".into()))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| BridgeError::Header("not a valid header name".into()))?;
    let mut value = http::HeaderValue::from_str(value.trim())
        .map_err(|_| BridgeError::Header(format!("the value of {name} is not valid")))?;
    value.set_sensitive(true);
    Ok((name, value))
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// Runs the bridge until stdin closes.
pub async fn run(url: &str) -> Result<(), BridgeError> {
    run_with_headers(url, &[]).await
}

/// Runs the bridge until stdin closes, sending `headers` (`Name: value`) on every request.
pub async fn run_with_headers(url: &str, headers: &[String]) -> Result<(), BridgeError> {
    let uri: Uri = url.parse().map_err(|e| BridgeError::Url(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(BridgeError::Url(
            "only http:// endpoints are supported".into(),
        ));
    }
    let mut extra = http::HeaderMap::new();
    for header in headers {
        let (name, value) = parse_header(header)?;
        extra.append(name, value);
    }
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let state = Arc::new(Mutex::new(State {
        headers: extra,
        ..State::default()
    }));
    let (out, mut lines_out) = mpsc::channel::<Bytes>(256);
    // Standard streams are read and written on their own threads: they block.
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        while let Some(line) = lines_out.blocking_recv() {
            if stdout.write_all(&line).is_err() || stdout.flush().is_err() {
                break;
            }
        }
    });
    let (lines_in, mut stdin) = mpsc::channel::<std::io::Result<String>>(64);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if lines_in.blocking_send(line).is_err() || stop {
                break;
            }
        }
    });
    while let Some(line) = stdin.recv().await {
        let line = line.map_err(BridgeError::Stdin)?;
        if line.trim().is_empty() {
            continue;
        }
        let message = match parse_message(line.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                let _ = out
                    .send(to_line(&Message::Response(Response::error(None, e))))
                    .await;
                continue;
            }
        };
        let (client, uri, state, out) = (client.clone(), uri.clone(), state.clone(), out.clone());
        tokio::spawn(async move { forward(client, uri, state, out, message, line).await });
    }
    let (session, extra) = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        (s.session.clone(), s.headers.clone())
    };
    if let Some(session) = session {
        let mut builder = http::Request::builder()
            .method(Method::DELETE)
            .uri(uri)
            .header(SESSION_HEADER, session);
        if let Some(headers) = builder.headers_mut() {
            headers.extend(extra);
        }
        if let Ok(request) = builder.body(Full::new(Bytes::new())) {
            let _ = client.request(request).await;
        }
    }
    drop(out);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    Ok(())
}

fn to_line(message: &Message) -> Bytes {
    let mut text = message.to_value().to_string();
    text.push('\n');
    Bytes::from(text)
}

async fn forward(
    client: Http,
    uri: Uri,
    state: Arc<Mutex<State>>,
    out: mpsc::Sender<Bytes>,
    message: Message,
    raw: String,
) {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream");
    let (session, version, extra) = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        (s.session.clone(), s.version.clone(), s.headers.clone())
    };
    if let Some(headers) = builder.headers_mut() {
        headers.extend(extra);
    }
    if let Some(session) = &session {
        builder = builder.header(SESSION_HEADER, session);
    }
    if let Message::Request(request) = &message {
        let modern = request
            .meta()
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);
        if let Some(v) = modern {
            builder = builder
                .header(VERSION_HEADER, v)
                .header(METHOD_HEADER, &request.method);
            let name = match request.method.as_str() {
                "tools/call" | "prompts/get" => request.str_param("name"),
                "resources/read" => request.str_param("uri"),
                _ => None,
            };
            if let Some(name) = name {
                builder = builder.header(NAME_HEADER, header_safe(name));
            }
        } else if let Some(v) = &version {
            builder = builder.header(VERSION_HEADER, v);
        }
    } else if let Some(v) = &version {
        builder = builder.header(VERSION_HEADER, v);
    }
    let id = message.id().cloned();
    let fail = |e: ErrorObject| to_line(&Message::Response(Response::error(id.clone(), e)));
    let Ok(request) = builder.body(Full::new(Bytes::from(raw))) else {
        return;
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => {
            if matches!(message, Message::Request(_)) {
                let _ = out
                    .send(fail(ErrorObject::new(
                        UPSTREAM_ERROR,
                        format!("endpoint unreachable: {e}"),
                    )))
                    .await;
            }
            return;
        }
    };
    let is_initialize = matches!(&message, Message::Request(r) if r.method == "initialize");
    if let Some(session) = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        state.lock().unwrap_or_else(|e| e.into_inner()).session = Some(session.to_owned());
    }
    let status = response.status();
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = response.into_body();
    if streaming {
        let mut decoder = SseDecoder::new(16 * 1024 * 1024);
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Ok(events) = decoder.push(&data) else {
                break;
            };
            for event in events.into_iter().filter(|e| !e.data().is_empty()) {
                let mut line = event.data().as_bytes().to_vec();
                line.push(b'\n');
                let _ = out.send(Bytes::from(line)).await;
            }
        }
        return;
    }
    let Ok(collected) = body.collect().await else {
        return;
    };
    let bytes = collected.to_bytes();
    match parse_message(&bytes) {
        Ok(answer) => {
            if is_initialize {
                if let Message::Response(Response {
                    outcome: Ok(result),
                    ..
                }) = &answer
                {
                    let v = result
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    state.lock().unwrap_or_else(|e| e.into_inner()).version = v;
                    open_stream(client.clone(), uri, state.clone(), out.clone());
                }
            }
            let _ = out.send(to_line(&answer)).await;
        }
        Err(_) if matches!(message, Message::Request(_)) => {
            let _ = out
                .send(fail(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!("endpoint answered HTTP {status}"),
                )))
                .await;
        }
        Err(_) => {}
    }
}

/// The legacy session's GET stream, relayed to stdout.
fn open_stream(client: Http, uri: Uri, state: Arc<Mutex<State>>, out: mpsc::Sender<Bytes>) {
    tokio::spawn(async move {
        let (session, version, extra) = {
            let s = state.lock().unwrap_or_else(|e| e.into_inner());
            (s.session.clone(), s.version.clone(), s.headers.clone())
        };
        let Some(session) = session else { return };
        let mut builder = http::Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::ACCEPT, "text/event-stream")
            .header(SESSION_HEADER, session);
        if let Some(headers) = builder.headers_mut() {
            headers.extend(extra);
        }
        if let Some(v) = version {
            builder = builder.header(VERSION_HEADER, v);
        }
        let Ok(request) = builder.body(Full::new(Bytes::new())) else {
            return;
        };
        let Ok(response) = client.request(request).await else {
            return;
        };
        if !response.status().is_success() {
            return;
        }
        let mut body = response.into_body();
        let mut decoder = SseDecoder::new(16 * 1024 * 1024);
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Ok(events) = decoder.push(&data) else {
                return;
            };
            for event in events.into_iter().filter(|e| !e.data().is_empty()) {
                let mut line = event.data().as_bytes().to_vec();
                line.push(b'\n');
                if out.send(Bytes::from(line)).await.is_err() {
                    return;
                }
            }
        }
    });
}
