//! Serving a gateway with the dashboard under a path prefix of the same listener, the same
//! way in both products.
//!
//! [`serve`] accepts connections (HTTP/1 and HTTP/2, optionally over rustls), answers the
//! requests under the [`MountedAdmin`] prefix with the dashboard and hands every other
//! request to the gateway's handler. On shutdown it stops accepting and lets open
//! connections finish, up to a grace period (long-lived event streams would otherwise
//! hold the process open).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::AdminServer;
use crate::body::Body;

/// The dashboard on a gateway's own listener, under a path prefix (e.g. `/admin`).
#[derive(Clone, Debug)]
pub struct MountedAdmin {
    /// The path prefix.
    pub prefix: String,
    /// The dashboard.
    pub server: AdminServer,
}

impl MountedAdmin {
    /// The dashboard under `prefix`.
    pub fn new(prefix: impl Into<String>, server: AdminServer) -> Self {
        Self {
            prefix: prefix.into().trim_end_matches('/').to_owned(),
            server,
        }
    }

    /// Answers `request` with the dashboard when it is under the prefix, with `gateway`
    /// otherwise.
    pub async fn route<F, Fut>(&self, request: Request<Incoming>, gateway: F) -> Response<Body>
    where
        F: FnOnce(Request<Incoming>) -> Fut,
        Fut: Future<Output = Response<Body>>,
    {
        match self.server.dispatch(&self.prefix, request).await {
            Ok(answer) => answer.map(crate::body::boxed),
            Err(request) => gateway(request).await,
        }
    }
}

/// How long open connections may take to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `gateway` (called with each request and the peer's address) on `listener`, with
/// `admin` answering under its prefix, until `shutdown` completes; then waits for open
/// connections, up to [`SHUTDOWN_GRACE`].
pub async fn serve<F, Fut>(
    listener: TcpListener,
    admin: Option<MountedAdmin>,
    tls: Option<Arc<rustls::ServerConfig>>,
    gateway: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let admin = admin.clone();
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |request: Request<Incoming>| {
                let admin = admin.clone();
                let gateway = gateway.clone();
                async move {
                    let answer = match &admin {
                        Some(admin) => admin.route(request, |r| gateway(r, peer)).await,
                        None => gateway(request, peer).await,
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let result = match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let conn = builder.serve_connection(TokioIo::new(tls), svc);
                        watcher.watch(conn.into_owned()).await
                    }
                    Err(error) => {
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("graceful shutdown timed out; closing remaining connections");
    }
    Ok(())
}
