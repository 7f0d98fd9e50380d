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

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::peer::{self, Peer};
use super::{CallContext, ServerDescription, Upstream};
use crate::jsonrpc::{ErrorObject, Notification, UPSTREAM_ERROR};
use crate::version::Era;

/// How to run a stdio upstream.
#[derive(Clone, Debug)]
pub struct StdioConfig {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Environment variables holding secrets (a vault credential): kept zeroizing and
    /// redacted in `Debug`, exposed only to the child's environment.
    pub secret_env: Vec<(String, fortress_core::secret::Secret)>,
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
    /// Restart the process after this many consecutive request timeouts (0: never). A
    /// timeout always answers the client with a JSON-RPC error and cancels upstream.
    pub restart_after_timeouts: u32,
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
            secret_env: Vec::new(),
            cwd: None,
            request_timeout: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_line_bytes: 16 * 1024 * 1024,
            restart_after_timeouts: 2,
        }
    }
}

struct Shared {
    name: String,
    config: StdioConfig,
    conn: watch::Sender<Option<Arc<Peer>>>,
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
        Self::spawn_into(name, config, broadcast::channel(256).0)
    }

    /// [`spawn`](Self::spawn), publishing the child's notifications to `broadcast`.
    pub(crate) fn spawn_into(
        name: impl Into<String>,
        config: StdioConfig,
        broadcast: broadcast::Sender<Notification>,
    ) -> Self {
        let (conn, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            name: name.into(),
            config,
            conn,
            broadcast,
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

    async fn conn(&self, timeout: Duration) -> Result<Arc<Peer>, ErrorObject> {
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
        peer::request(&conn, method, params, ctx, timeout).await
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        let conn = self.conn(self.shared.config.request_timeout).await?;
        peer::description(&conn)
            .ok_or_else(|| ErrorObject::new(UPSTREAM_ERROR, "upstream is not initialized"))
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
async fn start(shared: &Arc<Shared>) -> Result<(Arc<Peer>, Child), ErrorObject> {
    let config = &shared.config;
    let mut command = Command::new(&config.command);
    command
        .args(&config.args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .envs(
            config
                .secret_env
                .iter()
                .filter_map(|(k, v)| v.expose_str().map(|v| (k, v))),
        )
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
    let conn = Arc::new(Peer::new(&shared.name, writer, shared.broadcast.clone()));
    conn.restart_after_timeouts(config.restart_after_timeouts);
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
    let description = peer::handshake(
        &conn,
        &shared.era,
        shared.config.probe_timeout,
        shared.config.request_timeout,
    )
    .await?;
    peer::set_description(&conn, description);
    Ok((conn, child))
}

async fn read_loop(
    conn: Arc<Peer>,
    shared: Arc<Shared>,
    mut lines: FramedRead<tokio::process::ChildStdout, LinesCodec>,
) {
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => peer::dispatch(&conn, &line).await,
            Err(error) => {
                tracing::warn!(upstream = %shared.name, %error, "unreadable upstream output; restarting it");
                break;
            }
        }
    }
    conn.close();
}
