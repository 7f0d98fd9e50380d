//! The item gate: what a subject may see in lists, and which tool versions may run.
//!
//! It sits inside the core stack (so its refusals are audited) and around the virtual
//! server:
//!
//! - **List filtering.** `tools/list`, `resources/list`, `resources/templates/list` and
//!   `prompts/list` results keep only the items the subject may use: each item is resolved
//!   to its connector and decided with the list action on that tool/resource/prompt, in one
//!   pass ([`PolicyEngine::decide_each`]). Modern-era list results are always marked
//!   `cacheScope: "private"` by the edge, since they depend on who asks.
//! - **Tool pinning** ([`crate::pinning`]). Tools whose definition is not approved are hidden
//!   from `tools/list`, and `tools/call` on one is refused (`denied by policy: … not
//!   approved`), until an admin approves it.
//!
//! A policy or pin-store failure fails closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fortress_core::body::{self, Body};
use fortress_core::call::{Call, Resource, call_of};
use fortress_core::decision::Decision;
use fortress_core::denial::{Denial, DenialKind, Responder};
use fortress_core::layer::notes_of;
use fortress_core::policy::PolicyEngine;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::jsonrpc::{Id, Message, Request};
use crate::pinning::{PinStatus, PinStore};
use crate::seam::{JsonRpcResponder, McpMessage, MessageReader, Resolve, Target, line};
use crate::upstream::CallContext;
use crate::virtual_server::VirtualServer;

/// How a list method's items are found and resolved.
struct ListShape {
    items: &'static str,
    field: &'static str,
    /// The method that addresses one item (used to resolve its virtual name).
    addressed_by: &'static str,
    name_param: &'static str,
}

fn list_shape(method: &str) -> Option<ListShape> {
    let (items, field, addressed_by, name_param) = match method {
        "tools/list" => ("tools", "name", "tools/call", "name"),
        "prompts/list" => ("prompts", "name", "prompts/get", "name"),
        "resources/list" => ("resources", "uri", "resources/read", "uri"),
        "resources/templates/list" => ("resourceTemplates", "uriTemplate", "resources/read", "uri"),
        _ => return None,
    };
    Some(ListShape {
        items,
        field,
        addressed_by,
        name_param,
    })
}

/// What the gate knows of each tool's pin status, briefly.
#[derive(Default)]
struct Seen {
    tools: HashMap<String, (PinStatus, Instant)>,
}

/// Filters lists and enforces tool pins.
#[derive(Clone)]
#[must_use]
pub struct ItemGateLayer {
    shared: Arc<Shared>,
}

struct Shared {
    policy: Arc<dyn PolicyEngine>,
    pins: Option<PinStore>,
    server: Arc<VirtualServer>,
    seen: Mutex<Seen>,
    seen_ttl: Duration,
    max_message: usize,
}

