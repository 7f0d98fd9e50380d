//! Upstreams over Streamable HTTP, in either era.
//!
//! The era is detected per the specification (spec 2026-07-28, Streamable HTTP › Backward
//! Compatibility): Fortress first sends a modern `server/discover`; a result, or a recognized
//! modern error (`-32020`, `-32021`, `-32022`), means a modern server; anything else means a
//! legacy one, which Fortress then initializes and holds a session with (`Mcp-Session-Id`,
//! spec 2025-11-25, Transports › Session Management) for all its clients. The answer is
//! cached for the upstream's lifetime; a legacy session the upstream forgets (HTTP 404) is
//! re-established once per request.
//!
//! Responses may be a JSON object or an SSE stream carrying notifications and server
//! requests before the final response; both are handled.
//!
//! With [`HttpUpstream::with_credential`], every request made for a call carries a header
//! with the caller's vault credential ([`super::credential`]), resolved for that call only;
//! the handshake a call triggers carries that call's.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use fortress_core::workers::PerWorker;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::credential::{CredentialSource, HeaderTemplate};
use super::{CallContext, ProgressRoutes, ServerDescription, Upstream};
use crate::jsonrpc::{
    ErrorObject, HEADER_MISMATCH, Id, MISSING_REQUIRED_CLIENT_CAPABILITY, Message, Notification,
    Request, Response, UNSUPPORTED_PROTOCOL_VERSION, UPSTREAM_ERROR, parse_message,
};
use crate::sse::SseDecoder;
use crate::version::{ClientContext, Era, LATEST_LEGACY, LATEST_MODERN};

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Mcp-Method`.
pub const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name`.
pub const NAME_HEADER: &str = "mcp-name";

/// How to reach a Streamable HTTP upstream.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The MCP endpoint (`http://host:port/mcp`).
    pub url: String,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Largest JSON body or SSE event accepted.
    pub max_message_bytes: usize,
}

