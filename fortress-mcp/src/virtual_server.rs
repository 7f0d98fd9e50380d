//! One virtual MCP server aggregating every upstream.
//!
//! Tools and prompts appear as `{upstream}{separator}{name}`, resources and resource templates
//! as `{upstream}{separator}{uri}`; upstream names may not contain the separator, so the
//! first separator in a virtual name splits it unambiguously and collisions are impossible.
//! With a single upstream, prefixing can be turned off: names, URIs and cursors then pass
//! through untouched, and the gateway is transparent.
//!
//! The set of upstreams can change while serving ([`VirtualServer::add_upstream`],
//! [`VirtualServer::remove_upstream`]): each request works on the set as it was when it
//! started, calls are routed by upstream name (never by position), and clients are told
//! with `notifications/tools/list_changed`.
//!
//! Lists are paginated per upstream: one virtual page is one upstream page, and the virtual
//! cursor records which upstream and which upstream cursor come next (spec 2025-11-25,
//! Server › Utilities › Pagination: cursors are opaque to clients).
//!
//! ```
//! use fortress_mcp::virtual_server::Naming;
//! let naming = Naming::default();
//! assert_eq!(naming.separator, "__");
//! ```

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use base64::Engine as _;
use fortress_core::body::{self, Body};
use fortress_core::call::ResourceKind;
use http_body::Frame;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};
use tower::Service;

use crate::jsonrpc::{ErrorObject, Id, Message, Notification, Request, Response, UPSTREAM_ERROR};
use crate::seam::{McpMessage, Resolve, SEAM_CONTENT_TYPE, Target};
use crate::upstream::{CallContext, ServerDescription, Upstream};

/// How virtual names are formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    /// Between the upstream name and the item name.
    pub separator: String,
    /// Whether names are prefixed at all (off only with a single upstream).
    pub prefix: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Self {
            separator: "__".into(),
            prefix: true,
        }
    }
}

/// A configuration the virtual server cannot honour.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualServerError {
    /// No upstream configured.
    #[error("at least one upstream is required")]
    NoUpstreams,
    /// An upstream name is empty, repeated, or contains the separator.
    #[error("upstream name {0:?} is empty, repeated, or contains the separator")]
    BadName(String),
    /// The separator is empty.
    #[error("the namespace separator cannot be empty")]
    EmptySeparator,
    /// Prefixing is off but names could collide.
    #[error("prefixing can only be turned off with a single upstream")]
    PrefixRequired,
    /// No upstream has this name.
    #[error("no upstream is named {0:?}")]
    UnknownUpstream(String),
}

/// The kinds of lists a virtual server merges.
#[derive(Clone, Copy, Debug)]
struct ListKind {
    items: &'static str,
    field: &'static str,
    capability: &'static str,
}

fn list_kind(method: &str) -> Option<ListKind> {
    let (items, field, capability) = match method {
        "tools/list" => ("tools", "name", "tools"),
        "prompts/list" => ("prompts", "name", "prompts"),
        "resources/list" => ("resources", "uri", "resources"),
        "resources/templates/list" => ("resourceTemplates", "uriTemplate", "resources"),
        _ => return None,
    };
    Some(ListKind {
        items,
        field,
        capability,
    })
}

/// The upstreams as one request sees them.
type Upstreams = Arc<[Arc<dyn Upstream>]>;

/// The aggregating server.
pub struct VirtualServer {
    upstreams: RwLock<Upstreams>,
    naming: Naming,
    notifications: broadcast::Sender<Notification>,
}

impl VirtualServer {
    /// Aggregates `upstreams` named as `naming` says. Call within a tokio runtime so the
    /// upstreams' notifications are relayed.
    pub fn new(
        upstreams: Vec<Arc<dyn Upstream>>,
        naming: Naming,
    ) -> Result<Self, VirtualServerError> {
        if upstreams.is_empty() {
            return Err(VirtualServerError::NoUpstreams);
        }
        Self::managed(upstreams, naming)
    }

