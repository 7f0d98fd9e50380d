//! Serving: hyper-util's HTTP/1 + HTTP/2 connection builder, optional rustls (TLS 1.3
//! only), graceful shutdown that lets in-flight answers finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::body::Incoming;
use tokio::net::TcpListener;

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

pub use fortress_core::admin::mount::MountedAdmin;

/// [`serve`], with the dashboard answering the requests under `admin.prefix`.
pub async fn serve_with_admin(
    listener: TcpListener,
    service: PatService,
    admin: Option<MountedAdmin>,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let gateway = move |request: hyper::Request<Incoming>, peer: SocketAddr| {
        let service = service.clone();
        async move { service.handle(request, Some(peer.ip())).await }
    };
    fortress_core::admin::mount::serve(listener, admin, tls.map(Arc::new), gateway, shutdown)
        .await?;
    Ok(())
}

/// [`serve_with_admin`] on one single-threaded runtime per listener (bind them with
/// `fortress_core::workers::bind_reuseport`): each connection, its upstream exchange and
/// the tasks it spawns stay on one thread.
pub async fn serve_on_workers(
    listeners: Vec<std::net::TcpListener>,
    service: PatService,
    admin: Option<MountedAdmin>,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = tls.map(Arc::new);
    fortress_core::workers::serve_on_workers(
        listeners,
        move |listener, stop| {
            let service = service.clone();
            let gateway = move |request: hyper::Request<Incoming>, peer: SocketAddr| {
                let service = service.clone();
                async move { service.handle(request, Some(peer.ip())).await }
            };
            fortress_core::admin::mount::serve(listener, admin.clone(), tls.clone(), gateway, stop)
        },
        shutdown,
    )
    .await?;
    Ok(())
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    Ok(TcpListener::bind(addr).await?)
}