impl ItemGateLayer {
    /// Filters by `policy`, enforcing `pins` when given.
    pub fn new(
        server: Arc<VirtualServer>,
        policy: Arc<dyn PolicyEngine>,
        pins: Option<PinStore>,
    ) -> Self {
        let shared = Arc::new(Shared {
            policy,
            pins,
            server: server.clone(),
            seen: Mutex::new(Seen::default()),
            seen_ttl: Duration::from_secs(5),
            max_message: 16 * 1024 * 1024,
        });
        // An upstream announcing changed tools makes every remembered status stale.
        let weak = Arc::downgrade(&shared);
        let mut notifications = server.subscribe();
        tokio::spawn(async move {
            loop {
                match notifications.recv().await {
                    Ok(n) if n.method == "notifications/tools/list_changed" => {
                        let Some(shared) = weak.upgrade() else { return };
                        shared.forget();
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let Some(shared) = weak.upgrade() else { return };
                        if notifications.is_empty() {
                            // Lagging may have dropped a change notice.
                            shared.forget();
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { shared }
    }
}

impl Shared {
    fn forget(&self) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tools
            .clear();
    }

    fn remember(&self, tool: &str, status: &PinStatus) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tools
            .insert(tool.to_owned(), (status.clone(), Instant::now()));
    }

    fn recalled(&self, tool: &str) -> Option<PinStatus> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.tools
            .get(tool)
            .filter(|(_, at)| at.elapsed() < self.seen_ttl)
            .map(|(s, _)| s.clone())
    }
}

impl<S> Layer<S> for ItemGateLayer {
    type Service = ItemGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ItemGate {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`ItemGateLayer`].
#[derive(Clone)]
pub struct ItemGate<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn refuse(request: &http::Request<McpMessage>, denial: Denial) -> http::Response<Body> {
    if let Some(notes) = notes_of(request) {
        notes.denial(&denial);
    }
    JsonRpcResponder.respond(&denial)
}

impl<S> Service<http::Request<McpMessage>> for ItemGate<S>
where
    S: Service<http::Request<McpMessage>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<McpMessage>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let method = request.body().request.method.clone();
            if let Some(shape) = list_shape(&method) {
                let call = call_of(&request).cloned();
                let notes = notes_of(&request).cloned();
                let response = inner.call(request).await?;
                let Some(call) = call else {
                    return Ok(response);
                };
                return Ok(filter_list(&shared, &call, &shape, response, notes).await);
            }
            if method == "tools/call"
                && shared.pins.is_some()
                && let Some(target) = request.extensions().get::<Target>().cloned()
            {
                // Listed on the call's behalf: an upstream with its own vault credential
                // lists with the caller's.
                let mut ctx = CallContext::detached(request.body().client.clone());
                ctx.call = call_of(&request).cloned();
                ctx.notes = notes_of(&request).cloned();
                match pin_status(&shared, &target, &ctx).await {
                    Ok(PinStatus::Approved) => {}
                    Ok(status) => {
                        let why = match status {
                            PinStatus::Changed { .. } => "its definition changed upstream",
                            _ => "it is new",
                        };
                        let denial = Denial::new(
                            DenialKind::Forbidden,
                            format!(
                                "denied by policy: tool {} is not approved ({why}); an administrator must approve it",
                                request.body().request.str_param("name").unwrap_or("")
                            ),
                        );
                        if let Some(notes) = notes_of(&request) {
                            notes.detail("pin", Value::from("not_approved"));
                        }
                        return Ok(refuse(&request, denial));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "tool pin check failed; refusing");
                        let denial =
                            Denial::new(DenialKind::Internal, "tool approval could not be checked");
                        return Ok(refuse(&request, denial));
                    }
                }
            }
            inner.call(request).await
        })
    }
}

/// The pin status of the tool a call addresses: remembered from a recent listing, else
/// read from the upstream now.
async fn pin_status(
    shared: &Shared,
    target: &Target,
    ctx: &CallContext,
) -> Result<PinStatus, String> {
    let Some(pins) = &shared.pins else {
        return Ok(PinStatus::Approved);
    };
    let key = format!("{}/{}", target.connector, target.id);
    if let Some(status) = shared.recalled(&key) {
        return Ok(status);
    }
    let upstream = shared
        .server
        .upstream(&target.connector)
        .ok_or("unknown upstream")?;
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut params = Map::new();
        if let Some(c) = cursor.take() {
            params.insert("cursor".into(), Value::from(c));
        }
        let page = upstream
            .request("tools/list", Some(params), ctx.clone())
            .await
            .map_err(|e| e.message)?;
        let tools = page.get("tools").and_then(Value::as_array);
        if let Some(tool) = tools
            .into_iter()
            .flatten()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(target.id.as_str()))
        {
            let status = pins
                .check(&[(key.clone(), tool)])
                .await
                .map_err(|e| e.to_string())?
                .remove(0);
            shared.remember(&key, &status);
            return Ok(status);
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Not listed by its upstream: nothing was approved under that name.
    Ok(PinStatus::New)
}

