//! Upstream MCP servers: what Fortress needs from one, whatever its transport or era.
//!
//! An [`Upstream`] answers requests ([`Upstream::request`]) and describes itself
//! ([`Upstream::describe`]). While a request runs, the upstream reports through its
//! [`CallContext`]: notifications about the request (progress, logging) go to
//! [`CallContext::events`] with the client's own progress token restored, and questions the
//! upstream asks the client (sampling, elicitation, roots) go through
//! [`CallContext::ask`]. Notifications not tied to a request (list changes) are broadcast
//! to [`Upstream::subscribe`]rs.
//!
//! Two transports: [`stdio::StdioUpstream`] (a supervised child process) and
//! [`http::HttpUpstream`] (Streamable HTTP). Both detect the upstream's era as the
//! specification describes (spec 2026-07-28, Versioning › Backward Compatibility) and cache it.

pub mod credential;
pub mod credentialed;
pub mod http;
pub mod stdio;

mod legacy_sse;
mod peer;
mod pool;
mod progress;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{ErrorObject, Message, Notification, UPSTREAM_ERROR};
use crate::version::{ClientContext, Era};

pub(crate) use progress::ProgressRoutes;

/// Asks the client a question on an upstream's behalf (a server-to-client request).
#[async_trait]
pub trait ClientRequester: Send + Sync + 'static {
    /// Sends `method` to the client through `via` (the stream of the request being served)
    /// and waits for its answer.
    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        via: &mpsc::Sender<Message>,
    ) -> Result<Value, ErrorObject>;
}

/// Everything an upstream needs while serving one client request.
#[derive(Clone)]
pub struct CallContext {
    /// Who is asking, in which era, with which capabilities.
    pub client: Arc<ClientContext>,
    /// Messages for the client about this request (progress, logging, server requests).
    pub events: mpsc::Sender<Message>,
    /// How to ask the client something; `None` when the client cannot be asked inline.
    pub requester: Option<Arc<dyn ClientRequester>>,
    /// Cancelled when the client goes away or cancels the request.
    pub cancel: CancellationToken,
    /// The connector credential the governance stack resolved for this one request, if
    /// any (REST connectors put it on their outbound request). Dropped, and zeroized, with
    /// the last clone of the context.
    pub credential: Option<Arc<fortress_core::vault::Credential>>,
    /// The governed call this request serves (who is asking), when governance described
    /// it: upstreams with their own vault credential resolve it for this subject.
    pub call: Option<Arc<fortress_core::call::Call>>,
    /// The call's audit notes, for what the upstream resolves (credential slot, version).
    pub notes: Option<fortress_core::layer::CallNotes>,
}

impl CallContext {
    /// A context that relays nothing (for internal requests such as list refreshes).
    pub fn detached(client: Arc<ClientContext>) -> Self {
        let (events, _) = mpsc::channel(1);
        Self {
            client,
            events,
            requester: None,
            cancel: CancellationToken::new(),
            credential: None,
            call: None,
            notes: None,
        }
    }

    /// Asks the client (sampling, elicitation, roots), if it declared the capability and can
    /// be asked inline.
    pub async fn ask(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
    ) -> Result<Value, ErrorObject> {
        let capability = match method {
            "sampling/createMessage" => Some("sampling"),
            "elicitation/create" => Some("elicitation"),
            "roots/list" => Some("roots"),
            _ => None,
        };
        if let Some(capability) = capability {
            if !self.client.has_capability(capability) {
                return Err(ErrorObject::new(
                    crate::jsonrpc::METHOD_NOT_FOUND,
                    format!("the client did not declare the {capability} capability"),
                ));
            }
        }
        let Some(requester) = &self.requester else {
            return Err(ErrorObject::new(
                crate::jsonrpc::METHOD_NOT_FOUND,
                format!("the client cannot be asked {method} inline"),
            ));
        };
        tokio::select! {
            answer = requester.request(method, params, &self.events) => answer,
            () = self.cancel.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled")),
        }
    }

    /// Forwards a notification to the client; a client that went away is not an error.
    pub async fn notify(&self, notification: Notification) {
        let _ = self.events.send(Message::Notification(notification)).await;
    }
}

/// What an upstream said about itself when Fortress connected.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerDescription {
    /// Its era.
    pub era: Era,
    /// The protocol revision Fortress speaks with it.
    pub protocol_version: String,
    /// Its `ServerCapabilities`.
    pub capabilities: Map<String, Value>,
    /// Its `Implementation` (name, version), if it gave one.
    pub server_info: Option<Value>,
    /// Its instructions, if any.
    pub instructions: Option<String>,
}

