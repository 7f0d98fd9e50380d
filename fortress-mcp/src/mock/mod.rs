//! Local stand-ins for SaaS APIs, for tests and `fortress-mcp demo`: a mock Zendesk and a
//! mock Salesforce that implement the endpoints the built-in connectors use, keep their
//! data in memory, and check the `Authorization` header exactly (anything else gets the
//! SaaS's real 401 answer).
//!
//! Both listen on `127.0.0.1` on an ephemeral port and stop when [`MockServer::stop`] is
//! called or the handle is dropped.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_mcp::mock::MockZendesk;
//! let zendesk = MockZendesk::start("agent@example.com", "token-1").await.unwrap();
//! assert!(zendesk.base_url().starts_with("http://127.0.0.1:"));
//! assert!(zendesk.ticket(1).is_some());
//! # });
//! ```

mod salesforce;
mod zendesk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

pub use salesforce::{MockOAuthClient, MockSalesforce};
pub use zendesk::MockZendesk;

/// A running mock HTTP server.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    stop: CancellationToken,
    counts: Arc<AuthCounts>,
}

/// How many requests were authenticated and refused.
#[derive(Debug, Default)]
pub(crate) struct AuthCounts {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

impl MockServer {
    async fn start(router: axum::Router, counts: Arc<AuthCounts>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(signal.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::warn!(%error, "mock SaaS server failed");
            }
        });
        Ok(Self { addr, stop, counts })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests that carried exactly the expected credential.
    pub fn authenticated_requests(&self) -> u64 {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Requests refused with 401.
    pub fn rejected_requests(&self) -> u64 {
        self.counts.rejected.load(Ordering::SeqCst)
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Compares an `Authorization` header with the expected value in constant time.
pub(crate) fn header_matches(headers: &http::HeaderMap, expected: &str) -> bool {
    let Some(got) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let (got, expected) = (got.as_bytes(), expected.as_bytes());
    got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An ISO 8601 timestamp as the SaaS APIs write them.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
