//! The governance seam: the one place every relayed JSON-RPC request passes.
//!
//! The client edge turns each request it must relay into an `http::Request<`[`McpMessage`]`>`
//! and calls one tower service, [`SeamService`]:
//!
//! ```text
//! edge ─▶ [DescribeLayer] ─▶ (fortress_core GovernanceStack, when configured) ─▶ VirtualService ─▶ upstreams
//! ```
//!
//! - [`DescribeLayer`] describes the message once as an `Arc<`[`Call`]`>` request extension
//!   (who, what, on which tool/resource/prompt of which connector, with which arguments), so
//!   the core layers — audit, guard, policy, redaction, credential — need know nothing of MCP.
//! - [`JsonRpcResponder`] is the [`Responder`] the core layers answer refusals with: a JSON-RPC
//!   error, which the edge delivers under the client's request id.
//! - The response body is the request's stream of JSON-RPC messages, one JSON document per
//!   line ([`SEAM_CONTENT_TYPE`]): notifications and server requests about it, then its final
//!   response. [`MessageReader`] reads it back.
//!
//! ```
//! use fortress_core::denial::{Denial, DenialKind, Responder};
//! use fortress_mcp::seam::{JsonRpcResponder, FORBIDDEN};
//!
//! let response = JsonRpcResponder.respond(&Denial::new(DenialKind::Forbidden, "denied by policy"));
//! assert_eq!(response.status(), 200);
//! # let _ = FORBIDDEN;
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use fortress_core::audit::{AuditEvent, AuditSink};
use fortress_core::body::{self, Body};
use fortress_core::call::{Action, Attributes, Call, Resource, ResourceKind};
use fortress_core::denial::{Denial, DenialKind, Responder};
use fortress_core::subject::{Subject, WorkspaceId};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::Service;

use crate::jsonrpc::{ErrorObject, INTERNAL_ERROR, Message, Request, parse_message};
use crate::upstream::ClientRequester;
use crate::version::{ClientContext, Era};

/// Content type of seam bodies: JSON-RPC messages, one per line.
pub const SEAM_CONTENT_TYPE: &str = "application/x-ndjson";

/// JSON-RPC error code: the caller is not authenticated.
pub const UNAUTHENTICATED: i64 = -31001;
/// JSON-RPC error code: the connector's credential is unavailable.
pub const CREDENTIAL_UNAVAILABLE: i64 = -31002;
/// JSON-RPC error code: denied by policy.
pub const FORBIDDEN: i64 = -31003;
/// JSON-RPC error code: stopped by a kill switch.
pub const KILL_SWITCH: i64 = -31004;
/// JSON-RPC error code: a rate limit or budget was hit.
pub const RATE_LIMITED: i64 = -31029;

/// One client request on its way to the virtual server.
#[derive(Clone)]
pub struct McpMessage {
    /// The request, with the client's own id and names as the client sent them.
    pub request: Request,
    /// The client's era, version and capabilities.
    pub client: Arc<ClientContext>,
    /// How upstreams may ask this client questions inline, if they can.
    pub requester: Option<Arc<dyn ClientRequester>>,
    /// Cancelled when the client cancels or goes away.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for McpMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpMessage")
            .field("id", &self.request.id)
            .field("method", &self.request.method)
            .field("era", &self.client.era)
            .finish_non_exhaustive()
    }
}

impl McpMessage {
    /// Wraps the message in the HTTP request the seam service takes.
    pub fn into_http(self) -> http::Request<McpMessage> {
        let mut request = http::Request::new(self);
        *request.method_mut() = http::Method::POST;
        request
    }
}

/// The seam: any service of this shape can stand between the edge and the upstreams.
pub type SeamService =
    tower::util::BoxCloneSyncService<http::Request<McpMessage>, http::Response<Body>, Infallible>;

/// Which connector item a request addresses, as the virtual server resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The upstream's index in the virtual server when the target was resolved (the set
    /// can change while serving: route by `connector`).
    pub upstream: usize,
    /// The upstream's configured name (the connector).
    pub connector: String,
    /// Tool, resource or prompt.
    pub kind: ResourceKind,
    /// The item's own name or URI at the upstream.
    pub id: String,
}

