//! A JSON-RPC peer over a message stream (a child's stdio, an HTTP+SSE channel): pending
//! requests by id, requests in flight with their client contexts, progress routing, and the
//! era handshake. Transports feed it incoming messages and drain its outgoing lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{CallContext, ProgressRoutes, ServerDescription};
use crate::jsonrpc::{
    ErrorObject, Id, Message, Notification, Request, Response, UNSUPPORTED_PROTOCOL_VERSION,
    UPSTREAM_ERROR, parse_message,
};
use crate::version::{ClientContext, Era, LATEST_LEGACY, LATEST_MODERN};

/// One connection's JSON-RPC state.
pub(crate) struct Peer {
    name: String,
    broadcast: broadcast::Sender<Notification>,
    writer: mpsc::Sender<Bytes>,
    next_id: AtomicI64,
    pending: Mutex<HashMap<Id, oneshot::Sender<Response>>>,
    inflight: Mutex<Vec<(Id, CallContext)>>,
    progress: ProgressRoutes,
    description: Mutex<Option<ServerDescription>>,
    pub(crate) closed: CancellationToken,
    /// Consecutive requests that timed out; at `restart_after` the link is closed so its
    /// transport restarts (a wedged upstream).
    timeouts: std::sync::atomic::AtomicU32,
    restart_after: std::sync::atomic::AtomicU32,
}

impl Peer {
    /// Closes the link after `n` consecutive timeouts (0: never).
    pub(crate) fn restart_after_timeouts(&self, n: u32) {
        let n = if n == 0 { u32::MAX } else { n };
        self.restart_after.store(n, Ordering::Relaxed);
    }

    /// A peer writing its outgoing lines to `writer`.
    pub(crate) fn new(
        name: &str,
        writer: mpsc::Sender<Bytes>,
        broadcast: broadcast::Sender<Notification>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            broadcast,
            writer,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            inflight: Mutex::new(Vec::new()),
            progress: ProgressRoutes::default(),
            description: Mutex::new(None),
            closed: CancellationToken::new(),
            timeouts: std::sync::atomic::AtomicU32::new(0),
            restart_after: std::sync::atomic::AtomicU32::new(u32::MAX),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Id, oneshot::Sender<Response>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, Vec<(Id, CallContext)>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) async fn send(&self, message: &Message) -> Result<(), ErrorObject> {
        let mut line = message.to_vec();
        line.push(b'\n');
        self.writer
            .send(Bytes::from(line))
            .await
            .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "upstream is not running"))
    }

    /// Sends a request and waits for its response, the deadline, cancellation or the end
    /// of the process.
    pub(crate) async fn call(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Value, ErrorObject> {
        let id = Id::Number(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id.clone(), tx);
        let request = Message::Request(Request::new(id.clone(), method, params));
        if let Err(e) = self.send(&request).await {
            self.lock_pending().remove(&id);
            return Err(e);
        }
        let outcome = tokio::select! {
            response = rx => match response {
                Ok(response) => {
                    self.timeouts.store(0, Ordering::Relaxed);
                    return response.outcome;
                }
                Err(_) => Err(ErrorObject::new(UPSTREAM_ERROR, "upstream exited before answering")),
            },
            () = self.closed.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "upstream exited before answering")),
            () = cancel.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled")),
            () = tokio::time::sleep(timeout) => {
                let count = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if count >= self.restart_after.load(Ordering::Relaxed) {
                    tracing::warn!(upstream = %self.name, count, "upstream keeps timing out; restarting it");
                    self.lock_pending().remove(&id);
                    self.close();
                }
                Err(ErrorObject::new(UPSTREAM_ERROR, format!("upstream did not answer {method} within {timeout:?}")))
            }
        };
        self.lock_pending().remove(&id);
        if !self.closed.is_cancelled() {
            // Tell the upstream to stop working on it (spec: Utilities › Cancellation).
            let mut params = Map::new();
            params.insert("requestId".into(), id.to_value());
            params.insert("reason".into(), Value::from("cancelled by Fortress"));
            let _ = self
                .send(&Message::Notification(Notification::new(
                    "notifications/cancelled",
                    Some(params),
                )))
                .await;
        }
        outcome
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
        for (_, tx) in self.lock_pending().drain() {
            drop(tx);
        }
    }
}