/// Reads a list answer, filters its final result, and re-frames it.
async fn filter_list(
    shared: &Shared,
    call: &Arc<Call>,
    shape: &ListShape,
    response: http::Response<Body>,
    notes: Option<fortress_core::layer::CallNotes>,
) -> http::Response<Body> {
    let (head, body) = response.into_parts();
    let mut reader = MessageReader::new(body, shared.max_message);
    let mut out = Vec::new();
    while let Some(message) = reader.next().await {
        let message = match message {
            Ok(Message::Response(mut response)) => {
                if let Ok(result) = response.outcome.as_mut() {
                    match filter_items(shared, call, shape, result).await {
                        Ok(hidden) => {
                            if hidden > 0
                                && let Some(notes) = &notes
                            {
                                notes.detail("hidden_items", Value::from(hidden));
                            }
                        }
                        Err(denial) => {
                            if let Some(notes) = &notes {
                                notes.denial(&denial);
                            }
                            return JsonRpcResponder.respond(&denial);
                        }
                    }
                }
                Message::Response(response)
            }
            Ok(other) => other,
            Err(error) => Message::Response(crate::jsonrpc::Response::error(None, error)),
        };
        out.extend_from_slice(&line(&message));
    }
    http::Response::from_parts(head, body::full(out))
}

/// Keeps the items of `result` the subject may use (and, for tools, whose definition is
/// approved); returns how many were hidden.
async fn filter_items(
    shared: &Shared,
    call: &Call,
    shape: &ListShape,
    result: &mut Value,
) -> Result<usize, Denial> {
    let Some(items) = result.get_mut(shape.items).and_then(Value::as_array_mut) else {
        return Ok(0);
    };
    let taken = std::mem::take(items);
    let mut targets: Vec<Option<Target>> = Vec::with_capacity(taken.len());
    let mut candidates = Vec::with_capacity(taken.len());
    for item in &taken {
        let name = item.get(shape.field).and_then(Value::as_str).unwrap_or("");
        let mut params = Map::new();
        params.insert(shape.name_param.into(), Value::from(name));
        let probe = Request::new(Id::Number(0), shape.addressed_by, Some(params));
        let target = shared.server.target(&probe).ok().flatten();
        if let Some(t) = &target {
            candidates.push(Resource::new(
                t.kind,
                t.id.clone(),
                Some(t.connector.clone()),
            ));
        }
        targets.push(target);
    }
    let decisions: Vec<Decision> =
        shared
            .policy
            .decide_each(call, &candidates)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "list filtering failed; refusing the list");
                Denial::new(DenialKind::Internal, "policy could not be evaluated")
            })?;
    let mut allowed = decisions.iter().map(Decision::is_allowed);
    let mut keep: Vec<bool> = targets
        .iter()
        .map(|t| t.is_some() && allowed.next().unwrap_or(false))
        .collect();
    if let Some(pins) = &shared.pins
        && shape.items == "tools"
    {
        let mut seen = Vec::new();
        let mut positions = Vec::new();
        for (i, (item, target)) in taken.iter().zip(&targets).enumerate() {
            if let (true, Some(t)) = (keep[i], target) {
                let mut upstream_view = item.clone();
                upstream_view["name"] = Value::from(t.id.clone());
                seen.push((format!("{}/{}", t.connector, t.id), upstream_view));
                positions.push(i);
            }
        }
        let refs: Vec<(String, &Value)> = seen.iter().map(|(k, v)| (k.clone(), v)).collect();
        let statuses = pins.check(&refs).await.map_err(|error| {
            tracing::warn!(%error, "tool pin check failed; refusing the list");
            Denial::new(DenialKind::Internal, "tool approval could not be checked")
        })?;
        for ((position, (key, _)), status) in positions.into_iter().zip(&seen).zip(statuses) {
            shared.remember(key, &status);
            if status != PinStatus::Approved {
                keep[position] = false;
            }
        }
    }
    let before = taken.len();
    let kept: Vec<Value> = taken
        .into_iter()
        .zip(keep)
        .filter_map(|(item, k)| k.then_some(item))
        .collect();
    let hidden = before - kept.len();
    *items = kept;
    Ok(hidden)
}