/// Resolves a request to the connector item it addresses.
pub trait Resolve: Send + Sync + 'static {
    /// `Ok(None)` for requests that address no single item (lists); an error for names
    /// that match no upstream.
    fn target(&self, request: &Request) -> Result<Option<Target>, ErrorObject>;
}

/// Describes one MCP request as a [`Call`].
pub fn describe(subject: Subject, message: &McpMessage, target: Option<&Target>) -> Call {
    let request = &message.request;
    let workspace = Resource::workspace(subject.workspace.as_str());
    let on_target = |kind: ResourceKind| match target {
        Some(t) => Resource::new(kind, t.id.clone(), Some(t.connector.clone())),
        None => workspace.clone(),
    };
    let mut attributes = Attributes::default();
    let (action, resource) = match request.method.as_str() {
        "tools/call" => {
            attributes.tool_arguments = Some(
                request
                    .param("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            );
            (Action::CallTool, on_target(ResourceKind::Tool))
        }
        "resources/read" => (Action::ReadResource, on_target(ResourceKind::Resource)),
        "prompts/get" => {
            if let Some(args) = request.param("arguments") {
                attributes
                    .extra
                    .insert("prompt_arguments".into(), args.clone());
            }
            (Action::GetPrompt, on_target(ResourceKind::Prompt))
        }
        "tools/list" => (Action::ListTools, workspace.clone()),
        "resources/list" | "resources/templates/list" => (Action::ListResources, workspace.clone()),
        "prompts/list" => (Action::ListPrompts, workspace.clone()),
        // Subscribing to a resource, or completing a prompt's or resource template's
        // arguments, reveals what reading it would: decided as reading it (the Cedar schema
        // has no separate actions, so they would otherwise always fail closed).
        "resources/subscribe" | "resources/unsubscribe" if target.is_some() => {
            (Action::ReadResource, on_target(ResourceKind::Resource))
        }
        "completion/complete" if target.is_some_and(|t| t.kind == ResourceKind::Prompt) => {
            (Action::GetPrompt, on_target(ResourceKind::Prompt))
        }
        "completion/complete" if target.is_some() => {
            (Action::ReadResource, on_target(ResourceKind::Resource))
        }
        other => {
            let kind = target.map(|t| t.kind).unwrap_or(ResourceKind::Workspace);
            (Action::Custom(other.to_owned()), on_target(kind))
        }
    };
    attributes
        .extra
        .insert("mcp.method".into(), Value::from(request.method.clone()));
    attributes.extra.insert(
        "mcp.protocol_version".into(),
        Value::from(message.client.protocol_version.clone()),
    );
    attributes.extra.insert(
        "mcp.era".into(),
        Value::from(match message.client.era {
            Era::Modern => "modern",
            Era::Legacy => "legacy",
        }),
    );
    Call::new(subject, action, resource).with_attributes(attributes)
}

/// The client's address, as a request extension (it becomes the call's `client_ip`).
#[derive(Clone, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Attaches the `Arc<Call>` description to each request.
#[derive(Clone)]
#[must_use]
pub struct DescribeLayer {
    resolve: Arc<dyn Resolve>,
    default_subject: Subject,
    audit: Option<Arc<dyn AuditSink>>,
}

impl DescribeLayer {
    /// Resolves targets with `resolve`; requests without a [`Subject`] extension are
    /// described as `default_subject`'s.
    pub fn new(resolve: Arc<dyn Resolve>, default_subject: Subject) -> Self {
        Self {
            resolve,
            default_subject,
            audit: None,
        }
    }

    /// Records the refusals this layer makes itself (an API key's scopes not covering the
    /// action) in `sink`, as the governance stack records its own.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// A layer with the anonymous local subject `anonymous` in workspace `local`.
    pub fn anonymous(resolve: Arc<dyn Resolve>) -> Self {
        Self::new(
            resolve,
            Subject::user("anonymous", WorkspaceId::new("local")),
        )
    }
}

impl<S> Layer<S> for DescribeLayer {
    type Service = Describe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Describe {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`DescribeLayer`].
#[derive(Clone)]
pub struct Describe<S> {
    inner: S,
    layer: DescribeLayer,
}

impl<S> Service<http::Request<McpMessage>> for Describe<S>
where
    S: Service<http::Request<McpMessage>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::BoxFuture<'static, Result<http::Response<Body>, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<McpMessage>) -> Self::Future {
        let subject = request
            .extensions()
            .get::<Subject>()
            .cloned()
            .unwrap_or_else(|| self.layer.default_subject.clone());
        let client_ip = request.extensions().get::<ClientAddr>().map(|a| a.0);
        let target = match self.layer.resolve.target(&request.body().request) {
            Ok(target) => target,
            Err(error) => {
                let mut call = describe(subject, request.body(), None);
                call.attributes.client_ip = client_ip;
                if let Some(resource) = unresolved_resource(&request.body().request) {
                    call.resource = resource;
                }
                let event = unresolved_refusal(&call, &error);
                return futures_util::future::Either::Right(Box::pin(refuse_recorded(
                    self.layer.audit.clone(),
                    event,
                    error_response(error),
                )));
            }
        };
        let mut call = describe(subject, request.body(), target.as_ref());
        call.attributes.client_ip = client_ip;
        // An API key limited to some actions cannot reach the others, whatever policy says.
        if let Some(scopes) = request.extensions().get::<crate::auth::KeyScopes>()
            && !scopes.allows(&call.action)
        {
            let denial = Denial::new(
                DenialKind::Forbidden,
                format!("the API key's scopes do not cover {}", call.action),
            );
            let event = AuditEvent::scope_refusal(&call, &scopes.0, &denial.message);
            return futures_util::future::Either::Right(Box::pin(refuse_recorded(
                self.layer.audit.clone(),
                event,
                JsonRpcResponder.respond(&denial),
            )));
        }
        request.extensions_mut().insert(Arc::new(call));
        if let Some(target) = target {
            request.extensions_mut().insert(target);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        futures_util::future::Either::Left(inner.call(request))
    }
}

/// Answers a refusal made in front of the governance stack once its event is recorded: a
/// refusal is never missing from the trail (the answer becomes an internal error when the
/// trail cannot take it).
async fn refuse_recorded(
    audit: Option<Arc<dyn AuditSink>>,
    event: AuditEvent,
    answer: http::Response<Body>,
) -> Result<http::Response<Body>, Infallible> {
    if let Some(audit) = audit
        && let Err(error) = audit.record(event).await
    {
        tracing::error!(%error, "a refusal at the seam was not audited");
        let failed = Denial::new(DenialKind::Internal, "the audit trail is unavailable");
        return Ok(JsonRpcResponder.respond(&failed));
    }
    Ok(answer)
}

/// The item a request names when that name matches no upstream (an unknown tool, prompt or
/// resource), so its refusal is recorded against what was asked for.
fn unresolved_resource(request: &Request) -> Option<Resource> {
    let (kind, field) = match request.method.as_str() {
        "tools/call" => (ResourceKind::Tool, "name"),
        "prompts/get" => (ResourceKind::Prompt, "name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (ResourceKind::Resource, "uri")
        }
        _ => return None,
    };
    let name = request.str_param(field)?;
    Some(Resource::new(kind, name, None))
}

/// The audit event of a request refused because what it names resolves to no upstream.
fn unresolved_refusal(call: &Call, error: &ErrorObject) -> AuditEvent {
    let mut event = AuditEvent::refusal(call, "unknown_target", &error.message);
    event
        .detail
        .insert("jsonrpc_error".into(), Value::from(error.code));
    event
}

/// A seam response carrying one JSON-RPC error (its id is filled in by the edge).
pub fn error_response(error: ErrorObject) -> http::Response<Body> {
    let message = Message::Response(crate::jsonrpc::Response::error(None, error));
    let mut line = message.to_vec();
    line.push(b'\n');
    let mut response = http::Response::new(body::full(line));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(SEAM_CONTENT_TYPE),
    );
    response
}

/// Renders refusals of the core layers as JSON-RPC errors.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRpcResponder;

impl JsonRpcResponder {
    /// The JSON-RPC error for a denial.
    pub fn error_for(denial: &Denial) -> ErrorObject {
        let code = match denial.kind {
            DenialKind::Unauthenticated => UNAUTHENTICATED,
            DenialKind::Forbidden => FORBIDDEN,
            DenialKind::RateLimited => RATE_LIMITED,
            DenialKind::KillSwitch => KILL_SWITCH,
            DenialKind::CredentialUnavailable => CREDENTIAL_UNAVAILABLE,
            _ => INTERNAL_ERROR,
        };
        let mut data = json!({ "denial": denial.kind.as_str() });
        if let Some(retry) = denial.retry_after {
            data["retryAfterSeconds"] = Value::from(retry.as_secs().max(1));
        }
        ErrorObject::new(code, denial.message.clone()).with_data(data)
    }
}

impl Responder for JsonRpcResponder {
    fn respond(&self, denial: &Denial) -> http::Response<Body> {
        let mut response = error_response(Self::error_for(denial));
        response.headers_mut().insert(
            "x-fortress-denial",
            http::HeaderValue::from_static(denial.kind.as_str()),
        );
        response
    }
}

/// Reads the JSON-RPC messages of a seam body, one per line, however the body is framed.
pub struct MessageReader {
    body: Body,
    buffer: BytesMut,
    queue: VecDeque<Result<Message, ErrorObject>>,
    limit: usize,
    done: bool,
}

impl MessageReader {
    /// Reads `body`, refusing lines over `limit` bytes.
    pub fn new(body: Body, limit: usize) -> Self {
        Self {
            body,
            buffer: BytesMut::new(),
            queue: VecDeque::new(),
            limit,
            done: false,
        }
    }

    fn split_lines(&mut self) {
        while let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
            let line = self.buffer.split_to(pos + 1);
            let line = &line[..pos];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.queue.push_back(parse_message(line));
        }
    }

    /// The next message; `None` at the end of the body.
    pub async fn next(&mut self) -> Option<Result<Message, ErrorObject>> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some(message);
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                        self.split_lines();
                        if self.buffer.len() > self.limit {
                            self.done = true;
                            return Some(Err(ErrorObject::internal("relayed message too large")));
                        }
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(ErrorObject::internal(format!("relay failed: {e}"))));
                }
                None => {
                    self.done = true;
                    let rest = std::mem::take(&mut self.buffer);
                    if !rest.iter().all(u8::is_ascii_whitespace) {
                        self.queue.push_back(parse_message(&rest));
                    }
                }
            }
        }
    }
}

