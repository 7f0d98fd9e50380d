//! Mounting the dashboard in a gateway binary, the same way in both products.
//!
//! [`AdminServer`] holds the admin API and dashboard for one [`AdminState`]. A binary
//! either serves it on its own listener ([`AdminServer::serve`]) or answers the requests
//! under a path prefix of its main listener ([`AdminServer::dispatch`], e.g. `/admin`);
//! the page uses relative URLs, so it works under any prefix. [`bootstrap_owner`] creates
//! the first owner account on a fresh deployment and [`AdminServer::spawn_retention`]
//! applies the retention setting in force.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::admin::accounts::AccountStore;
//! use fortress_core::admin::api::AdminState;
//! use fortress_core::admin::server::{AdminServer, bootstrap_owner};
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::subject::WorkspaceId;
//!
//! let accounts = AccountStore::in_memory().await.unwrap();
//! let password = bootstrap_owner(&accounts, "owner").await.unwrap();
//! assert!(password.is_some()); // printed once by the binary
//! assert!(bootstrap_owner(&accounts, "owner").await.unwrap().is_none());
//! let state = AdminState::new(accounts, Arc::new(MemoryAuditSink::new()), WorkspaceId::new("acme"));
//! let server = AdminServer::new(state);
//! let request = http::Request::get("/admin/healthz").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let response = server.dispatch("/admin", request).await.ok().unwrap();
//! assert_eq!(response.status(), 200);
//! # });
//! ```

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use bytes::Bytes;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::accounts::{AccountError, AccountStore};
use super::api::{AdminState, router};
use super::rbac::Role;
use crate::audit::retention::system_actor;
use crate::body::BoxError;
use crate::secret::Secret;

/// The admin API and dashboard of one deployment.
#[derive(Clone)]
pub struct AdminServer {
    state: AdminState,
    router: Router,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("workspace", &self.state.workspace)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// The dashboard over `state`.
    pub fn new(state: AdminState) -> Self {
        let router = router(state.clone());
        Self { state, router }
    }

    /// What the dashboard works on.
    pub fn state(&self) -> &AdminState {
        &self.state
    }

    /// The routes, rooted at `/`.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves the dashboard on its own listener until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Answers `request` if its path is `prefix` or under it (the prefix is stripped
    /// before routing); gives the request back otherwise, for the gateway to answer.
    pub async fn dispatch<B>(
        &self,
        prefix: &str,
        request: Request<B>,
    ) -> Result<Response<Body>, Request<B>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let prefix = prefix.trim_end_matches('/');
        let path = request.uri().path();
        if path == prefix {
            // The page's relative URLs resolve against the directory: send the browser there.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            if let Ok(location) = HeaderValue::from_str(&format!("{prefix}/")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return Ok(response);
        }
        let Some(rest) = path.strip_prefix(prefix).filter(|r| r.starts_with('/')) else {
            return Err(request);
        };
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        let (mut parts, body) = request.into_parts();
        parts.uri = match Uri::builder().path_and_query(path_and_query).build() {
            Ok(uri) => uri,
            Err(_) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(response);
            }
        };
        let request = Request::from_parts(parts, Body::new(body));
        match self.router.clone().oneshot(request).await {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        }
    }

    /// Purges audit events older than the retention in force (the deployment's tier's
    /// setting, read at every run) now and then every `every`. `None` without a store.
    pub fn spawn_retention(&self, every: Duration) -> Option<JoinHandle<()>> {
        let store = self.state.store.clone()?;
        let settings = self.state.settings.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let days = {
                    let s = settings.read().unwrap_or_else(|e| e.into_inner());
                    s.retention.days_for(s.tier)
                };
                let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
                match store.purge_before(cutoff, system_actor()).await {
                    Ok(report) if report.deleted_events > 0 => tracing::info!(
                        days,
                        deleted_events = report.deleted_events,
                        "audit retention purge"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "audit retention purge failed"),
                }
            }
        }))
    }
}

/// Creates an owner account named `username` with a random password when the deployment
/// has no admin account yet, and returns the password (to show once). `None` when
/// accounts already exist.
pub async fn bootstrap_owner(
    accounts: &AccountStore,
    username: &str,
) -> Result<Option<Secret>, AccountError> {
    if !accounts.is_empty().await? {
        return Ok(None);
    }
    let password: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let password = Secret::from_text(password);
    accounts
        .create_account(username, &password, Role::Owner)
        .await?;
    Ok(Some(password))
}