impl HttpConfig {
    /// The endpoint at `url` with default limits.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            request_timeout: Duration::from_secs(60),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug)]
struct Session {
    description: ServerDescription,
    id: Option<String>,
    /// The upstream turned out to speak the 2024-11-05 HTTP+SSE transport.
    via_sse: bool,
}

/// A Streamable HTTP upstream.
pub struct HttpUpstream {
    name: String,
    uri: Uri,
    config: HttpConfig,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The connections request/response exchanges use (the hot path), per serving worker
    /// so that each worker drives only connections registered with its own runtime.
    pool: PerWorker<Arc<super::pool::Pool>>,
    /// `Host` and the origin-form target of those exchanges.
    host: HeaderValue,
    target: Uri,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    era: Mutex<Option<Era>>,
    sse: Mutex<Option<Arc<super::peer::Peer>>>,
    next_id: AtomicI64,
    progress: ProgressRoutes,
    broadcast: broadcast::Sender<Notification>,
    stop: CancellationToken,
    /// Where the per-call credential header comes from, if the upstream takes one.
    credential: Option<(CredentialSource, HeaderTemplate)>,
}

/// The credential header of one call (sensitive; dropped with the call).
type AuthHeader = (http::HeaderName, HeaderValue);

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What one POST brought back (short-lived: one per exchange, so its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// The final response.
    Response(Response, HeaderMap, StatusCode),
    /// `202 Accepted` (or another body-less success).
    Accepted,
    /// An HTTP error without a JSON-RPC body.
    Status(StatusCode),
}

impl HttpUpstream {
    /// An upstream at `config.url`, connected lazily on first use.
    pub fn new(name: impl Into<String>, config: HttpConfig) -> Result<Self, ErrorObject> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| ErrorObject::new(UPSTREAM_ERROR, format!("bad upstream URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(ErrorObject::new(
                UPSTREAM_ERROR,
                "only http:// upstream URLs are supported",
            ));
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream URL has no host"))?;
        let host = HeaderValue::from_str(&authority)
            .map_err(|e| ErrorObject::new(UPSTREAM_ERROR, format!("bad upstream host: {e}")))?;
        let address = if uri.port_u16().is_some() {
            authority
        } else {
            format!("{authority}:80")
        };
        let target: Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e| ErrorObject::new(UPSTREAM_ERROR, format!("bad upstream URL: {e}")))?;
        Ok(Self {
            name: name.into(),
            pool: PerWorker::new(move || super::pool::Pool::new(address.clone())),
            host,
            target,
            uri,
            config,
            client: Client::builder(TokioExecutor::new()).build(connector()),
            session: tokio::sync::Mutex::new(None),
            era: Mutex::new(None),
            sse: Mutex::new(None),
            next_id: AtomicI64::new(1),
            progress: ProgressRoutes::default(),
            broadcast: broadcast::channel(256).0,
            stop: CancellationToken::new(),
            credential: None,
        })
    }

    /// Sends the vault credential `source` resolves for each call in the header `template`
    /// describes (e.g. `Authorization: Bearer {credential}`).
    #[must_use]
    pub fn with_credential(mut self, source: CredentialSource, template: HeaderTemplate) -> Self {
        self.credential = Some((source, template));
        self
    }

    /// The credential header for the call `ctx` serves (`None` when the upstream takes no
    /// credential). The credential itself is dropped, zeroized, before this returns.
    async fn auth_for(&self, ctx: &CallContext) -> Result<Option<AuthHeader>, ErrorObject> {
        let Some((source, template)) = &self.credential else {
            return Ok(None);
        };
        let credential = source
            .resolve(ctx.call.as_deref(), ctx.notes.as_ref())
            .await?;
        template.header(&credential, &self.name).map(Some)
    }

    fn next_id(&self) -> Id {
        Id::Number(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// POSTs one message and reads the answer; notifications and server requests that
    /// arrive on an SSE answer go to `ctx`.
    async fn post(
        &self,
        message: &Message,
        headers: &[(&'static str, String)],
        ctx: Option<&CallContext>,
        session: Option<&Session>,
        auth: Option<&AuthHeader>,
    ) -> Result<Answer, ErrorObject> {
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(self.target.clone())
            .header(http::header::HOST, self.host.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        if let Some((name, value)) = auth {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(message.to_bytes()))
            .map_err(ErrorObject::internal)?;
        let response =
            self.pool.get().send(request).await.map_err(|e| {
                ErrorObject::new(UPSTREAM_ERROR, format!("upstream unreachable: {e}"))
            })?;
        let status = response.status();
        let head = response.headers().clone();
        let content_type = head
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut body = response.into_body();
        if content_type.starts_with("text/event-stream") {
            let mut decoder = SseDecoder::new(self.config.max_message_bytes);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    ErrorObject::new(UPSTREAM_ERROR, format!("upstream stream broke: {e}"))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let events = decoder
                    .push(&data)
                    .map_err(|e| ErrorObject::new(UPSTREAM_ERROR, e.to_string()))?;
                for event in events {
                    if event.data().is_empty() {
                        continue;
                    }
                    match parse_message(event.data().as_bytes()) {
                        Ok(Message::Response(r)) => return Ok(Answer::Response(r, head, status)),
                        Ok(Message::Notification(n)) => self.on_notification(n, ctx).await,
                        Ok(Message::Request(r)) => self.on_request(r, ctx, session, auth),
                        Err(e) => tracing::warn!(upstream = %self.name, %e, "bad SSE event"),
                    }
                }
            }
            return Err(ErrorObject::new(
                UPSTREAM_ERROR,
                "upstream closed the stream before answering",
            ));
        }
        let bytes = http_body_util::Limited::new(body, self.config.max_message_bytes)
            .collect()
            .await
            .map_err(|e| ErrorObject::new(UPSTREAM_ERROR, format!("upstream body: {e}")))?
            .to_bytes();
        if bytes.is_empty() {
            return Ok(if status.is_success() {
                Answer::Accepted
            } else {
                Answer::Status(status)
            });
        }
        match parse_message(&bytes) {
            Ok(Message::Response(r)) => Ok(Answer::Response(r, head, status)),
            _ if status.is_success() => Ok(Answer::Accepted),
            _ => Ok(Answer::Status(status)),
        }
    }

    async fn on_notification(&self, n: Notification, ctx: Option<&CallContext>) {
        if n.method == "notifications/progress" {
            let _ = self.progress.route(n);
            return;
        }
        match ctx {
            // On a request's stream, notifications relate to that request.
            Some(ctx) => ctx.notify(n).await,
            None => {
                let _ = self.broadcast.send(n);
            }
        }
    }

    /// Relays a server request to the client and POSTs the answer back.
    fn on_request(
        &self,
        request: Request,
        ctx: Option<&CallContext>,
        session: Option<&Session>,
        auth: Option<&AuthHeader>,
    ) {
        let ctx = ctx.cloned();
        let headers = session.map(session_headers).unwrap_or_default();
        let auth = auth.cloned();
        let client = self.client.clone();
        let uri = self.uri.clone();
        tokio::spawn(async move {
            let outcome = match (&ctx, request.method.as_str()) {
                (_, "ping") => Ok(json!({})),
                (Some(ctx), method) => ctx.ask(method, request.params.clone()).await,
                (None, method) => Err(ErrorObject::method_not_found(method)),
            };
            let answer = Message::Response(Response {
                id: Some(request.id),
                outcome,
            });
            let mut builder = http::Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, text/event-stream");
            for (name, value) in &headers {
                builder = builder.header(*name, value);
            }
            if let Some((name, value)) = auth {
                builder = builder.header(name, value);
            }
            if let Ok(req) = builder.body(Full::new(answer.to_bytes())) {
                if let Ok(resp) = client.request(req).await {
                    let _ = resp.into_body().collect().await;
                }
            }
        });
    }

    /// The session, opened (with `auth`, the credential of the call that needs it) if
    /// there is none yet.
    async fn session(&self, auth: Option<&AuthHeader>) -> Result<Arc<Session>, ErrorObject> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref() {
            return Ok(session.clone());
        }
        let session = Arc::new(self.connect(auth).await?);
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn forget(&self, stale: &Session) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().map(|s| s.id.clone()) == Some(stale.id.clone()) {
            *guard = None;
        }
    }

    async fn connect(&self, auth: Option<&AuthHeader>) -> Result<Session, ErrorObject> {
        let cached = *self.era.lock().unwrap_or_else(|e| e.into_inner());
        if cached != Some(Era::Legacy) {
            if let Some(session) = self.probe_modern(auth).await? {
                *self.era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Modern);
                return Ok(session);
            }
        }
        let session = self.initialize(auth).await?;
        *self.era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Legacy);
        Ok(session)
    }

    /// `Ok(None)` means "not a modern server".
    async fn probe_modern(
        &self,
        auth: Option<&AuthHeader>,
    ) -> Result<Option<Session>, ErrorObject> {
        let fortress = fortress_context();
        let mut params = Map::new();
        super::modern_meta(&mut params, LATEST_MODERN, &fortress);
        let probe = Message::Request(Request::new(
            self.next_id(),
            "server/discover",
            Some(params),
        ));
        let headers = [
            (VERSION_HEADER, LATEST_MODERN.to_owned()),
            (METHOD_HEADER, "server/discover".to_owned()),
        ];
        let answer = tokio::time::timeout(
            self.config.request_timeout,
            self.post(&probe, &headers, None, None, auth),
        )
        .await
        .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "upstream did not answer the probe"))??;
        match answer {
            Answer::Response(
                Response {
                    outcome: Ok(result),
                    ..
                },
                _,
                status,
            ) if status.is_success() => match ServerDescription::from_discover(&result) {
                Ok(description) => Ok(Some(Session {
                    description,
                    id: None,
                    via_sse: false,
                })),
                Err(_) => Ok(None),
            },
            Answer::Response(
                Response {
                    outcome: Err(e), ..
                },
                _,
                _,
            ) if [
                UNSUPPORTED_PROTOCOL_VERSION,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                HEADER_MISMATCH,
            ]
            .contains(&e.code) =>
            {
                Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!("modern upstream refused Fortress: {}", e.message),
                ))
            }
            _ => Ok(None),
        }
    }

    async fn initialize(&self, auth: Option<&AuthHeader>) -> Result<Session, ErrorObject> {
        let params = json!({
            "protocolVersion": LATEST_LEGACY,
            "capabilities": super::relayed_client_capabilities(),
            "clientInfo": super::fortress_info(),
        });
        let init = Message::Request(Request::new(
            self.next_id(),
            "initialize",
            params.as_object().cloned(),
        ));
        let answer = tokio::time::timeout(
            self.config.request_timeout,
            self.post(&init, &[], None, None, auth),
        )
        .await
        .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "upstream did not answer initialize"))??;
        let (result, head) = match answer {
            Answer::Response(
                Response {
                    outcome: Ok(result),
                    ..
                },
                head,
                _,
            ) => (result, head),
            Answer::Response(
                Response {
                    outcome: Err(e), ..
                },
                _,
                _,
            ) => return Err(e),
            Answer::Status(status)
                if [
                    StatusCode::BAD_REQUEST,
                    StatusCode::NOT_FOUND,
                    StatusCode::METHOD_NOT_ALLOWED,
                ]
                .contains(&status) =>
            {
                return self.connect_sse().await;
            }
            Answer::Accepted | Answer::Status(_) => {
                return Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    "upstream refused initialize",
                ));
            }
        };
        let description = ServerDescription::from_initialize(&result)?;
        let id = head
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let session = Session {
            description,
            id,
            via_sse: false,
        };
        let initialized =
            Message::Notification(Notification::new("notifications/initialized", None));
        self.post(
            &initialized,
            &session_headers(&session),
            None,
            Some(&session),
            auth,
        )
        .await?;
        self.open_listen_stream(&session, auth);
        Ok(session)
    }

    /// Falls back to the 2024-11-05 HTTP+SSE transport.
    async fn connect_sse(&self) -> Result<Session, ErrorObject> {
        let peer = super::legacy_sse::connect(
            self.client.clone(),
            self.uri.clone(),
            &self.name,
            self.broadcast.clone(),
            self.config.request_timeout,
            self.config.max_message_bytes,
        )
        .await?;
        let description = super::peer::description(&peer)
            .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream is not initialized"))?;
        *self.sse.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
        Ok(Session {
            description,
            id: None,
            via_sse: true,
        })
    }

    /// The legacy GET stream: server notifications not tied to a request.
    fn open_listen_stream(&self, session: &Session, auth: Option<&AuthHeader>) {
        let mut builder = http::Request::builder()
            .method(Method::GET)
            .uri(self.uri.clone())
            .header(http::header::ACCEPT, "text/event-stream");
        for (name, value) in session_headers(session) {
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = auth {
            builder = builder.header(name, value);
        }
        let Ok(request) = builder.body(Full::new(Bytes::new())) else {
            return;
        };
        let client = self.client.clone();
        let broadcast = self.broadcast.clone();
        let stop = self.stop.clone();
        let limit = self.config.max_message_bytes;
        tokio::spawn(async move {
            let run = async {
                let Ok(response) = client.request(request).await else {
                    return;
                };
                if !response.status().is_success() {
                    return;
                }
                let mut body = response.into_body();
                let mut decoder = SseDecoder::new(limit);
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let Ok(events) = decoder.push(&data) else {
                        return;
                    };
                    for event in events {
                        if let Ok(Message::Notification(n)) = parse_message(event.data().as_bytes())
                        {
                            let _ = broadcast.send(n);
                        }
                    }
                }
            };
            tokio::select! {
                () = run => {}
                () = stop.cancelled() => {}
            }
        });
    }

    async fn legacy_call(
        &self,
        session: &Session,
        method: &str,
        params: Map<String, Value>,
        ctx: &CallContext,
        auth: Option<&AuthHeader>,
    ) -> Result<Result<Value, ErrorObject>, StatusCode> {
        let id = self.next_id();
        let message = Message::Request(Request::new(id.clone(), method, Some(params)));
        let headers = session_headers(session);
        let exchange = self.post(&message, &headers, Some(ctx), Some(session), auth);
        let answer = tokio::select! {
            answer = exchange => answer,
            () = ctx.cancel.cancelled() => {
                self.cancel_upstream(session, &id, auth).await;
                Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled"))
            }
            () = tokio::time::sleep(self.config.request_timeout) => {
                self.cancel_upstream(session, &id, auth).await;
                Err(ErrorObject::new(UPSTREAM_ERROR, format!("upstream did not answer {method} in time")))
            }
        };
        match answer {
            Ok(Answer::Response(response, _, _)) => Ok(response.outcome),
            Ok(Answer::Status(status)) => Err(status),
            Ok(Answer::Accepted) => Ok(Err(ErrorObject::new(
                UPSTREAM_ERROR,
                "upstream accepted a request without answering it",
            ))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn cancel_upstream(&self, session: &Session, id: &Id, auth: Option<&AuthHeader>) {
        let mut params = Map::new();
        params.insert("requestId".into(), id.to_value());
        params.insert("reason".into(), Value::from("cancelled by Fortress"));
        let n = Message::Notification(Notification::new("notifications/cancelled", Some(params)));
        let _ = self
            .post(&n, &session_headers(session), None, Some(session), auth)
            .await;
    }

    async fn modern_call(
        &self,
        session: &Session,
        method: &str,
        params: Map<String, Value>,
        ctx: &CallContext,
        auth: Option<&AuthHeader>,
    ) -> Result<Value, ErrorObject> {
        let version = session.description.protocol_version.clone();
        let mut headers = vec![
            (VERSION_HEADER, version.clone()),
            (METHOD_HEADER, method.to_owned()),
        ];
        let name = match method {
            "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
            "resources/read" => params.get("uri").and_then(Value::as_str),
            _ => None,
        };
        if let Some(name) = name {
            headers.push((NAME_HEADER, header_safe(name)));
        }
        let id = self.next_id();
        let message = Message::Request(Request::new(id, method, Some(params)));
        // Closing the response stream is the modern cancellation signal.
        let answer = tokio::select! {
            answer = self.post(&message, &headers, Some(ctx), Some(session), auth) => answer?,
            () = ctx.cancel.cancelled() => return Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled")),
            () = tokio::time::sleep(self.config.request_timeout) => {
                return Err(ErrorObject::new(UPSTREAM_ERROR, format!("upstream did not answer {method} in time")));
            }
        };
        match answer {
            Answer::Response(response, _, _) => response.outcome,
            Answer::Status(status) => Err(ErrorObject::new(
                UPSTREAM_ERROR,
                format!("upstream answered HTTP {status}"),
            )),
            Answer::Accepted => Err(ErrorObject::new(
                UPSTREAM_ERROR,
                "upstream accepted a request without answering it",
            )),
        }
    }
}

/// The upstream connector: `TCP_NODELAY`, since every exchange is one small request whose
/// answer Fortress waits for (Nagle's algorithm would hold back the request's last segment).
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

fn session_headers(session: &Session) -> Vec<(&'static str, String)> {
    let mut headers = vec![(VERSION_HEADER, session.description.protocol_version.clone())];
    if let Some(id) = &session.id {
        headers.push((SESSION_HEADER, id.clone()));
    }
    headers
}

/// A header value for `Mcp-Name`: plain when safe, else the Base64 sentinel form
/// (spec 2026-07-28, Streamable HTTP › Value Encoding).
pub fn header_safe(value: &str) -> String {
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !sentinel;
    if plain && HeaderValue::from_str(value).is_ok() {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        )
    }
}

/// Decodes an `Mcp-Name` header value (plain or Base64 sentinel).
pub fn header_decode(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(value.to_owned()),
    }
}

