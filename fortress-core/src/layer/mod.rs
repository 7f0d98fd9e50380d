//! The governance layers, one module each, in the order the standard stack applies them:
//!
//! ```text
//! client ─▶ [audit] ─▶ [guard: kill switch / rate limit] ─▶ [policy] ─▶ [redaction] ─▶ [credential] ─▶ upstream
//! ```
//!
//! Every layer reads the protocol's call description (an `Arc<Call>` request extension) and
//! answers a refusal through the protocol's [`Responder`](crate::denial::Responder), never
//! with `Err`. Inner layers tell the audit layer what happened through [`CallNotes`], a
//! request extension the audit layer installs. [`crate::stack::GovernanceStack`] composes them.

pub mod audit;
pub mod check;
pub mod credential;
pub mod guard;
pub mod policy;
pub mod redaction;

mod notes;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use notes::{CallNotes, notes_of};

/// The future returned by the governance layers' services.
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(crate) fn new(future: impl Future<Output = Result<T, E>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> std::fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

/// Takes the service instance that was polled ready and leaves a fresh clone in its place
/// (tower's readiness contract: the instance polled ready is the one called).
pub(crate) fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}
