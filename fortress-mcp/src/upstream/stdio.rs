//! Upstreams over stdio: a child process Fortress spawns, supervises and restarts.
//!
//! Messages are newline-delimited JSON-RPC on the child's stdin/stdout (spec 2025-11-25,
//! Basic › Transports › stdio). The era is detected by probing with `server/discover` and
//! falling back to `initialize` on any answer that is not a modern result or a recognized
//! modern error, or on silence (spec 2026-07-28, Versioning › Backward Compatibility); the
//! answer is cached for later restarts. When the process exits, every request in flight
//! fails with a JSON-RPC error and the process is restarted with exponential back-off.
//!
//! ```no_run
//! # async fn demo() {
//! use fortress_mcp::upstream::stdio::{StdioConfig, StdioUpstream};
//! let upstream = StdioUpstream::spawn("everything", StdioConfig::new("npx", ["server-everything"]));
//! # let _ = upstream;
//! # }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::{CallContext, ProgressRoutes, ServerDescription, Upstream};
use crate::jsonrpc::{
    ErrorObject, Id, Message, Notification, Request, Response, UNSUPPORTED_PROTOCOL_VERSION,
    UPSTREAM_ERROR, parse_message,
};
use crate::version::{ClientContext, Era, LATEST_LEGACY, LATEST_MODERN};

/// How to run a stdio upstream.
#[derive(Clone, Debug)]
pub struct StdioConfig {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long the `server/discover` probe waits before assuming a legacy server.
    pub probe_timeout: Duration,
    /// First restart delay.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// Longest line accepted from the child.
    pub max_line_bytes: usize,
}

impl StdioConfig {
    /// Runs `command` with `args` and default timings.
    pub fn new<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            request_timeout: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_line_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One running child process and its JSON-RPC state.
struct Conn {
    writer: mpsc::Sender<Bytes>,
    next_id: AtomicI64,
    pending: Mutex<HashMap<Id, oneshot::Sender<Response>>>,
    inflight: Mutex<Vec<(Id, CallContext)>>,
    progress: ProgressRoutes,
    description: Mutex<Option<ServerDescription>>,
    closed: CancellationToken,
}

impl Conn {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Id, oneshot::Sender<Response>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, Vec<(Id, CallContext)>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, message: &Message) -> Result<(), ErrorObject> {
        let mut line = message.to_value().to_string().into_bytes();
        line.push(b'\n');
        self.writer
            .send(Bytes::from(line))
            .await
            .map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "upstream is not running"))
    }

    /// Sends a request and waits for its response, the deadline, cancellation or the end
    /// of the process.
    async fn call(
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
                Ok(response) => return response.outcome,
                Err(_) => Err(ErrorObject::new(UPSTREAM_ERROR, "upstream exited before answering")),
            },
            () = self.closed.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "upstream exited before answering")),
            () = cancel.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled")),
            () = tokio::time::sleep(timeout) => Err(ErrorObject::new(UPSTREAM_ERROR, format!("upstream did not answer {method} within {timeout:?}"))),
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

    fn close(&self) {
        self.closed.cancel();
        for (_, tx) in self.lock_pending().drain() {
            drop(tx);
        }
    }
}

struct Shared {
    name: String,
    config: StdioConfig,
    conn: watch::Sender<Option<Arc<Conn>>>,
    broadcast: broadcast::Sender<Notification>,
    shutdown: CancellationToken,
    era: Mutex<Option<Era>>,
    starts: AtomicU64,
}

/// A supervised stdio upstream. Dropping it stops the child.
pub struct StdioUpstream {
    shared: Arc<Shared>,
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl StdioUpstream {
    /// Starts supervising `config`'s process under `name` (must be called in a runtime).
    pub fn spawn(name: impl Into<String>, config: StdioConfig) -> Self {
        let (conn, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            name: name.into(),
            config,
            conn,
            broadcast: broadcast::channel(256).0,
            shutdown: CancellationToken::new(),
            era: Mutex::new(None),
            starts: AtomicU64::new(0),
        });
        tokio::spawn(supervise(shared.clone()));
        Self { shared }
    }

    /// How many times the process was started (1 + restarts).
    pub fn starts(&self) -> u64 {
        self.shared.starts.load(Ordering::Relaxed)
    }

    async fn conn(&self, timeout: Duration) -> Result<Arc<Conn>, ErrorObject> {
        let mut rx = self.shared.conn.subscribe();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|c| c.is_some())).await;
        match ready {
            Ok(Ok(conn)) => conn
                .clone()
                .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream is not running")),
            _ => Err(ErrorObject::new(
                UPSTREAM_ERROR,
                format!("upstream {} is not available", self.shared.name),
            )),
        }
    }
}

#[async_trait]
impl Upstream for StdioUpstream {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let timeout = self.shared.config.request_timeout;
        let conn = self.conn(timeout).await?;
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

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        let conn = self.conn(self.shared.config.request_timeout).await?;
        let description = conn
            .description
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        description.ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream is not initialized"))
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.shared.broadcast.subscribe()
    }
}

