//! The client-facing endpoint: Streamable HTTP in both eras, chosen per request.
//!
//! - **Modern** (2026-07-28): a POST whose request carries
//!   `_meta["io.modelcontextprotocol/protocolVersion"]` is served statelessly; the
//!   `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers are validated against the
//!   body (`-32020 HeaderMismatch`), unsupported versions get `-32022` listing what is
//!   supported, and `subscriptions/listen` opens a notification stream
//!   (spec 2026-07-28, Basic › Transports › Streamable HTTP).
//! - **Legacy** (2025-11-25 … 2025-03-26): `initialize` creates a session (`Mcp-Session-Id`);
//!   later requests carry it (unknown → 404); GET opens the session's notification stream and
//!   DELETE ends it; server-to-client requests travel on the request's SSE stream and come
//!   back as POSTed responses (spec 2025-11-25, Basic › Transports). With a
//!   [session sealer](McpServer::with_session_sealer) the session id is a sealed token
//!   carrying what the session needs (negotiated version, client capabilities, owner), so
//!   a session started on one replica continues on any other.
//!
//! Either way a relayed request goes through the [`SeamService`], and its answer is a single
//! JSON object when the upstream had nothing to say before the result, an SSE stream
//! otherwise. The deprecated 2024-11-05 HTTP+SSE transport is served too (`GET /sse`, then
//! `POST /messages?sessionId=…`), as an adapter over the same handling (spec 2024-11-05,
//! Basic › Transports › HTTP with SSE). Hygiene: `Origin` validation (403), body limit (413), header and body read
//! timeouts, graceful shutdown.

mod handler;
mod legacy_sse;
mod session;
mod subscriptions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::seam::SeamService;
use crate::virtual_server::VirtualServer;

pub use handler::Handler;

/// The sealer of legacy session ids, keyed with a secret every replica shares.
pub fn session_sealer(secret: &[u8]) -> fortress_core::cluster::token::TokenSealer {
    fortress_core::cluster::token::TokenSealer::new(secret, session::SEALED_PREFIX, "mcp-session")
}

/// How long a sealed legacy session id stays valid (so how long a deleted one must be
/// remembered as deleted).
pub const SEALED_SESSION_LIFETIME: std::time::Duration = session::SEALED_LIFETIME;

/// How the endpoint behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The MCP endpoint path.
    pub path: String,
    /// The deprecated 2024-11-05 HTTP+SSE transport: the SSE endpoint path (`None` disables it).
    pub legacy_sse_path: Option<String>,
    /// The deprecated 2024-11-05 HTTP+SSE transport: the path clients POST messages to.
    pub legacy_messages_path: String,
    /// Origins allowed besides loopback ones (`http://localhost:*`, `127.0.0.1`, `[::1]`).
    pub allowed_origins: Vec<String>,
    /// Whether loopback origins are allowed.
    pub allow_loopback_origins: bool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest relayed message.
    pub max_message_bytes: usize,
    /// How long a client may take to send its request head.
    pub header_read_timeout: Duration,
    /// How long a client may take to send its request body.
    pub body_read_timeout: Duration,
    /// How long a legacy session may stay unused before it is forgotten.
    pub session_idle_timeout: Duration,
    /// How long a legacy client may take to answer a server-to-client request.
    pub client_answer_timeout: Duration,
    /// Keep-alive comment interval on long-lived streams.
    pub keep_alive: Duration,
    /// How long graceful shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// Whether the endpoint is served over TLS (for the absolute URLs it reports).
    pub tls: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            path: "/mcp".into(),
            legacy_sse_path: Some("/sse".into()),
            legacy_messages_path: "/messages".into(),
            allowed_origins: Vec::new(),
            allow_loopback_origins: true,
            max_body_bytes: 4 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            session_idle_timeout: Duration::from_secs(3600),
            client_answer_timeout: Duration::from_secs(300),
            keep_alive: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            tls: false,
        }
    }
}

/// The Fortress MCP endpoint.
#[derive(Clone)]
pub struct McpServer {
    handler: Handler,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
}