/// Detects the era (cached after the first success) and, for legacy servers, initializes.
pub(crate) async fn handshake(
    conn: &Arc<Peer>,
    era: &Mutex<Option<Era>>,
    probe_timeout: Duration,
    request_timeout: Duration,
) -> Result<ServerDescription, ErrorObject> {
    let cached = *era.lock().unwrap_or_else(|e| e.into_inner());
    let never = CancellationToken::new();
    let fortress = ClientContext {
        era: Era::Modern,
        protocol_version: LATEST_MODERN.into(),
        capabilities: super::relayed_client_capabilities()
            .as_object()
            .cloned()
            .unwrap_or_default(),
        client_info: Some(super::fortress_info()),
    };
    if cached != Some(Era::Legacy) {
        let mut params = Map::new();
        super::modern_meta(&mut params, LATEST_MODERN, &fortress);
        match conn
            .call("server/discover", Some(params), probe_timeout, &never)
            .await
        {
            Ok(result) => {
                if let Ok(description) = ServerDescription::from_discover(&result) {
                    *era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Modern);
                    return Ok(description);
                }
            }
            Err(error) if error.code == UNSUPPORTED_PROTOCOL_VERSION => {
                tracing::info!(upstream = %conn.name, "modern upstream shares no modern version; trying initialize");
            }
            Err(_) => {}
        }
    }
    let params = json!({
        "protocolVersion": LATEST_LEGACY,
        "capabilities": super::relayed_client_capabilities(),
        "clientInfo": super::fortress_info(),
    });
    let result = match conn
        .call(
            "initialize",
            params.as_object().cloned(),
            request_timeout,
            &never,
        )
        .await
    {
        Ok(result) => result,
        // A recognized modern error: the probe was only slow (a busy machine, a slow start).
        // Ask again, patiently, rather than treating a modern server as broken.
        Err(error) if error.code == UNSUPPORTED_PROTOCOL_VERSION => {
            let mut params = Map::new();
            super::modern_meta(&mut params, LATEST_MODERN, &fortress);
            let result = conn
                .call("server/discover", Some(params), request_timeout, &never)
                .await?;
            let description = ServerDescription::from_discover(&result)?;
            *era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Modern);
            return Ok(description);
        }
        Err(error) => return Err(error),
    };
    let description = ServerDescription::from_initialize(&result)?;
    conn.send(&Message::Notification(Notification::new(
        "notifications/initialized",
        None,
    )))
    .await?;
    *era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Legacy);
    Ok(description)
}

async fn on_notification(conn: &Peer, n: Notification) {
    if n.method == "notifications/progress" {
        if let Err(n) = conn.progress.route(n) {
            tracing::debug!(upstream = %conn.name, "progress for no request: {:?}", n.params);
        }
        return;
    }
    if n.method == "notifications/message" {
        // stdio cannot say which request a log line belongs to: with one request in flight
        // it is that one's.
        let only = {
            let inflight = conn.lock_inflight();
            (inflight.len() == 1).then(|| inflight[0].1.clone())
        };
        if let Some(ctx) = only {
            ctx.notify(n.clone()).await;
        }
    }
    let _ = conn.broadcast.send(n);
}

/// A request from the upstream: answered by Fortress (`ping`) or relayed to the client of
/// the request it most likely belongs to (stdio carries no association: the newest request
/// in flight whose client can be asked).
async fn on_request(conn: Arc<Peer>, request: Request) {
    let outcome = if request.method == "ping" {
        Ok(json!({}))
    } else {
        let ctx = {
            let inflight = conn.lock_inflight();
            inflight
                .iter()
                .rev()
                .find(|(_, c)| c.requester.is_some())
                .or_else(|| inflight.last())
                .map(|(_, c)| c.clone())
        };
        // Debug aid: an unsolicited request (a server syncing roots after `initialize`) lands
        // in whichever call is in flight; for a modern client that call is parked.
        tracing::debug!(upstream = %conn.name, method = %request.method, routed = ctx.is_some(), "upstream request relayed to the newest askable call");
        match ctx {
            Some(ctx) => ctx.ask(&request.method, request.params.clone()).await,
            None => Err(ErrorObject::method_not_found(&request.method)),
        }
    };
    let response = Response {
        id: Some(request.id),
        outcome,
    };
    let _ = conn.send(&Message::Response(response)).await;
}

/// Handles one incoming message text.
pub(crate) async fn dispatch(conn: &Arc<Peer>, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    match parse_message(text.as_bytes()) {
        Ok(Message::Response(response)) => {
            let waiter = response
                .id
                .as_ref()
                .and_then(|id| conn.lock_pending().remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(response);
            }
        }
        Ok(Message::Notification(n)) => on_notification(conn, n).await,
        Ok(Message::Request(request)) => {
            let conn = conn.clone();
            tokio::spawn(async move { on_request(conn, request).await });
        }
        Err(error) => {
            tracing::warn!(upstream = %conn.name, %error, "upstream sent something that is not JSON-RPC");
        }
    }
}

/// Serves one client request over the peer, in the upstream's era.
pub(crate) async fn request(
    conn: &Arc<Peer>,
    method: &str,
    params: Option<Map<String, Value>>,
    ctx: CallContext,
    timeout: Duration,
) -> Result<Value, ErrorObject> {
    let description = conn
        .description
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream is not initialized"))?;
    let mut params = params.unwrap_or_default();
    let _progress = conn.progress.map(&mut params, &ctx.events);
    let marker = Id::Number(-conn.next_id.fetch_add(1, Ordering::Relaxed));
    conn.lock_inflight().push((marker.clone(), ctx.clone()));
    let outcome = match description.era {
        Era::Legacy => {
            super::strip_modern_meta(&mut params);
            conn.call(method, Some(params), timeout, &ctx.cancel).await
        }
        Era::Modern => {
            super::modern_meta(&mut params, &description.protocol_version, &ctx.client);
            let conn = conn.clone();
            super::with_input_rounds(&ctx, params, |p| {
                let conn = conn.clone();
                let cancel = ctx.cancel.clone();
                async move { conn.call(method, Some(p), timeout, &cancel).await }
            })
            .await
        }
    };
    conn.lock_inflight().retain(|(id, _)| *id != marker);
    outcome
}

/// The description the handshake recorded.
pub(crate) fn description(conn: &Peer) -> Option<ServerDescription> {
    conn.description
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Records the handshake's description.
pub(crate) fn set_description(conn: &Peer, description: ServerDescription) {
    *conn.description.lock().unwrap_or_else(|e| e.into_inner()) = Some(description);
}