async fn supervise(shared: Arc<Shared>) {
    let mut backoff = shared.config.backoff_initial;
    loop {
        if shared.shutdown.is_cancelled() {
            break;
        }
        shared.starts.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match start(&shared).await {
            Ok((conn, mut child)) => {
                shared.conn.send_replace(Some(conn.clone()));
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(upstream = %shared.name, ?status, "upstream process exited; restarting");
                    }
                    () = conn.closed.cancelled() => {
                        tracing::warn!(upstream = %shared.name, "upstream stdout closed; restarting");
                        let _ = child.start_kill();
                    }
                    () = shared.shutdown.cancelled() => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                    }
                }
                conn.close();
                shared.conn.send_replace(None);
            }
            Err(error) => {
                tracing::warn!(upstream = %shared.name, %error, "upstream failed to start");
            }
        }
        if shared.shutdown.is_cancelled() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = shared.config.backoff_initial;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shared.shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(shared.config.backoff_max);
    }
}

/// Spawns the child, wires its pipes and performs the handshake.
async fn start(shared: &Arc<Shared>) -> Result<(Arc<Conn>, Child), ErrorObject> {
    let config = &shared.config;
    let mut command = Command::new(&config.command);
    command
        .args(&config.args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|e| {
        ErrorObject::new(
            UPSTREAM_ERROR,
            format!("cannot start {}: {e}", config.command),
        )
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ErrorObject::new(UPSTREAM_ERROR, "child pipes unavailable"));
    };
    let (writer, mut outgoing) = mpsc::channel::<Bytes>(256);
    let conn = Arc::new(Conn {
        writer,
        next_id: AtomicI64::new(1),
        pending: Mutex::new(HashMap::new()),
        inflight: Mutex::new(Vec::new()),
        progress: ProgressRoutes::default(),
        description: Mutex::new(None),
        closed: CancellationToken::new(),
    });
    tokio::spawn(async move {
        while let Some(line) = outgoing.recv().await {
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let name = shared.name.clone();
    tokio::spawn(async move {
        let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
        while let Some(Ok(line)) = lines.next().await {
            tracing::debug!(upstream = %name, "stderr: {line}");
        }
    });
    tokio::spawn(read_loop(
        conn.clone(),
        shared.clone(),
        FramedRead::new(
            stdout,
            LinesCodec::new_with_max_length(config.max_line_bytes),
        ),
    ));
    let description = handshake(&conn, shared).await?;
    *conn.description.lock().unwrap_or_else(|e| e.into_inner()) = Some(description);
    Ok((conn, child))
}

/// Detects the era (cached after the first success) and, for legacy servers, initializes.
async fn handshake(conn: &Arc<Conn>, shared: &Shared) -> Result<ServerDescription, ErrorObject> {
    let cached = *shared.era.lock().unwrap_or_else(|e| e.into_inner());
    let never = CancellationToken::new();
    let fortress = ClientContext {
        era: Era::Modern,
        protocol_version: LATEST_MODERN.into(),
        capabilities: super::relayed_client_capabilities()
            .as_object()
            .cloned()
            .unwrap_or_default(),
        client_info: Some(super::fortress_client_info()),
    };
    if cached != Some(Era::Legacy) {
        let mut params = Map::new();
        super::modern_meta(&mut params, LATEST_MODERN, &fortress);
        match conn
            .call(
                "server/discover",
                Some(params),
                shared.config.probe_timeout,
                &never,
            )
            .await
        {
            Ok(result) => {
                if let Ok(description) = ServerDescription::from_discover(&result) {
                    *shared.era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Modern);
                    return Ok(description);
                }
            }
            Err(error) if error.code == UNSUPPORTED_PROTOCOL_VERSION => {
                tracing::info!(upstream = %shared.name, "modern upstream shares no modern version; trying initialize");
            }
            Err(_) => {}
        }
    }
    let params = json!({
        "protocolVersion": LATEST_LEGACY,
        "capabilities": super::relayed_client_capabilities(),
        "clientInfo": super::fortress_client_info(),
    });
    let result = match conn
        .call(
            "initialize",
            params.as_object().cloned(),
            shared.config.request_timeout,
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
                .call(
                    "server/discover",
                    Some(params),
                    shared.config.request_timeout,
                    &never,
                )
                .await?;
            let description = ServerDescription::from_discover(&result)?;
            *shared.era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Modern);
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
    *shared.era.lock().unwrap_or_else(|e| e.into_inner()) = Some(Era::Legacy);
    Ok(description)
}

async fn read_loop(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    mut lines: FramedRead<tokio::process::ChildStdout, LinesCodec>,
) {
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(upstream = %shared.name, %error, "unreadable upstream output; restarting it");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_message(line.as_bytes()) {
            Ok(Message::Response(response)) => {
                let waiter = response
                    .id
                    .as_ref()
                    .and_then(|id| conn.lock_pending().remove(id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
            }
            Ok(Message::Notification(n)) => on_notification(&conn, &shared, n).await,
            Ok(Message::Request(request)) => {
                let conn = conn.clone();
                tokio::spawn(async move { on_request(conn, request).await });
            }
            Err(error) => {
                tracing::warn!(upstream = %shared.name, %error, "upstream wrote a line that is not JSON-RPC");
            }
        }
    }
    conn.close();
}

async fn on_notification(conn: &Conn, shared: &Shared, n: Notification) {
    if n.method == "notifications/progress" {
        if let Err(n) = conn.progress.route(n) {
            tracing::debug!(upstream = %shared.name, "progress for no request: {:?}", n.params);
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
    let _ = shared.broadcast.send(n);
}

/// A request from the upstream: answered by Fortress (`ping`) or relayed to the client of
/// the request it most likely belongs to (stdio carries no association: the newest request
/// in flight whose client can be asked).
async fn on_request(conn: Arc<Conn>, request: Request) {
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
