//! Per-request handling of the MCP endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fortress_core::body::{self, Body};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::ServerConfig;
use super::session::{Session, SessionRequester, Sessions};
use super::subscriptions::{Held, Subscriptions};
use crate::auth::{Authenticated, Authenticator};
use crate::jsonrpc::{
    ErrorObject, INVALID_PARAMS, Id, Incoming, Message, Notification, Request, Response, parse,
};
use crate::seam::{ClientAddr, McpMessage, MessageReader, SeamService};
use crate::upstream::ClientRequester;
use crate::upstream::http::{
    METHOD_HEADER, NAME_HEADER, SESSION_HEADER, VERSION_HEADER, header_decode,
};
use crate::version::{
    ClientContext, Era, LATEST_LEGACY, LEGACY_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO,
    META_LOG_LEVEL, META_PROTOCOL_VERSION, META_SERVER_INFO, META_SUBSCRIPTION_ID,
    SUPPORTED_VERSIONS, era_of,
};

/// The log levels of `logging/setLevel` (RFC 5424 severities, spec 2025-11-25, Logging).
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];
use crate::virtual_server::VirtualServer;

/// Methods relayed through the seam to the virtual server.
const RELAYED: &[&str] = &[
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
];

/// Who sent a request: its address and, when authentication is on, the subject it proved.
#[derive(Clone, Debug, Default)]
pub(super) struct Caller {
    pub(super) peer: Option<SocketAddr>,
    pub(super) who: Option<Authenticated>,
}

impl Caller {
    /// The (workspace, subject id) a legacy session opened by this caller belongs to.
    fn owner(&self) -> Option<(String, String)> {
        self.who.as_ref().map(|w| {
            (
                w.subject.workspace.as_str().to_owned(),
                w.subject.id.clone(),
            )
        })
    }
}

/// Handles requests to the MCP endpoint.
#[derive(Clone)]
pub struct Handler {
    auth: Option<Arc<Authenticator>>,
    config: Arc<ServerConfig>,
    server: Arc<VirtualServer>,
    seam: SeamService,
    sessions: Arc<Sessions>,
    subscriptions: Arc<Subscriptions>,
    /// Seals session ids so other replicas can resume them (`None`: random ids).
    sealer: Option<fortress_core::cluster::token::TokenSealer>,
    /// Sealed session ids deleted on any replica (`None`: one node).
    revoked: Option<fortress_core::cluster::revoked::RevokedTokens>,
    pub(super) legacy_channels: Arc<super::legacy_sse::Channels>,
    shutdown: CancellationToken,
}

/// Where a request was decided to belong.
enum Scope {
    Legacy(Arc<Session>),
    Modern(Arc<ClientContext>),
}

impl Scope {
    fn era(&self) -> Era {
        match self {
            Self::Legacy(_) => Era::Legacy,
            Self::Modern(_) => Era::Modern,
        }
    }

