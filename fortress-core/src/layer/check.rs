//! The shape every refusing layer shares: look at the described call, then either pass the
//! request on or answer with the protocol's denial.
//!
//! [`CheckLayer`] turns a [`Check`] into a tower layer; guard, policy and credential
//! injection are each one `Check`. Embedders can write their own the same way.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{CallNotes, ResponseFuture, take_ready};
use crate::body::Body;
use crate::call::{Call, call_of};
use crate::denial::{Denial, DenialKind, Responder};

/// A decision made before the inner service is called.
pub trait Check<ReqB>: Clone + Send + Sync + 'static {
    /// Admits the request (possibly adding extensions or headers to it) or refuses it.
    fn check<'a>(
        &'a self,
        call: Arc<Call>,
        request: &'a mut Request<ReqB>,
        notes: Option<&'a CallNotes>,
    ) -> impl Future<Output = Result<(), Denial>> + Send + 'a;
}

/// Applies a [`Check`] to every request.
#[derive(Clone)]
#[must_use]
pub struct CheckLayer<C> {
    check: C,
    responder: Arc<dyn Responder>,
}

impl<C> CheckLayer<C> {
    /// Checks with `check`, answering refusals through `responder`.
    pub fn with_check(check: C, responder: Arc<dyn Responder>) -> Self {
        Self { check, responder }
    }

    /// The check.
    pub fn check(&self) -> &C {
        &self.check
    }

    /// The check, to adjust it.
    pub fn check_mut(&mut self) -> &mut C {
        &mut self.check
    }
}

impl<S, C: Clone> Layer<S> for CheckLayer<C> {
    type Service = Checked<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked {
            inner,
            check: self.check.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service of a [`CheckLayer`].
#[derive(Clone)]
pub struct Checked<S, C> {
    inner: S,
    check: C,
    responder: Arc<dyn Responder>,
}

impl<S, C, ReqB> Service<Request<ReqB>> for Checked<S, C>
where
    S: Service<Request<ReqB>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    C: Check<ReqB>,
    ReqB: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let check = self.check.clone();
        let responder = self.responder.clone();
        ResponseFuture::new(async move {
            let notes = request.extensions().get::<CallNotes>().cloned();
            let verdict = match call_of(&request).cloned() {
                Some(call) => check.check(call, &mut request, notes.as_ref()).await,
                None => Err(Denial::new(DenialKind::Internal, "call is not described")),
            };
            match verdict {
                Ok(()) => inner.call(request).await,
                Err(denial) => {
                    if let Some(notes) = &notes {
                        notes.denial(&denial);
                    }
                    Ok(responder.respond(&denial))
                }
            }
        })
    }
}