    /// Like [`new`](Self::new), for a server whose upstreams are managed at runtime: it
    /// may start with none.
    pub fn managed(
        upstreams: Vec<Arc<dyn Upstream>>,
        naming: Naming,
    ) -> Result<Self, VirtualServerError> {
        if naming.separator.is_empty() {
            return Err(VirtualServerError::EmptySeparator);
        }
        if !naming.prefix && upstreams.len() > 1 {
            return Err(VirtualServerError::PrefixRequired);
        }
        for (i, u) in upstreams.iter().enumerate() {
            check_name(u.name(), &upstreams[..i], &naming)?;
        }
        let notifications = broadcast::channel(256).0;
        let server = Self {
            upstreams: RwLock::new(upstreams.into()),
            naming,
            notifications,
        };
        for upstream in server.upstreams().iter() {
            server.relay_notifications(upstream);
        }
        Ok(server)
    }

    /// Adds an upstream while serving; clients are told that the tool list changed.
    pub fn add_upstream(&self, upstream: Arc<dyn Upstream>) -> Result<(), VirtualServerError> {
        {
            let mut upstreams = self.upstreams.write().unwrap_or_else(|e| e.into_inner());
            if !self.naming.prefix && !upstreams.is_empty() {
                return Err(VirtualServerError::PrefixRequired);
            }
            check_name(upstream.name(), &upstreams, &self.naming)?;
            let mut next = upstreams.to_vec();
            next.push(upstream.clone());
            *upstreams = next.into();
        }
        self.relay_notifications(&upstream);
        self.lists_changed();
        Ok(())
    }

    /// Removes an upstream while serving and returns it; requests that already started
    /// finish with it, later ones no longer see it. Clients are told that the tool list
    /// changed.
    pub fn remove_upstream(&self, name: &str) -> Result<Arc<dyn Upstream>, VirtualServerError> {
        let removed = {
            let mut upstreams = self.upstreams.write().unwrap_or_else(|e| e.into_inner());
            let at = upstreams
                .iter()
                .position(|u| u.name() == name)
                .ok_or_else(|| VirtualServerError::UnknownUpstream(name.to_owned()))?;
            let mut next = upstreams.to_vec();
            let removed = next.remove(at);
            *upstreams = next.into();
            removed
        };
        self.lists_changed();
        Ok(removed)
    }

    /// The upstream named `name`, if it is (still) served.
    pub fn upstream(&self, name: &str) -> Option<Arc<dyn Upstream>> {
        self.upstreams().iter().find(|u| u.name() == name).cloned()
    }

    fn lists_changed(&self) {
        // Nobody listening is fine: clients also see the change at their next list.
        let _ = self
            .notifications
            .send(Notification::new("notifications/tools/list_changed", None));
    }

    fn relay_notifications(&self, upstream: &Arc<dyn Upstream>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut rx = upstream.subscribe();
            let tx = self.notifications.clone();
            let prefix = self
                .naming
                .prefix
                .then(|| format!("{}{}", upstream.name(), self.naming.separator));
            handle.spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(mut n) => {
                            if let (Some(prefix), Some(params)) = (&prefix, n.params.as_mut()) {
                                if let Some(Value::String(uri)) = params.get_mut("uri") {
                                    *uri = format!("{prefix}{uri}");
                                }
                            }
                            let _ = tx.send(n);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
    }

    /// Notifications not tied to a request, from every upstream, with URIs namespaced.
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notifications.subscribe()
    }

    /// Whether names pass through untouched.
    pub fn transparent(&self) -> bool {
        !self.naming.prefix
    }