    fn client(&self) -> Arc<ClientContext> {
        match self {
            Self::Legacy(s) => s.client.clone(),
            Self::Modern(c) => c.clone(),
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> http::Response<Body> {
    json_bytes_response(status, value.to_string().into_bytes())
}

/// A JSON-RPC message as the whole answer, serialized once from the message itself.
fn message_response(message: &Message) -> http::Response<Body> {
    json_bytes_response(StatusCode::OK, message.to_vec())
}

fn json_bytes_response(status: StatusCode, json: Vec<u8>) -> http::Response<Body> {
    let mut response = http::Response::new(body::full(json));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn error(
    status: StatusCode,
    id: Option<Id>,
    error: ErrorObject,
) -> http::Response<Body> {
    json_response(
        status,
        &Message::Response(Response::error(id, error)).to_value(),
    )
}

pub(super) fn plain(status: StatusCode) -> http::Response<Body> {
    let mut response = http::Response::new(body::empty());
    *response.status_mut() = status;
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn sse_headers(response: &mut http::Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

fn sse_frame(message: &Message) -> Frame<Bytes> {
    let json = message.to_vec();
    Frame::data(crate::sse::encode(
        Some("message"),
        &String::from_utf8_lossy(&json),
    ))
}

/// Shapes a result for the client's era: modern results carry `resultType` and, for
/// cacheable results, `ttlMs`/`cacheScope` (always `private` here: Fortress serves many
/// subjects and part of what it lists may depend on who asks); legacy results carry neither.
fn render_result(era: Era, method: &str, mut result: Value) -> Value {
    let Some(obj) = result.as_object_mut() else {
        return result;
    };
    let cacheable = matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "server/discover"
    );
    match era {
        Era::Modern => {
            obj.entry("resultType")
                .or_insert_with(|| Value::from("complete"));
            let input_required = obj.get("resultType") == Some(&Value::from("input_required"));
            if cacheable && !input_required {
                obj.entry("ttlMs").or_insert_with(|| Value::from(0));
                obj.insert("cacheScope".into(), Value::from("private"));
            }
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(META_SERVER_INFO.into(), crate::upstream::fortress_info());
            }
        }
        Era::Legacy => {
            if obj.get("resultType") == Some(&Value::from("complete")) {
                obj.remove("resultType");
            }
            obj.remove("ttlMs");
            obj.remove("cacheScope");
        }
    }
    result
}

impl Handler {
    pub(super) fn new(
        config: Arc<ServerConfig>,
        server: Arc<VirtualServer>,
        seam: SeamService,
        shutdown: CancellationToken,
    ) -> Self {
        let idle = config.session_idle_timeout;
        Self {
            auth: None,
            config,
            subscriptions: Subscriptions::new(server.clone()),
            server,
            seam,
            sessions: Arc::new(Sessions::new(idle)),
            sealer: None,
            revoked: None,
            legacy_channels: Arc::default(),
            shutdown,
        }
    }

    pub(super) fn set_authenticator(&mut self, auth: Arc<Authenticator>) {
        self.auth = Some(auth);
    }

    pub(super) fn set_session_sealer(
        &mut self,
        sealer: Option<fortress_core::cluster::token::TokenSealer>,
    ) {
        self.sealer = sealer;
    }

    /// Refuses sealed session ids deleted on any replica, records this replica's
    /// deletions there, and closes the sessions held here when another replica deletes
    /// them. Must run inside a tokio runtime.
    pub(super) fn set_revoked_sessions(
        &mut self,
        revoked: fortress_core::cluster::revoked::RevokedTokens,
    ) {
        let sessions = Arc::downgrade(&self.sessions);
        let mut revocations = revoked.revocations();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match revocations.recv().await {
                    Ok(digest) => match sessions.upgrade() {
                        Some(sessions) => sessions.remove_by_digest(&digest),
                        None => break,
                    },
                    // Missed ones are refused at their next use anyway.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        self.revoked = Some(revoked);
    }

    /// The origin the client reached us at, for absolute URLs in auth challenges: the
    /// request's authority (HTTP/2 carries it in `:authority`, not `Host`), else `Host`.
    fn base_url(&self, uri: &http::Uri, headers: &HeaderMap) -> String {
        let authority = uri.authority().map(|a| a.as_str());
        let host = authority
            .or_else(|| header(headers, "host"))
            .unwrap_or("localhost");
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    /// The session `id`, if it exists and belongs to `caller` (another subject's session
    /// is reported unknown, so session ids cannot be borrowed).
    /// A session unknown here but sealed under the shared key was started on another
    /// replica (or before a restart): it is resumed from what its id carries.
    fn session(&self, id: &str, caller: &Caller) -> Option<Arc<Session>> {
        if self.revoked.as_ref().is_some_and(|r| r.is_revoked(id)) {
            self.sessions.remove(id);
            return None;
        }
        let session = self.sessions.get(id).or_else(|| {
            let sealer = self.sealer.as_ref()?;
            let resumed = Arc::new(
                Session::resume(id, sealer, self.config.client_answer_timeout)?
                    .with_subscriptions(Held::new(self.subscriptions.clone())),
            );
            tracing::debug!("legacy session resumed from its sealed id");
            self.sessions.insert(resumed.clone());
            Some(resumed)
        })?;
        (session.owner.is_none() || session.owner == caller.owner()).then_some(session)
    }

    pub(super) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub(super) fn keep_alive(&self) -> std::time::Duration {
        self.config.keep_alive
    }

    pub(super) fn messages_path(&self) -> &str {
        &self.config.legacy_messages_path
    }

    pub(super) fn notifications(&self) -> tokio::sync::broadcast::Receiver<Notification> {
        self.server.subscribe()
    }

    /// Whether a notification not tied to a request is for the session `id` (resource
    /// updates only reach the sessions that subscribed to them).
    pub(super) fn session_wants(&self, id: Option<String>, n: &Notification) -> bool {
        match id.and_then(|id| self.sessions.get(&id)) {
            Some(session) => session.wants(n),
            None => n.method != super::subscriptions::UPDATED,
        }
    }

    pub(super) fn close_sessions(&self) {
        self.sessions.close_all();
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.config.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        if !self.config.allow_loopback_origins {
            return false;
        }
        let Some(rest) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        let host = if let Some(v6) = rest.strip_prefix('[') {
            v6.split(']').next().map(|h| format!("[{h}]"))
        } else {
            rest.split(':').next().map(str::to_owned)
        };
        let Some(host) = host else { return false };
        let port_ok = match rest.rsplit_once(':') {
            Some((h, port)) if !h.is_empty() && !port.contains(']') => port.parse::<u16>().is_ok(),
            _ => !rest.contains('/'),
        };
        port_ok && ["localhost", "127.0.0.1", "[::1]"].contains(&host.as_str())
    }

    /// Serves one HTTP request.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<fortress_core::body::BoxError>,
    {
        if let Some(origin) = header(request.headers(), "origin") {
            if !self.origin_allowed(origin) {
                tracing::warn!(origin, "refused a request from a foreign origin");
                return error(
                    StatusCode::FORBIDDEN,
                    None,
                    ErrorObject::invalid_request("origin not allowed"),
                );
            }
        }
        let mut caller = Caller { peer, who: None };
        if let Some(auth) = &self.auth {
            // The resource metadata is public: clients read it to learn how to authenticate.
            if request.method() == Method::GET
                && auth
                    .metadata()
                    .is_document_path(request.uri().path(), &self.config.path)
            {
                return auth.metadata().response(
                    &self.base_url(request.uri(), request.headers()),
                    &self.config.path,
                );
            }
            match auth
                .authenticate_audited(
                    request.headers(),
                    peer.map(|p| p.ip()),
                    request.uri().path(),
                )
                .await
            {
                Ok(who) => caller.who = Some(who),
                Err(failure) => {
                    tracing::info!(%failure, path = request.uri().path(), "refused an unauthenticated request");
                    return auth
                        .challenge(&failure, &self.base_url(request.uri(), request.headers()));
                }
            }
        }
        if request.uri().path() != self.config.path {
            let path = request.uri().path();
            if self.config.legacy_sse_path.as_deref() == Some(path)
                && request.method() == Method::GET
            {
                return self.open_legacy_sse();
            }
            if self.config.legacy_sse_path.is_some()
                && path == self.config.legacy_messages_path
                && request.method() == Method::POST
            {
                return self.legacy_sse_post(request, caller).await;
            }
            return plain(StatusCode::NOT_FOUND);
        }
        match *request.method() {
            Method::POST => self.post(request, caller).await,
            Method::GET => self.get(request.headers(), &caller),
            Method::DELETE => self.delete(request.headers(), &caller).await,
            _ => {
                let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
                response.headers_mut().insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, POST, DELETE"),
                );
                response
            }
        }
    }

    pub(super) async fn read_body<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<(http::request::Parts, Bytes), http::Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<fortress_core::body::BoxError>,
    {
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                ErrorObject::invalid_request(format!(
                    "request body exceeds {} bytes",
                    self.config.max_body_bytes
                )),
            )
        };
        let declared =
            header(request.headers(), "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.config.max_body_bytes as u64) {
            return Err(too_large());
        }
        let (parts, body) = request.into_parts();
        let limited = http_body_util::Limited::new(body, self.config.max_body_bytes);
        match tokio::time::timeout(self.config.body_read_timeout, limited.collect()).await {
            Err(_) => Err(plain(StatusCode::REQUEST_TIMEOUT)),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(_)) => Err(plain(StatusCode::BAD_REQUEST)),
            Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
        }
    }

    pub(super) async fn post<B>(
        &self,
        request: http::Request<B>,
        peer: Caller,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<fortress_core::body::BoxError>,
    {
        let (parts, bytes) = match self.read_body(request).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let message = match parse(&bytes) {
            Ok(Incoming::Single(message)) => message,
            Ok(Incoming::Batch(items)) => return self.batch(&parts.headers, items, peer).await,
            Err(e) => return error(StatusCode::BAD_REQUEST, None, e),
        };
        let headers = &parts.headers;
        // A request carrying modern per-request metadata is served statelessly, whatever
        // session header it carries (spec 2026-07-28, Versioning: a dual-era server selects
        // by how the client opens; Streamable HTTP: ignore `Mcp-Session-Id`).
        let modern = matches!(&message, Message::Request(r)
            if r.meta().is_some_and(|m| m.contains_key(META_PROTOCOL_VERSION)) && r.method != "initialize");
        let session_header = if modern {
            None
        } else {
            header(headers, SESSION_HEADER)
        };
        let session = match session_header {
            Some(id) => match self.session(id, &peer) {
                Some(session) => Some(session),
                None => {
                    return error(
                        StatusCode::NOT_FOUND,
                        message.id().cloned(),
                        ErrorObject::invalid_request("unknown or expired session"),
                    );
                }
            },
            None => None,
        };
        match message {
            Message::Response(response) => match session {
                Some(session) if session.answer(response) => plain(StatusCode::ACCEPTED),
                Some(_) => plain(StatusCode::ACCEPTED),
                None => error(
                    StatusCode::BAD_REQUEST,
                    None,
                    ErrorObject::invalid_request("responses need a session"),
                ),
            },
            Message::Notification(n) => {
                if let (Some(session), "notifications/cancelled") = (&session, n.method.as_str()) {
                    if let Some(id) = n
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(Id::from_value)
                    {
                        session.cancel(&id);
                    }
                }
                plain(StatusCode::ACCEPTED)
            }
            Message::Request(request) => {
                if request.method == "initialize" {
                    return self.initialize(request, &peer).await;
                }
                let scope = match session {
                    Some(session) => {
                        if let Some(v) = header(headers, VERSION_HEADER) {
                            if !LEGACY_VERSIONS.contains(&v) {
                                return error(
                                    StatusCode::BAD_REQUEST,
                                    Some(request.id),
                                    ErrorObject::unsupported_version(v, LEGACY_VERSIONS),
                                );
                            }
                        }
                        Scope::Legacy(session)
                    }
                    None => match self.modern_context(headers, &request) {
                        Ok(client) => Scope::Modern(Arc::new(client)),
                        Err(response) => return *response,
                    },
                };
                self.serve(request, scope, peer).await
            }
        }
    }

    /// A JSON-RPC batch: allowed in sessions of the revisions that had batching (2024-11-05,
    /// 2025-03-26; removed in 2025-06-18). Each element is served on its own; the answer is
    /// the array of responses, or 202 when the batch held only notifications and responses.
    async fn batch(
        &self,
        headers: &HeaderMap,
        items: Vec<Result<Message, Box<crate::jsonrpc::BatchError>>>,
        peer: Caller,
    ) -> http::Response<Body> {
        let session = header(headers, SESSION_HEADER).and_then(|id| self.session(id, &peer));
        let Some(session) = session
            .filter(|s| ["2024-11-05", "2025-03-26"].contains(&s.client.protocol_version.as_str()))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                None,
                ErrorObject::invalid_request(
                    "JSON-RPC batches are only accepted in 2024-11-05 and 2025-03-26 sessions",
                ),
            );
        };
        let mut answers = Vec::new();
        for item in items {
            match item {
                Err(invalid) => answers
                    .push(Message::Response(Response::error(invalid.id, invalid.error)).to_value()),
                Ok(Message::Request(request)) if request.method == "initialize" => {
                    answers.push(
                        Message::Response(Response::error(
                            Some(request.id),
                            ErrorObject::invalid_request("initialize cannot be batched"),
                        ))
                        .to_value(),
                    );
                }
                Ok(Message::Request(request)) => {
                    let response = self
                        .serve(request, Scope::Legacy(session.clone()), peer.clone())
                        .await;
                    if let Some(answer) = final_message(response).await {
                        answers.push(answer);
                    }
                }
                Ok(Message::Response(response)) => {
                    session.answer(response);
                }
                Ok(Message::Notification(_)) => {}
            }
        }
        if answers.is_empty() {
            plain(StatusCode::ACCEPTED)
        } else {
            json_response(StatusCode::OK, &Value::Array(answers))
        }
    }

    /// Validates a stateless request's metadata and headers (spec 2026-07-28, Streamable
    /// HTTP › Server Validation; Basic › `_meta`).
    fn modern_context(
        &self,
        headers: &HeaderMap,
        request: &Request,
    ) -> Result<ClientContext, Box<http::Response<Body>>> {
        let id = Some(request.id.clone());
        let bad = |e: ErrorObject| Box::new(error(StatusCode::BAD_REQUEST, id.clone(), e));
        let meta = request.meta();
        let meta_version = meta
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);
        let header_version = header(headers, VERSION_HEADER);
        let Some(meta_version) = meta_version else {
            return Err(match header_version {
                Some(v) if era_of(v).is_none() => {
                    bad(ErrorObject::unsupported_version(v, SUPPORTED_VERSIONS))
                }
                _ => bad(ErrorObject::invalid_request(
                    "no Mcp-Session-Id: send initialize first, or carry the protocol version in _meta",
                )),
            });
        };
        if era_of(meta_version) != Some(Era::Modern) {
            return Err(bad(ErrorObject::unsupported_version(
                meta_version,
                SUPPORTED_VERSIONS,
            )));
        }
        match header_version {
            None => {
                return Err(bad(ErrorObject::header_mismatch(
                    "MCP-Protocol-Version header is missing",
                )));
            }
            Some(v) if v != meta_version => {
                return Err(bad(ErrorObject::header_mismatch(format!(
                    "MCP-Protocol-Version header value '{v}' does not match body value '{meta_version}'"
                ))));
            }
            Some(_) => {}
        }
        match header(headers, METHOD_HEADER) {
            None => {
                return Err(bad(ErrorObject::header_mismatch(
                    "Mcp-Method header is missing",
                )));
            }
            Some(m) if m != request.method => {
                return Err(bad(ErrorObject::header_mismatch(format!(
                    "Mcp-Method header value '{m}' does not match body value '{}'",
                    request.method
                ))));
            }
            Some(_) => {}
        }
        let name_field = match request.method.as_str() {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        if let Some(field) = name_field {
            let body_value = request.str_param(field).unwrap_or("");
            match header(headers, NAME_HEADER).map(header_decode) {
                None => {
                    return Err(bad(ErrorObject::header_mismatch(
                        "Mcp-Name header is missing",
                    )));
                }
                Some(None) => {
                    return Err(bad(ErrorObject::header_mismatch(
                        "Mcp-Name header is malformed",
                    )));
                }
                Some(Some(v)) if v != body_value => {
                    return Err(bad(ErrorObject::header_mismatch(format!(
                        "Mcp-Name header value '{v}' does not match body value '{body_value}'"
                    ))));
                }
                Some(Some(_)) => {}
            }
        }
        let capabilities = match meta.and_then(|m| m.get(META_CLIENT_CAPABILITIES)) {
            Some(Value::Object(c)) => c.clone(),
            _ => {
                return Err(bad(ErrorObject::new(
                    INVALID_PARAMS,
                    format!("Invalid params: _meta[\"{META_CLIENT_CAPABILITIES}\"] is required"),
                )));
            }
        };
        Ok(ClientContext {
            era: Era::Modern,
            protocol_version: meta_version.to_owned(),
            capabilities,
            client_info: meta.and_then(|m| m.get(META_CLIENT_INFO)).cloned(),
        })
    }

    async fn initialize(&self, request: Request, caller: &Caller) -> http::Response<Body> {
        let Some(requested) = request.str_param("protocolVersion") else {
            return error(
                StatusCode::BAD_REQUEST,
                Some(request.id),
                ErrorObject::invalid_params("\"protocolVersion\" must be a string"),
            );
        };
        // Legacy negotiation: echo a version we speak, else offer our newest legacy one
        // (spec 2025-11-25, Lifecycle › Version Negotiation).
        let version = if LEGACY_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_LEGACY
        };
        let description = match self.server.description().await {
            Ok(d) => d,
            Err(e) => return error(StatusCode::OK, Some(request.id), e),
        };
        let capabilities = request
            .param("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let client =
            ClientContext::legacy(version, capabilities, request.param("clientInfo").cloned());
        let mut session = Session::new(client, self.config.client_answer_timeout)
            .owned_by(caller.owner())
            .with_subscriptions(Held::new(self.subscriptions.clone()));
        if let Some(sealer) = &self.sealer {
            session = session.sealed(sealer);
        }
        let session = Arc::new(session);
        self.sessions.insert(session.clone());
        let mut result = Map::new();
        result.insert("protocolVersion".into(), Value::from(version));
        result.insert(
            "capabilities".into(),
            Value::Object(served_capabilities(&description.capabilities)),
        );
        result.insert(
            "serverInfo".into(),
            description
                .server_info
                .unwrap_or_else(crate::upstream::fortress_info),
        );
        if let Some(instructions) = description.instructions {
            result.insert("instructions".into(), Value::from(instructions));
        }
        let mut response = json_response(
            StatusCode::OK,
            &Message::Response(Response::result(request.id, Value::Object(result))).to_value(),
        );
        if let Ok(value) = HeaderValue::from_str(&session.id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        response
    }

    async fn serve(&self, request: Request, scope: Scope, peer: Caller) -> http::Response<Body> {
        let era = scope.era();
        let id = request.id.clone();
        let not_found = |method: &str| {
            // Modern servers answer unknown methods with 404 and -32601 (spec 2026-07-28,
            // Streamable HTTP › Protocol Version Header); legacy ones with 200.
            let status = if era == Era::Modern {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            error(
                status,
                Some(id.clone()),
                ErrorObject::method_not_found(method),
            )
        };
        match request.method.as_str() {
            "ping" => self.result(era, &request, json!({})),
            "server/discover" => match self.server.description().await {
                Ok(d) => {
                    let mut result = json!({
                        "supportedVersions": SUPPORTED_VERSIONS,
                        "capabilities": served_capabilities(&d.capabilities),
                    });
                    if let Some(i) = d.instructions {
                        result["instructions"] = Value::from(i);
                    }
                    self.result(era, &request, result)
                }
                Err(e) => error(StatusCode::OK, Some(id), e),
            },
            "logging/setLevel" => match &scope {
                Scope::Legacy(session) => self.set_level(request, session).await,
                Scope::Modern(_) => not_found("logging/setLevel"),
            },
            "resources/subscribe" | "resources/unsubscribe" if era == Era::Legacy => {
                self.subscription(request, scope, peer).await
            }
            "subscriptions/listen" if era == Era::Modern => self.listen(request, scope, peer).await,
            method if RELAYED.contains(&method) => self.relay(request, scope, peer).await,
            method => not_found(method),
        }
    }

    fn result(&self, era: Era, request: &Request, result: Value) -> http::Response<Body> {
        let result = render_result(era, &request.method, result);
        json_response(
            StatusCode::OK,
            &Message::Response(Response::result(request.id.clone(), result)).to_value(),
        )
    }

    /// Relays a request through the seam; answers JSON when the first message is the final
    /// response, SSE otherwise.
    async fn relay(
        &self,
        mut request: Request,
        scope: Scope,
        caller: Caller,
    ) -> http::Response<Body> {
        if let Scope::Legacy(session) = &scope {
            carry_log_level(&mut request, session);
        }
        let era = scope.era();
        let id = request.id.clone();
        let method = request.method.clone();
        let cancel = CancellationToken::new();
        let (requester, guard) = match &scope {
            Scope::Legacy(session) => (
                Some(Arc::new(SessionRequester {
                    session: session.clone(),
                }) as Arc<dyn ClientRequester>),
                Some(session.track(id.clone(), cancel.clone())),
            ),
            Scope::Modern(_) => (None, None),
        };
        let message = McpMessage {
            request,
            client: scope.client(),
            requester,
            cancel,
        };
        let mut http_request = message.into_http();
        if let Some(peer) = caller.peer {
            http_request.extensions_mut().insert(ClientAddr(peer.ip()));
        }
        if let Some(who) = caller.who {
            http_request.extensions_mut().insert(who.subject);
            if let Some(scopes) = who.scopes {
                http_request.extensions_mut().insert(scopes);
            }
        }
        let response = match self.seam.clone().oneshot(http_request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut reader = MessageReader::new(response.into_body(), self.config.max_message_bytes);
        let finish = move |message: Message| -> Message {
            match message {
                Message::Response(r) => Message::Response(Response {
                    id: Some(id.clone()),
                    outcome: r.outcome.map(|v| render_result(era, &method, v)),
                }),
                other => other,
            }
        };
        match reader.next().await {
            Some(Ok(first @ Message::Response(_))) => {
                // Read the seam body to its end: governance completes there (the audit
                // record is made durable before the body ends).
                while reader.next().await.is_some() {}
                message_response(&finish(first))
            }
            None => message_response(&finish(Message::Response(Response::error(
                None,
                ErrorObject::internal("no answer"),
            )))),
            Some(Err(e)) => message_response(&finish(Message::Response(Response::error(None, e)))),
            Some(Ok(first)) => {
                let stream = futures_util::stream::unfold(
                    (Some(first), reader, finish, guard, false),
                    |(first, mut reader, finish, guard, done)| async move {
                        if done {
                            return None;
                        }
                        let next = match first {
                            Some(m) => Some(Ok(m)),
                            None => reader.next().await,
                        };
                        let message = match next? {
                            Ok(m) => m,
                            Err(e) => Message::Response(Response::error(None, e)),
                        };
                        let last = matches!(message, Message::Response(_));
                        if last {
                            while reader.next().await.is_some() {}
                        }
                        let frame = sse_frame(&finish(message));
                        Some((
                            Ok::<_, Infallible>(frame),
                            (None, reader, finish, guard, last),
                        ))
                    },
                );
                let mut response =
                    http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
                sse_headers(&mut response);
                response
            }
        }
    }

    /// A request served through the seam (governed and audited like any relayed request)
    /// without a stream to the client: the notifications about it, and its final outcome.
    async fn through_seam(
        &self,
        request: Request,
        scope: &Scope,
        caller: &Caller,
    ) -> (Vec<Message>, Result<Value, ErrorObject>) {
        let message = McpMessage {
            request,
            client: scope.client(),
            requester: None,
            cancel: CancellationToken::new(),
        };
        let mut http_request = message.into_http();
        if let Some(peer) = caller.peer {
            http_request.extensions_mut().insert(ClientAddr(peer.ip()));
        }
        if let Some(who) = &caller.who {
            http_request.extensions_mut().insert(who.subject.clone());
            if let Some(scopes) = &who.scopes {
                http_request.extensions_mut().insert(scopes.clone());
            }
        }
        let response = match self.seam.clone().oneshot(http_request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut reader = MessageReader::new(response.into_body(), self.config.max_message_bytes);
        let mut outcome = Err(ErrorObject::internal("no answer"));
        let mut notifications = Vec::new();
        while let Some(message) = reader.next().await {
            match message {
                Ok(Message::Response(response)) => outcome = response.outcome,
                Ok(n @ Message::Notification(_)) => notifications.push(n),
                // Nobody can answer a question asked now: the upstream gets an error.
                Ok(Message::Request(_)) => {}
                Err(e) => outcome = Err(e),
            }
        }
        (notifications, outcome)
    }

    /// `logging/setLevel` of a legacy session: relayed to the legacy upstreams that log, and
    /// remembered for the session's requests to modern ones (which take it in `_meta`).
    async fn set_level(&self, request: Request, session: &Arc<Session>) -> http::Response<Body> {
        let Some(level) = request
            .str_param("level")
            .filter(|l| LOG_LEVELS.contains(l))
            .map(str::to_owned)
        else {
            return error(
                StatusCode::OK,
                Some(request.id),
                ErrorObject::invalid_params(format!(
                    "\"level\" must be one of {}",
                    LOG_LEVELS.join(", ")
                )),
            );
        };
        session.set_log_level(&level);
        self.server
            .set_log_level(&level, session.client.clone())
            .await;
        self.result(Era::Legacy, &request, json!({}))
    }

    /// `resources/subscribe` and `resources/unsubscribe` of a legacy session. Subscribing is
    /// relayed (and governed as reading the resource); the upstream subscription, shared by
    /// every client of the upstream session, ends only when its last holder unsubscribes or
    /// goes away.
    async fn subscription(
        &self,
        request: Request,
        scope: Scope,
        caller: Caller,
    ) -> http::Response<Body> {
        let Scope::Legacy(session) = &scope else {
            return self.relay(request, scope, caller).await;
        };
        let (Some(held), Some(uri)) = (session.held(), request.str_param("uri")) else {
            return self.relay(request, scope, caller).await;
        };
        let uri = uri.to_owned();
        let subscribing = request.method == "resources/subscribe";
        if !subscribing && held.let_go(&uri) != Some(true) {
            // Others still hold it (or this session never did): nothing to end upstream.
            return self.result(Era::Legacy, &request, json!({}));
        }
        let id = request.id.clone();
        let method = request.method.clone();
        let (mut messages, outcome) = self.through_seam(request, &scope, &caller).await;
        if subscribing && outcome.is_ok() {
            held.hold(&uri);
        }
        let outcome = outcome.map(|result| render_result(Era::Legacy, &method, result));
        messages.push(Message::Response(Response {
            id: Some(id),
            outcome,
        }));
        if messages.len() == 1 {
            return message_response(&messages[0]);
        }
        // Notifications about it (an upstream's log line) first, as a relayed answer would.
        let mut events = Vec::new();
        for message in &messages {
            if let Ok(data) = sse_frame(message).into_data() {
                events.extend_from_slice(&data);
            }
        }
        let mut response = http::Response::new(body::full(events));
        sse_headers(&mut response);
        response
    }

    /// `subscriptions/listen`: acknowledges the honoured filter, then relays matching change
    /// notifications until the client leaves or Fortress shuts down, when the stream ends with
    /// the subscription's result (spec 2026-07-28, schema `SubscriptionsListenRequest`).
    /// `resourceSubscriptions` are subscribed upstream (each governed as reading the
    /// resource); the acknowledgement lists those accepted, and only their
    /// `notifications/resources/updated` are relayed.
    async fn listen(&self, request: Request, scope: Scope, caller: Caller) -> http::Response<Body> {
        let filter = request
            .param("notifications")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let held = Held::new(self.subscriptions.clone());
        let mut accepted = Vec::new();
        let wanted_uris = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|uris| uris.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        for uri in wanted_uris {
            let mut params = Map::new();
            params.insert("uri".into(), Value::from(uri));
            let subscribe = Request::new(
                Id::String(format!("fortress-listen-{}", uuid::Uuid::new_v4().simple())),
                "resources/subscribe",
                Some(params),
            );
            match self.through_seam(subscribe, &scope, &caller).await.1 {
                Ok(_) => {
                    held.hold(uri);
                    accepted.push(Value::from(uri));
                }
                Err(e) => tracing::info!(%uri, %e, "resource subscription not accepted"),
            }
        }
        let wanted = |key: &str| filter.get(key) == Some(&Value::Bool(true));
        let mut honoured = Map::new();
        let mut methods = Vec::new();
        for (key, method) in [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            (
                "resourcesListChanged",
                "notifications/resources/list_changed",
            ),
        ] {
            if wanted(key) {
                honoured.insert(key.into(), Value::Bool(true));
                methods.push(method);
            }
        }
        if !accepted.is_empty() {
            honoured.insert("resourceSubscriptions".into(), Value::Array(accepted));
            methods.push(super::subscriptions::UPDATED);
        }
        let sub_id = request.id.clone();
        let mut meta = Map::new();
        meta.insert(META_SUBSCRIPTION_ID.into(), sub_id.to_value());
        let mut ack = Map::new();
        ack.insert("notifications".into(), Value::Object(honoured));
        ack.insert("_meta".into(), Value::Object(meta.clone()));
        let ack = Message::Notification(Notification::new(
            "notifications/subscriptions/acknowledged",
            Some(ack),
        ));
        let rx = self.server.subscribe();
        let shutdown = self.shutdown.clone();
        let keep_alive = self.config.keep_alive;
        let closing = Message::Response(Response::result(
            sub_id,
            json!({ "resultType": "complete", "_meta": Value::Object(meta.clone()) }),
        ));
        // The subscriptions live as long as the stream: dropping it releases them.
        let held = Arc::new(held);
        let stream = futures_util::stream::unfold(
            (Some(ack), rx, Some(closing)),
            move |(ack, mut rx, closing)| {
                let shutdown = shutdown.clone();
                let methods = methods.clone();
                let meta = meta.clone();
                let held = held.clone();
                async move {
                    if let Some(ack) = ack {
                        return Some((Ok::<_, Infallible>(sse_frame(&ack)), (None, rx, closing)));
                    }
                    let closing_msg = closing.clone()?;
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                return Some((Ok(sse_frame(&closing_msg)), (None, rx, None)));
                            }
                            () = tokio::time::sleep(keep_alive) => {
                                return Some((Ok(Frame::data(Bytes::from_static(b":\n\n"))), (None, rx, closing)));
                            }
                            received = rx.recv() => match received {
                                Ok(mut n) if methods.contains(&n.method.as_str()) && held.wants(&n) => {
                                    let params = n.params.get_or_insert_with(Map::new);
                                    params.insert("_meta".into(), Value::Object(meta.clone()));
                                    return Some((Ok(sse_frame(&Message::Notification(n))), (None, rx, closing)));
                                }
                                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            },
                        }
                    }
                }
            },
        );
        let mut response =
            http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
        sse_headers(&mut response);
        response
    }

    /// The legacy GET stream: notifications not tied to a request.
    fn get(&self, headers: &HeaderMap, caller: &Caller) -> http::Response<Body> {
        let Some(id) = header(headers, SESSION_HEADER) else {
            return plain(StatusCode::METHOD_NOT_ALLOWED);
        };
        let Some(session) = self.session(id, caller) else {
            return error(
                StatusCode::NOT_FOUND,
                None,
                ErrorObject::invalid_request("unknown or expired session"),
            );
        };
        let rx = self.server.subscribe();
        let shutdown = self.shutdown.clone();
        let keep_alive = self.config.keep_alive;
        let stream = futures_util::stream::unfold((rx, session), move |(mut rx, session)| {
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = session.closed.cancelled() => return None,
                        () = tokio::time::sleep(keep_alive) => {
                            return Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b":\n\n"))), (rx, session)));
                        }
                        received = rx.recv() => match received {
                            Ok(n) if session.wants(&n) => return Some((Ok(sse_frame(&Message::Notification(n))), (rx, session))),
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        },
                    }
                }
            }
        });
        let mut response =
            http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
        sse_headers(&mut response);
        response
    }

    /// Ends a legacy session; on replicas, everywhere (its sealed id would otherwise still
    /// resume on the others until it expires).
    async fn delete(&self, headers: &HeaderMap, caller: &Caller) -> http::Response<Body> {
        match header(headers, SESSION_HEADER) {
            None => error(
                StatusCode::BAD_REQUEST,
                None,
                ErrorObject::invalid_request("Mcp-Session-Id is required"),
            ),
            Some(id) if self.session(id, caller).is_none() => error(
                StatusCode::NOT_FOUND,
                None,
                ErrorObject::invalid_request("unknown or expired session"),
            ),
            Some(id) => match self.sessions.remove(id) {
                Some(_) => match &self.revoked {
                    Some(revoked) => match revoked.revoke(id).await {
                        Ok(()) => plain(StatusCode::OK),
                        Err(e) => {
                            tracing::error!(error = %e, "deleted session not recorded for the other replicas");
                            error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                None,
                                ErrorObject::internal(
                                    "the session could not be ended on every replica",
                                ),
                            )
                        }
                    },
                    None => plain(StatusCode::OK),
                },
                None => error(
                    StatusCode::NOT_FOUND,
                    None,
                    ErrorObject::invalid_request("unknown or expired session"),
                ),
            },
        }
    }
}