fn fortress_context() -> ClientContext {
    ClientContext {
        era: Era::Modern,
        protocol_version: LATEST_MODERN.into(),
        capabilities: super::relayed_client_capabilities()
            .as_object()
            .cloned()
            .unwrap_or_default(),
        client_info: Some(super::fortress_info()),
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let auth = self.auth_for(&ctx).await?;
        let auth = auth.as_ref();
        let mut session = self.session(auth).await?;
        if session.via_sse {
            let peer = self.sse.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let peer = match peer {
                Some(peer) if !peer.closed.is_cancelled() => peer,
                _ => {
                    // The stream ended: reconnect on this request.
                    self.forget(&session).await;
                    self.session(auth).await?;
                    self.sse
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                        .ok_or_else(|| {
                            ErrorObject::new(UPSTREAM_ERROR, "upstream stream unavailable")
                        })?
                }
            };
            let timeout = self.config.request_timeout;
            return super::peer::request(&peer, method, params, ctx, timeout).await;
        }
        let mut params = params.unwrap_or_default();
        let _progress = self.progress.map(&mut params, &ctx.events);
        match session.description.era {
            Era::Modern => {
                super::modern_meta(
                    &mut params,
                    &session.description.protocol_version,
                    &ctx.client,
                );
                super::with_input_rounds(&ctx, params, |p| {
                    let session = session.clone();
                    let ctx = ctx.clone();
                    async move { self.modern_call(&session, method, p, &ctx, auth).await }
                })
                .await
            }
            Era::Legacy => {
                super::strip_modern_meta(&mut params);
                for attempt in 0..2 {
                    match self
                        .legacy_call(&session, method, params.clone(), &ctx, auth)
                        .await
                    {
                        Ok(outcome) => return outcome,
                        Err(StatusCode::NOT_FOUND) if attempt == 0 && session.id.is_some() => {
                            tracing::info!(upstream = %self.name, "upstream session expired; re-initializing");
                            self.forget(&session).await;
                            session = self.session(auth).await?;
                        }
                        Err(status) => {
                            return Err(ErrorObject::new(
                                UPSTREAM_ERROR,
                                format!("upstream answered HTTP {status}"),
                            ));
                        }
                    }
                }
                Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    "upstream session could not be re-established",
                ))
            }
        }
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        Ok(self.session(None).await?.description.clone())
    }

    async fn describe_for(&self, ctx: &CallContext) -> Result<ServerDescription, ErrorObject> {
        if let Some(session) = self.session.lock().await.as_ref() {
            return Ok(session.description.clone());
        }
        let auth = self.auth_for(ctx).await?;
        Ok(self.session(auth.as_ref()).await?.description.clone())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.broadcast.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_safe_set_use_the_base64_sentinel() {
        assert_eq!(header_safe("get_weather"), "get_weather");
        assert_eq!(
            header_safe("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_safe(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            header_decode("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        assert_eq!(header_decode("plain").unwrap(), "plain");
    }
}