    /// The upstreams served now (a snapshot: later changes do not alter it).
    pub fn upstreams(&self) -> Upstreams {
        self.upstreams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn virtual_name(&self, upstream: &str, name: &str) -> String {
        if self.naming.prefix {
            format!("{upstream}{}{name}", self.naming.separator)
        } else {
            name.to_owned()
        }
    }

    fn split(&self, name: &str, kind: ResourceKind) -> Result<Target, ErrorObject> {
        let unknown = || ErrorObject::invalid_params(format!("unknown {}: {name}", kind.as_str()));
        let upstreams = self.upstreams();
        if !self.naming.prefix {
            let only = upstreams.first().ok_or_else(unknown)?;
            return Ok(Target {
                upstream: 0,
                connector: only.name().to_owned(),
                kind,
                id: name.to_owned(),
            });
        }
        let (prefix, rest) = name
            .split_once(self.naming.separator.as_str())
            .ok_or_else(unknown)?;
        let upstream = upstreams
            .iter()
            .position(|u| u.name() == prefix)
            .ok_or_else(unknown)?;
        Ok(Target {
            upstream,
            connector: prefix.to_owned(),
            kind,
            id: rest.to_owned(),
        })
    }

    /// What the virtual server says about itself: with one upstream, exactly what it said;
    /// with several, the union of their capabilities.
    pub async fn description(&self) -> Result<ServerDescription, ErrorObject> {
        let upstreams = self.upstreams();
        if upstreams.len() == 1 {
            return upstreams[0].describe().await.map(relayable);
        }
        let mut capabilities = Map::new();
        let mut instructions = Vec::new();
        for upstream in upstreams.iter() {
            let Ok(d) = upstream.describe().await.map(relayable) else {
                continue;
            };
            for (key, value) in d.capabilities {
                let entry = capabilities.entry(key).or_insert_with(|| json!({}));
                if let (Some(into), Some(from)) = (entry.as_object_mut(), value.as_object()) {
                    for (k, v) in from {
                        if v == &Value::Bool(true) || !into.contains_key(k) {
                            into.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            if let Some(i) = d.instructions {
                instructions.push(format!("{}: {i}", upstream.name()));
            }
        }
        Ok(ServerDescription {
            era: crate::version::Era::Modern,
            protocol_version: crate::version::LATEST_MODERN.into(),
            capabilities,
            server_info: Some(
                json!({ "name": "fortress-mcp", "version": env!("CARGO_PKG_VERSION") }),
            ),
            instructions: (!instructions.is_empty()).then(|| instructions.join("\n")),
        })
    }

    /// Relays a legacy client's `logging/setLevel` to every legacy upstream that logs
    /// (modern upstreams take the level in each request's `_meta` instead). An upstream
    /// that refuses is logged and skipped: the level is advisory.
    pub async fn set_log_level(&self, level: &str, client: Arc<crate::version::ClientContext>) {
        for upstream in self.upstreams().iter() {
            let Ok(description) = upstream.describe().await else {
                continue;
            };
            if description.era != crate::version::Era::Legacy
                || !description.capabilities.contains_key("logging")
            {
                continue;
            }
            let mut params = Map::new();
            params.insert("level".into(), Value::from(level));
            let ctx = CallContext::detached(client.clone());
            if let Err(e) = upstream
                .request("logging/setLevel", Some(params), ctx)
                .await
            {
                tracing::info!(upstream = upstream.name(), %e, "upstream refused logging/setLevel");
            }
        }
    }

    /// Serves one request.
    pub async fn dispatch(
        &self,
        request: &Request,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        if let Some(kind) = list_kind(&request.method) {
            return self.list(kind, request, ctx).await;
        }
        match request.method.as_str() {
            "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete" => {
                let params = request.params.clone().unwrap_or_default();
                self.route(request, params, ctx).await
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    /// [`dispatch`](Self::dispatch) for a request the caller gives away: its params move
    /// upstream instead of being copied.
    async fn dispatch_owned(
        &self,
        mut request: Request,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        if list_kind(&request.method).is_some() {
            return self.dispatch(&request, ctx).await;
        }
        match request.method.as_str() {
            "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete" => {
                let target = self.target(&request)?;
                let params = request.params.take().unwrap_or_default();
                self.route_to(target, &request.method, params, ctx).await
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn list(
        &self,
        kind: ListKind,
        request: &Request,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let cursor = match request.param("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(c.clone()),
            Some(_) => return Err(ErrorObject::invalid_params("cursor must be a string")),
        };
        let upstreams = self.upstreams();
        let (start, mut upstream_cursor) = match (&cursor, self.transparent()) {
            (_, true) => (0, cursor.clone()),
            (None, false) => (0, None),
            (Some(c), false) => decode_cursor(&upstreams, c)?,
        };
        let aggregated = upstreams.len() > 1;
        for index in start..upstreams.len() {
            let upstream = &upstreams[index];
            match upstream.describe_for(&ctx).await {
                Ok(d) if !d.capabilities.contains_key(kind.capability) => {
                    upstream_cursor = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) if aggregated => {
                    tracing::warn!(upstream = upstream.name(), %e, "upstream unavailable; listing without it");
                    upstream_cursor = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut params = request.params.clone().unwrap_or_default();
            params.remove("cursor");
            if let Some(c) = upstream_cursor.take() {
                params.insert("cursor".into(), Value::from(c));
            }
            let method = request.method.as_str();
            let mut result = match upstream.request(method, Some(params), ctx.clone()).await {
                Ok(result) => result,
                // A caller without a credential for one upstream still sees the others.
                Err(e) if aggregated && e.code == crate::seam::CREDENTIAL_UNAVAILABLE => {
                    tracing::info!(
                        upstream = upstream.name(),
                        "no credential for this caller; listing without it"
                    );
                    upstream_cursor = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(items) = result.get_mut(kind.items).and_then(Value::as_array_mut) {
                for item in items {
                    if let Some(Value::String(name)) = item.get_mut(kind.field) {
                        *name = self.virtual_name(upstream.name(), name);
                    }
                }
            }
            let next = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let next = if self.transparent() {
                next
            } else if let Some(c) = next {
                Some(encode_cursor(upstream.name(), Some(&c)))
            } else {
                upstreams
                    .get(index + 1)
                    .map(|following| encode_cursor(following.name(), None))
            };
            if let Some(obj) = result.as_object_mut() {
                match next {
                    Some(c) => obj.insert("nextCursor".into(), Value::from(c)),
                    None => obj.remove("nextCursor"),
                };
            }
            return Ok(result);
        }
        Ok(json!({ kind.items: [] }))
    }

    async fn route(
        &self,
        request: &Request,
        params: Map<String, Value>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let target = self.target(request)?;
        self.route_to(target, &request.method, params, ctx).await
    }

    async fn route_to(
        &self,
        target: Option<Target>,
        method: &str,
        mut params: Map<String, Value>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let target = target.ok_or_else(|| {
            ErrorObject::invalid_params("the request names no tool, prompt or resource")
        })?;
        rename_target(&mut params, method, &target.id);
        // By name: the set may have changed since the target was resolved, and a position
        // could then name another upstream than the one the call was governed for.
        let upstream = self.upstream(&target.connector).ok_or_else(|| {
            ErrorObject::invalid_params(format!("unknown connector: {}", target.connector))
        })?;
        let mut result = upstream.request(method, Some(params), ctx).await?;
        if method == "resources/read" && self.naming.prefix {
            if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
                for content in contents {
                    if let Some(Value::String(uri)) = content.get_mut("uri") {
                        *uri = self.virtual_name(&target.connector, uri);
                    }
                }
            }
        }
        Ok(result)
    }
}

/// An upstream's description as Fortress can relay it: resource subscriptions are relayed
/// to legacy upstreams (`resources/subscribe`) only, so a modern upstream's
/// `resources.subscribe` is not advertised.
fn relayable(mut description: ServerDescription) -> ServerDescription {
    if description.era == crate::version::Era::Modern
        && let Some(Value::Object(resources)) = description.capabilities.get_mut("resources")
    {
        resources.remove("subscribe");
    }
    description
}

/// An upstream name must be non-empty, unique and free of the separator.
fn check_name(
    name: &str,
    others: &[Arc<dyn Upstream>],
    naming: &Naming,
) -> Result<(), VirtualServerError> {
    let repeated = others.iter().any(|o| o.name() == name);
    if name.is_empty() || repeated || name.contains(naming.separator.as_str()) {
        return Err(VirtualServerError::BadName(name.to_owned()));
    }
    Ok(())
}

fn encode_cursor(upstream: &str, cursor: Option<&str>) -> String {
    let doc = json!({ "u": upstream, "c": cursor });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
}

fn decode_cursor(
    upstreams: &[Arc<dyn Upstream>],
    cursor: &str,
) -> Result<(usize, Option<String>), ErrorObject> {
    let invalid = || ErrorObject::invalid_params("invalid cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let name = doc.get("u").and_then(Value::as_str).ok_or_else(invalid)?;
    let index = upstreams
        .iter()
        .position(|u| u.name() == name)
        .ok_or_else(invalid)?;
    Ok((
        index,
        doc.get("c").and_then(Value::as_str).map(str::to_owned),
    ))
}

/// Puts the upstream's own name or URI where the request carries the virtual one.
fn rename_target(params: &mut Map<String, Value>, method: &str, id: &str) {
    match method {
        "tools/call" | "prompts/get" => {
            params.insert("name".into(), Value::from(id));
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            params.insert("uri".into(), Value::from(id));
        }
        "completion/complete" => {
            if let Some(Value::Object(reference)) = params.get_mut("ref") {
                let field = if reference.contains_key("uri") {
                    "uri"
                } else {
                    "name"
                };
                reference.insert(field.into(), Value::from(id));
            }
        }
        _ => {}
    }
}

impl Resolve for VirtualServer {
    fn target(&self, request: &Request) -> Result<Option<Target>, ErrorObject> {
        let need = |field: &str| {
            request
                .str_param(field)
                .ok_or_else(|| ErrorObject::invalid_params(format!("\"{field}\" must be a string")))
        };
        match request.method.as_str() {
            "tools/call" => self.split(need("name")?, ResourceKind::Tool).map(Some),
            "prompts/get" => self.split(need("name")?, ResourceKind::Prompt).map(Some),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.split(need("uri")?, ResourceKind::Resource).map(Some)
            }
            "completion/complete" => {
                let reference = request
                    .param("ref")
                    .and_then(Value::as_object)
                    .ok_or_else(|| ErrorObject::invalid_params("\"ref\" must be an object"))?;
                if let Some(uri) = reference.get("uri").and_then(Value::as_str) {
                    self.split(uri, ResourceKind::Resource).map(Some)
                } else if let Some(name) = reference.get("name").and_then(Value::as_str) {
                    self.split(name, ResourceKind::Prompt).map(Some)
                } else {
                    Err(ErrorObject::invalid_params("\"ref\" names nothing"))
                }
            }
            _ => Ok(None),
        }
    }
}

/// The virtual server as the innermost seam service: it runs the request and streams its
/// messages (notifications, server requests, then the final response) as the body.
///
/// For modern clients, which cannot be sent server-to-client requests, a question an
/// upstream asks mid-call (a legacy upstream's sampling, elicitation or roots request) ends
/// the client's request with an `input_required` result whose `requestState` names the
/// *parked* upstream call; the client's retry with `inputResponses` answers the upstream and
/// resumes the same call (spec 2026-07-28, Basic › Patterns › Multi Round-Trip Requests).
#[derive(Clone)]
pub struct VirtualService {
    server: Arc<VirtualServer>,
    parked: Arc<Parking>,
}

impl VirtualService {
    /// Serves `server`.
    pub fn new(server: Arc<VirtualServer>) -> Self {
        Self {
            server,
            parked: Arc::default(),
        }
    }
}

/// How long a parked call waits for the client's retry.
const PARK_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Prefix of the `requestState` tokens of parked calls.
const PARK_PREFIX: &str = "fortress-park-";
/// The key of the one input request of a parked call.
const INPUT_KEY: &str = "fortress";

/// A question an upstream asks a client that must be asked through `input_required`.
struct Ask {
    method: String,
    params: Option<Map<String, Value>>,
    answer: tokio::sync::oneshot::Sender<Result<Value, ErrorObject>>,
}

/// The upstream side of a call: a future the watching client request polls.
type CallFuture = std::pin::Pin<Box<dyn Future<Output = Result<Value, ErrorObject>> + Send>>;

/// An upstream call in progress, independent of the client request currently watching it.
/// It runs inside the watcher's response body (no task per request); a parked call is not
/// polled until the client's retry resumes it, since it waits for that answer anyway.
struct Running {
    /// `None` once it has answered.
    call: Option<CallFuture>,
    events: mpsc::Receiver<Message>,
    asks: mpsc::Receiver<Ask>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A call nobody watches any more (expired or abandoned) stops upstream: it sees the
        // cancellation and tells the upstream (notifications/cancelled), so it is run to
        // its end rather than dropped mid-exchange.
        self.cancel.cancel();
        if let Some(call) = self.call.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = call.await;
                });
            }
        }
    }
}

struct Parked {
    method: String,
    target: Option<String>,
    answer: tokio::sync::oneshot::Sender<Result<Value, ErrorObject>>,
    run: Running,
    expires: std::time::Instant,
}

#[derive(Default)]
struct Parking {
    map: std::sync::Mutex<std::collections::HashMap<String, Parked>>,
}

impl Parking {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Parked>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn park(&self, parked: Parked) -> String {
        let token = format!("{PARK_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let mut map = self.lock();
        let now = std::time::Instant::now();
        map.retain(|_, p| p.expires > now);
        map.insert(token.clone(), parked);
        token
    }

    fn take(&self, token: &str) -> Option<Parked> {
        self.lock().remove(token)
    }
}

/// Asks by parking the call: used for modern clients.
struct ParkingRequester {
    asks: mpsc::Sender<Ask>,
}

#[async_trait::async_trait]
impl crate::upstream::ClientRequester for ParkingRequester {
    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        _via: &mpsc::Sender<Message>,
    ) -> Result<Value, ErrorObject> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        let ask = Ask {
            method: method.to_owned(),
            params,
            answer,
        };
        self.asks
            .send(ask)
            .await
            .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "the client went away"))?;
        rx.await
            .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "the client did not retry in time"))?
    }
}

fn target_name(request: &Request) -> Option<String> {
    request
        .str_param("name")
        .or_else(|| request.str_param("uri"))
        .map(str::to_owned)
}

/// One client request watching a running call: it relays the call's events, and ends with
/// the call's outcome, or with an `input_required` result when the call asks a question.
struct Watcher {
    run: Option<Running>,
    id: Id,
    method: String,
    target: Option<String>,
    progress_token: Option<Value>,
    parking: Arc<Parking>,
    /// Messages due before anything else (events drained ahead of a final response).
    queued: std::collections::VecDeque<Message>,
}

/// What woke a watcher.
enum Step {
    Event(Message),
    Ask(Ask),
    Done(Result<Value, ErrorObject>),
}

impl Watcher {
    /// A watcher for `request`, before its call is attached.
    fn new(request: &Request, parking: Arc<Parking>) -> Self {
        Self {
            run: None,
            id: request.id.clone(),
            method: request.method.clone(),
            target: target_name(request),
            progress_token: request.meta().and_then(|m| m.get("progressToken")).cloned(),
            parking,
            queued: std::collections::VecDeque::new(),
        }
    }

    /// The next message for the client; `None` after the final response.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(message) = self.queued.pop_front() {
                return Some(message);
            }
            let step = {
                let run = self.run.as_mut()?;
                let call = run.call.as_mut()?;
                tokio::select! {
                    Some(event) = run.events.recv() => Step::Event(event),
                    Some(ask) = run.asks.recv() => Step::Ask(ask),
                    outcome = call => Step::Done(outcome),
                }
            };
            match step {
                Step::Event(event) => {
                    if let Some(event) = for_watcher(event, self.progress_token.as_ref()) {
                        return Some(event);
                    }
                }
                Step::Ask(ask) => self.park(ask),
                Step::Done(outcome) => self.finish(outcome),
            }
        }
    }

    /// Queues the events the call sent before it asked or answered: they belong before.
    fn drain_events(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        while let Ok(event) = run.events.try_recv() {
            if let Some(event) = for_watcher(event, self.progress_token.as_ref()) {
                self.queued.push_back(event);
            }
        }
    }

    fn park(&mut self, ask: Ask) {
        tracing::debug!(id = ?self.id, method = %ask.method, "parking the call until the client answers");
        self.drain_events();
        let Some(run) = self.run.take() else { return };
        let mut requests = Map::new();
        requests.insert(
            INPUT_KEY.into(),
            json!({ "method": ask.method, "params": ask.params }),
        );
        let token = self.parking.park(Parked {
            method: self.method.clone(),
            target: self.target.clone(),
            answer: ask.answer,
            run,
            expires: std::time::Instant::now() + PARK_TTL,
        });
        let result = json!({
            "resultType": "input_required",
            "inputRequests": Value::Object(requests),
            "requestState": token,
        });
        self.queued
            .push_back(Message::Response(Response::result(self.id.clone(), result)));
    }

    fn finish(&mut self, outcome: Result<Value, ErrorObject>) {
        if let Some(run) = self.run.as_mut() {
            run.call = None;
        }
        self.drain_events();
        self.run = None;
        let outcome = outcome.map_err(|mut e| {
            if e.code == UPSTREAM_ERROR && !e.message.starts_with("upstream error") {
                e.message = format!("upstream error: {}", e.message);
            }
            e
        });
        self.queued.push_back(Message::Response(Response {
            id: Some(self.id.clone()),
            outcome,
        }));
    }
}

/// An event of a call, as the client request now watching it must see it. Progress carries
/// the watcher's own progress token, or is dropped when the watcher gave none: a resumed call
/// was started by an earlier request whose token the client stopped tracking when that
/// request ended with `input_required` (spec 2026-07-28, Utilities › Progress: notifications
/// only reference tokens of active requests; a retry is a new request).
fn for_watcher(event: Message, progress_token: Option<&Value>) -> Option<Message> {
    match event {
        Message::Notification(mut n) if n.method == "notifications/progress" => {
            let Some(token) = progress_token else {
                tracing::debug!("progress dropped: the watching request has no progress token");
                return None;
            };
            n.params
                .get_or_insert_with(Map::new)
                .insert("progressToken".into(), token.clone());
            Some(Message::Notification(n))
        }
        other => Some(other),
    }
}

/// Whether a result of `method` may be `input_required` (spec 2026-07-28, Basic › Patterns ›
/// Multi Round-Trip Requests: `tools/call`, `prompts/get`, `resources/read`). A modern
/// client's other requests cannot be parked: an upstream question during them is refused.
fn may_require_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

impl VirtualService {
    /// A retry that answers a parked call, if this request is one.
    fn resume(&self, message: &McpMessage) -> Option<Result<Running, ErrorObject>> {
        let token = message.request.str_param("requestState")?;
        if !token.starts_with(PARK_PREFIX) {
            return None;
        }
        let Some(parked) = self.parked.take(token) else {
            return Some(Err(ErrorObject::invalid_params(
                "unknown or expired requestState",
            )));
        };
        if parked.method != message.request.method || parked.target != target_name(&message.request)
        {
            return Some(Err(ErrorObject::invalid_params(
                "requestState belongs to another request",
            )));
        }
        let answer = message
            .request
            .param("inputResponses")
            .and_then(|r| r.get(INPUT_KEY))
            .cloned()
            .ok_or_else(|| ErrorObject::invalid_params("inputResponses lacks the requested input"));
        let _ = parked.answer.send(answer);
        Some(Ok(parked.run))
    }