impl McpServer {
    /// An endpoint serving `server` through `seam`.
    pub fn new(config: ServerConfig, server: Arc<VirtualServer>, seam: SeamService) -> Self {
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        Self {
            handler: Handler::new(config.clone(), server, seam, shutdown.clone()),
            config,
            shutdown,
        }
    }

    /// Authenticates every request with `auth` (without one, every request is served as
    /// the seam's default subject).
    #[must_use]
    pub fn with_authenticator(mut self, auth: Arc<crate::auth::Authenticator>) -> Self {
        self.handler.set_authenticator(auth);
        self
    }

    /// Issues legacy session ids sealed by `sealer` (see [`session_sealer`]): any replica
    /// holding the same key resumes a session another replica started. `None` keeps
    /// random ids known only to this process.
    #[must_use]
    pub fn with_session_sealer(
        mut self,
        sealer: Option<fortress_core::cluster::token::TokenSealer>,
    ) -> Self {
        self.handler.set_session_sealer(sealer);
        self
    }

    /// Ends deleted legacy sessions on every replica through `revoked` (the shared set of
    /// deleted sealed ids): a `DELETE` here is refused everywhere, and a session deleted
    /// elsewhere is closed here. `None` keeps deletions local. Must run inside a tokio
    /// runtime.
    #[must_use]
    pub fn with_revoked_sessions(
        mut self,
        revoked: Option<fortress_core::cluster::revoked::RevokedTokens>,
    ) -> Self {
        if let Some(revoked) = revoked {
            self.handler.set_revoked_sessions(revoked);
        }
        self
    }

    /// The request handler, for embedding in another server.
    pub fn handler(&self) -> Handler {
        self.handler.clone()
    }

    /// Serves connections from `listener` until `signal` completes, then stops accepting,
    /// ends long-lived streams and waits (up to the grace period) for connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_with(listener, None, signal).await
    }

    /// [`serve`](Self::serve) over TLS (build `tls` with `fortress_core::tls::server_config`:
    /// TLS 1.3 only). A failed handshake closes that connection only.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: rustls::ServerConfig,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        self.serve_with(listener, Some(acceptor), signal).await
    }

    /// [`serve`](Self::serve) (or [`serve_tls`](Self::serve_tls) with `tls`) on one
    /// single-threaded runtime per listener (bind them with
    /// `fortress_core::workers::bind_reuseport`): each connection, its upstream exchanges
    /// and the tasks it spawns stay on one thread.
    pub async fn serve_on_workers(
        self,
        listeners: Vec<std::net::TcpListener>,
        tls: Option<rustls::ServerConfig>,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(Arc::new(tls)));
        let endpoint = self.clone();
        fortress_core::workers::serve_on_workers(
            listeners,
            move |listener, shutdown| {
                endpoint
                    .clone()
                    .serve_with(listener, acceptor.clone(), shutdown)
            },
            signal,
        )
        .await?;
        // Every worker has drained; make sure sessions and streams are closed once more in
        // case a worker failed before reaching its own shutdown.
        self.shutdown.cancel();
        self.handler.close_sessions();
        Ok(())
    }

    async fn serve_with(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout);
        let builder = Arc::new(builder);
        tokio::pin!(signal);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let handler = self.handler.clone();
                    let service = hyper::service::service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(handler.handle(request, Some(peer)).await) }
                    });
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let tls = tls.clone();
                    let handshake_timeout = self.config.header_read_timeout;
                    tokio::spawn(async move {
                        let result = match tls {
                            None => {
                                let connection = builder.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(connection.into_owned()).await
                            }
                            Some(acceptor) => {
                                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, %peer, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let connection = builder.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(connection.into_owned()).await
                            }
                        };
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                () = &mut signal => break,
            }
        }
        drop(listener);
        self.shutdown.cancel();
        self.handler.close_sessions();
        if tokio::time::timeout(self.config.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("graceful shutdown timed out; closing remaining connections");
        }
        Ok(())
    }
}