impl ServerDescription {
    /// Reads an `initialize` result (legacy).
    pub(crate) fn from_initialize(result: &Value) -> Result<Self, ErrorObject> {
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ErrorObject::new(UPSTREAM_ERROR, "initialize result has no protocolVersion")
            })?;
        if crate::version::era_of(version) != Some(Era::Legacy) {
            return Err(ErrorObject::new(
                UPSTREAM_ERROR,
                format!("upstream chose unsupported protocol version {version}"),
            ));
        }
        Ok(Self {
            era: Era::Legacy,
            protocol_version: version.to_owned(),
            capabilities: object(result.get("capabilities")),
            server_info: result.get("serverInfo").cloned(),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// Reads a `server/discover` result (modern), choosing the newest shared version.
    pub(crate) fn from_discover(result: &Value) -> Result<Self, ErrorObject> {
        let supported: Vec<&str> = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let version = crate::version::MODERN_VERSIONS
            .iter()
            .find(|v| supported.contains(v))
            .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "no shared modern protocol version"))?;
        Ok(Self {
            era: Era::Modern,
            protocol_version: (*version).to_owned(),
            capabilities: object(result.get("capabilities")),
            server_info: result
                .get("_meta")
                .and_then(|m| m.get(crate::version::META_SERVER_INFO))
                .or_else(|| result.get("serverInfo"))
                .cloned(),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

fn object(value: Option<&Value>) -> Map<String, Value> {
    value
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// An upstream MCP server.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// The name it is configured under (the namespace prefix).
    fn name(&self) -> &str;

    /// Sends a request and waits for its result or JSON-RPC error. `params` are the client's,
    /// with names already translated; the upstream adds what its era needs.
    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject>;

    /// What the upstream said about itself (connecting first if needed).
    async fn describe(&self) -> Result<ServerDescription, ErrorObject>;

    /// [`describe`](Self::describe) on behalf of the call `ctx` serves: an upstream that
    /// connects with its caller's credential connects with this one's.
    async fn describe_for(&self, ctx: &CallContext) -> Result<ServerDescription, ErrorObject> {
        let _ = ctx;
        self.describe().await
    }

    /// Notifications not tied to a request (list changes, resource updates, logging).
    fn subscribe(&self) -> broadcast::Receiver<Notification>;
}

/// The `_meta` a modern request carries for `client`.
pub(crate) fn modern_meta(params: &mut Map<String, Value>, version: &str, client: &ClientContext) {
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(meta) = meta {
        meta.insert(
            crate::version::META_PROTOCOL_VERSION.into(),
            Value::from(version),
        );
        meta.insert(
            crate::version::META_CLIENT_CAPABILITIES.into(),
            Value::Object(client.capabilities.clone()),
        );
        let info = client.client_info.clone().unwrap_or_else(fortress_info);
        meta.insert(crate::version::META_CLIENT_INFO.into(), info);
    }
}

/// Removes the modern per-request `_meta` keys before a legacy upstream sees the params.
pub(crate) fn strip_modern_meta(params: &mut Map<String, Value>) {
    let empty = match params.get_mut("_meta") {
        Some(Value::Object(meta)) => {
            meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            meta.is_empty()
        }
        _ => false,
    };
    if empty {
        params.remove("_meta");
    }
}

/// Fortress's own `Implementation` (as `clientInfo` upstream, `serverInfo` to clients).
pub fn fortress_info() -> Value {
    serde_json::json!({ "name": "fortress-mcp", "version": env!("CARGO_PKG_VERSION") })
}

/// The capabilities Fortress declares to legacy upstreams: it relays every client feature.
pub(crate) fn relayed_client_capabilities() -> Value {
    serde_json::json!({
        "sampling": {},
        "elicitation": { "form": {}, "url": {} },
        "roots": { "listChanged": true }
    })
}

/// How many `input_required` rounds Fortress drives for a client that cannot.
const MAX_INPUT_ROUNDS: usize = 8;

/// Sends a request to a modern upstream and, when the client is legacy (it cannot retry with
/// `inputResponses` itself), fulfils each `input_required` round by asking the client the
/// embedded requests as ordinary server-to-client requests, then retries
/// (spec 2026-07-28, Basic › Patterns › Multi Round-Trip Requests). Modern clients get the
/// `input_required` result as is and retry themselves.
pub(crate) async fn with_input_rounds<F, Fut>(
    ctx: &CallContext,
    mut params: Map<String, Value>,
    mut send: F,
) -> Result<Value, ErrorObject>
where
    F: FnMut(Map<String, Value>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ErrorObject>>,
{
    if ctx.client.era == Era::Modern {
        // Modern clients answer `input_required` themselves: one exchange, no copy kept.
        return send(params).await;
    }
    for _ in 0..MAX_INPUT_ROUNDS {
        let result = send(params.clone()).await?;
        let input_required =
            result.get("resultType").and_then(Value::as_str) == Some("input_required");
        if !input_required {
            return Ok(result);
        }
        let mut responses = Map::new();
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, request) in requests {
                let method = request
                    .get("method")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ErrorObject::new(UPSTREAM_ERROR, "input request without method")
                    })?;
                let request_params = request.get("params").and_then(Value::as_object).cloned();
                let answer = ctx.ask(method, request_params).await?;
                responses.insert(key.clone(), answer);
            }
        }
        params.insert("inputResponses".into(), Value::Object(responses));
        match result.get("requestState") {
            Some(state) => params.insert("requestState".into(), state.clone()),
            None => params.remove("requestState"),
        };
    }
    Err(ErrorObject::new(
        UPSTREAM_ERROR,
        "the upstream asked for input too many times",
    ))
}