/// Frames one message as a seam body line.
pub fn line(message: &Message) -> Bytes {
    let mut text = message.to_vec();
    text.push(b'\n');
    Bytes::from(text)
}

/// Assembles the seam: describe, then the governance stack when one is given, then the
/// virtual server. Build such a stack with
/// [`McpResultRedaction`](crate::governance::McpResultRedaction) as its body redaction (the
/// core default would treat the NDJSON seam body as plain text). For list filtering and
/// tool pinning as well, use [`Governance::seam`](crate::governance::Governance::seam).
pub fn seam_service(
    server: Arc<crate::virtual_server::VirtualServer>,
    governance: Option<&fortress_core::stack::GovernanceStack>,
) -> SeamService {
    let describe = DescribeLayer::anonymous(server.clone());
    seam_with(server, governance, describe)
}

/// [`seam_service`] whose unauthenticated requests act as `subject` (for example the
/// demo's local user in the demo workspace).
pub fn seam_service_as(
    server: Arc<crate::virtual_server::VirtualServer>,
    governance: Option<&fortress_core::stack::GovernanceStack>,
    subject: Subject,
) -> SeamService {
    let describe = DescribeLayer::new(server.clone(), subject);
    seam_with(server, governance, describe)
}

fn seam_with(
    server: Arc<crate::virtual_server::VirtualServer>,
    governance: Option<&fortress_core::stack::GovernanceStack>,
    describe: DescribeLayer,
) -> SeamService {
    let inner = crate::virtual_server::VirtualService::new(server);
    match governance {
        Some(stack) => SeamService::new(
            tower::ServiceBuilder::new()
                .layer(describe.with_audit(stack.audit_sink()))
                .layer(stack.layer(fortress_core::layer::credential::ExtensionInjector))
                .service(inner),
        ),
        None => SeamService::new(describe.layer(inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;

    fn message(method: &str, params: Value) -> McpMessage {
        McpMessage {
            request: Request::new(Id::Number(1), method, params.as_object().cloned()),
            client: Arc::new(ClientContext::legacy(
                "2025-11-25",
                Default::default(),
                None,
            )),
            requester: None,
            cancel: CancellationToken::new(),
        }
    }

    fn target(kind: ResourceKind, id: &str) -> Target {
        Target {
            upstream: 0,
            connector: "zendesk".into(),
            kind,
            id: id.into(),
        }
    }

    fn alice() -> Subject {
        Subject::user("alice", WorkspaceId::new("acme"))
    }

    #[test]
    fn tool_calls_are_described_with_connector_tool_and_arguments() {
        let m = message(
            "tools/call",
            json!({"name": "zendesk__search", "arguments": {"q": "refund"}}),
        );
        let call = describe(alice(), &m, Some(&target(ResourceKind::Tool, "search")));
        assert_eq!(call.action, Action::CallTool);
        assert_eq!(call.resource, Resource::tool("zendesk", "search"));
        assert_eq!(call.attributes.tool_arguments, Some(json!({"q": "refund"})));
        assert_eq!(call.attributes.extra["mcp.era"], "legacy");
        assert_eq!(call.attributes.extra["mcp.method"], "tools/call");
    }

    #[test]
    fn reads_prompts_and_lists_are_described() {
        let read = describe(
            alice(),
            &message("resources/read", json!({"uri": "zendesk__ticket://1"})),
            Some(&target(ResourceKind::Resource, "ticket://1")),
        );
        assert_eq!(read.action, Action::ReadResource);
        assert_eq!(read.resource.to_string(), "resource:zendesk/ticket://1");
        let prompt = describe(
            alice(),
            &message("prompts/get", json!({"name": "p", "arguments": {"a": "b"}})),
            Some(&target(ResourceKind::Prompt, "p")),
        );
        assert_eq!(prompt.action, Action::GetPrompt);
        assert_eq!(
            prompt.attributes.extra["prompt_arguments"],
            json!({"a": "b"})
        );
        for (method, action) in [
            ("tools/list", Action::ListTools),
            ("resources/list", Action::ListResources),
            ("resources/templates/list", Action::ListResources),
            ("prompts/list", Action::ListPrompts),
        ] {
            let call = describe(alice(), &message(method, json!({})), None);
            assert_eq!(call.action, action);
            assert_eq!(call.resource, Resource::workspace("acme"));
        }
        let other = describe(alice(), &message("completion/complete", json!({})), None);
        assert_eq!(other.action, Action::Custom("completion/complete".into()));
        let completion = describe(
            alice(),
            &message(
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "p"}}),
            ),
            Some(&target(ResourceKind::Prompt, "p")),
        );
        assert_eq!(completion.action, Action::GetPrompt);
        assert_eq!(
            completion.attributes.extra["mcp.method"],
            "completion/complete"
        );
        let subscribe = describe(
            alice(),
            &message("resources/subscribe", json!({"uri": "zendesk__ticket://1"})),
            Some(&target(ResourceKind::Resource, "ticket://1")),
        );
        assert_eq!(subscribe.action, Action::ReadResource);
    }

    #[test]
    fn denials_become_json_rpc_errors_without_leaking_reasons() {
        let denial = Denial::new(DenialKind::RateLimited, "slow down")
            .with_retry_after(std::time::Duration::from_secs(7));
        let error = JsonRpcResponder::error_for(&denial);
        assert_eq!(error.code, RATE_LIMITED);
        assert_eq!(error.data.as_ref().unwrap()["retryAfterSeconds"], 7);
        let response = JsonRpcResponder.respond(&Denial::new(DenialKind::KillSwitch, "stopped"));
        assert_eq!(response.headers()["x-fortress-denial"], "kill_switch");
    }

    #[tokio::test]
    async fn message_reader_reassembles_lines_split_across_frames() {
        let text = "{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n";
        let (first, second) = text.split_at(17);
        let frames = futures_util::stream::iter([
            Ok::<_, fortress_core::body::BoxError>(http_body::Frame::data(Bytes::from(first))),
            Ok(http_body::Frame::data(Bytes::from(second))),
        ]);
        let mut reader =
            MessageReader::new(body::boxed(http_body_util::StreamBody::new(frames)), 1024);
        assert!(matches!(
            reader.next().await,
            Some(Ok(Message::Notification(_)))
        ));
        assert!(matches!(
            reader.next().await,
            Some(Ok(Message::Response(_)))
        ));
        assert!(reader.next().await.is_none());
    }
}