/// Puts a legacy session's log level in the request's `_meta`, where a modern upstream reads
/// it (legacy upstreams drop it and got `logging/setLevel` instead).
fn carry_log_level(request: &mut Request, session: &Session) {
    let Some(level) = session.log_level() else {
        return;
    };
    let params = request.params.get_or_insert_with(Map::new);
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.entry(META_LOG_LEVEL)
            .or_insert_with(|| Value::from(level));
    }
}

/// The final JSON-RPC response of an answer, whether JSON or SSE.
async fn final_message(response: http::Response<Body>) -> Option<Value> {
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    if !streaming {
        return serde_json::from_slice(&bytes).ok();
    }
    let mut decoder = crate::sse::SseDecoder::new(usize::MAX);
    let events = decoder.push(&bytes).ok()?;
    events
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Value>(e.data()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

/// The capabilities Fortress serves: what the upstreams offer among what Fortress relays.
fn served_capabilities(upstream: &Map<String, Value>) -> Map<String, Value> {
    let mut served = Map::new();
    for key in ["tools", "prompts", "resources", "completions", "logging"] {
        if let Some(value) = upstream.get(key) {
            served.insert(key.into(), value.clone());
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_results_are_decorated_and_legacy_ones_cleaned() {
        let modern = render_result(Era::Modern, "tools/list", json!({"tools": []}));
        assert_eq!(modern["resultType"], "complete");
        assert_eq!(modern["cacheScope"], "private");
        assert_eq!(modern["ttlMs"], 0);
        let legacy = render_result(
            Era::Legacy,
            "tools/list",
            json!({"tools": [], "resultType": "complete", "ttlMs": 5, "cacheScope": "public"}),
        );
        assert_eq!(legacy, json!({"tools": []}));
    }
}
