//! Serving: hyper-util's HTTP/1 + HTTP/2 connection builder, optional rustls (TLS 1.3
//! only), graceful shutdown that lets in-flight answers finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use fortress_core::admin::AdminServer;

use crate::service::PatService;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Certificate or key unreadable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Listening failed.
    #[error("listener failed")]
    Io(#[from] std::io::Error),
}

/// A TLS 1.3-only server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    fortress_core::tls::server_config(cert, key).map_err(|e| ServeError::Tls(e.0))
}

/// Serves `service` on `listener` until `shutdown` completes, then waits for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    service: PatService,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with_admin(listener, service, None, tls, shutdown).await
}

/// The dashboard on the gateway's own listener, under a path prefix (e.g. `/admin`).
#[derive(Clone, Debug)]
pub struct MountedAdmin {
    /// The path prefix.
    pub prefix: String,
    /// The dashboard.
    pub server: AdminServer,
}

/// [`serve`], with the dashboard answering the requests under `admin.prefix`.
pub async fn serve_with_admin(
    listener: TcpListener,
    service: PatService,
    admin: Option<MountedAdmin>,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
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
        let service = service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let service = service.clone();
                let admin = admin.clone();
                async move {
                    let req = match &admin {
                        Some(admin) => match admin.server.dispatch(&admin.prefix, req).await {
                            Ok(answer) => {
                                return Ok::<_, std::convert::Infallible>(
                                    answer.map(fortress_core::body::boxed),
                                );
                            }
                            Err(req) => req,
                        },
                        None => req,
                    };
                    Ok(service.handle(req, Some(peer.ip())).await)
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
    graceful.shutdown().await;
    Ok(())
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    Ok(TcpListener::bind(addr).await?)
}