    fn start(
        &self,
        message: McpMessage,
        credential: Option<Arc<fortress_core::vault::Credential>>,
        governed: Governed,
    ) -> Running {
        let (events_tx, events) = mpsc::channel::<Message>(64);
        let (asks_tx, asks) = mpsc::channel::<Ask>(4);
        // A child of the client's token: the client's cancellation reaches the call directly.
        let cancel = message.cancel.child_token();
        let requester = match (&message.requester, message.client.era) {
            (Some(r), _) => Some(r.clone()),
            (None, crate::version::Era::Modern) if may_require_input(&message.request.method) => {
                Some(Arc::new(ParkingRequester { asks: asks_tx })
                    as Arc<dyn crate::upstream::ClientRequester>)
            }
            (None, _) => None,
        };
        let ctx = CallContext {
            client: message.client.clone(),
            events: events_tx,
            requester,
            cancel: cancel.clone(),
            credential,
            call: governed.call,
            notes: governed.notes,
        };
        let server = self.server.clone();
        let request = message.request;
        let call: CallFuture = Box::pin(async move { server.dispatch_owned(request, ctx).await });
        Running {
            call: Some(call),
            events,
            asks,
            cancel,
        }
    }
}

/// What governance said about a request: the described call and its audit notes.
struct Governed {
    call: Option<Arc<fortress_core::call::Call>>,
    notes: Option<fortress_core::layer::CallNotes>,
}

impl Service<http::Request<McpMessage>> for VirtualService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<McpMessage>) -> Self::Future {
        let (mut parts, message) = request.into_parts();
        // The credential the governance stack injected for this request only.
        let credential = parts
            .extensions
            .remove::<fortress_core::layer::credential::InjectedCredential>()
            .map(|c| c.0);
        let governed = Governed {
            call: parts
                .extensions
                .get::<Arc<fortress_core::call::Call>>()
                .cloned(),
            notes: parts
                .extensions
                .get::<fortress_core::layer::CallNotes>()
                .cloned(),
        };
        let mut watcher = Watcher::new(&message.request, self.parked.clone());
        let run = match self.resume(&message) {
            Some(Ok(run)) => {
                // A resumed call was started by another client request: link this one's
                // cancellation to it.
                let client_cancel = message.cancel.clone();
                let linked = run.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = client_cancel.cancelled() => linked.cancel(),
                        () = linked.cancelled() => {}
                    }
                });
                run
            }
            Some(Err(error)) => {
                return std::future::ready(Ok(crate::seam::error_response(error)));
            }
            None => self.start(message, credential, governed),
        };
        // The body drives the call; dropping it before the final message (the client went
        // away) drops the watcher and with it the running call, which cancels it.
        watcher.run = Some(run);
        let stream = futures_util::stream::unfold(watcher, |mut watcher| async move {
            let message = watcher.next().await?;
            let frame =
                Ok::<_, fortress_core::body::BoxError>(Frame::data(crate::seam::line(&message)));
            Some((frame, watcher))
        });
        let mut response =
            http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(SEAM_CONTENT_TYPE),
        );
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Era;

    fn described(era: Era) -> ServerDescription {
        ServerDescription {
            era,
            protocol_version: "v".into(),
            capabilities: json!({"resources": {"subscribe": true, "listChanged": true}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            server_info: None,
            instructions: None,
        }
    }

    #[test]
    fn subscriptions_are_advertised_only_for_upstreams_fortress_subscribes_with() {
        let legacy = relayable(described(Era::Legacy));
        assert_eq!(legacy.capabilities["resources"]["subscribe"], true);
        let modern = relayable(described(Era::Modern));
        assert!(modern.capabilities["resources"].get("subscribe").is_none());
        assert_eq!(modern.capabilities["resources"]["listChanged"], true);
    }
}
