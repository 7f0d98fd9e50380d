//! Admission: kill switches and rate limits, before policy.
//!
//! [`GuardLayer`] asks a [`Guard`] about each call. A rejection becomes the protocol's
//! denial; a guard error fails closed. An admitted call's kill signal is placed in the
//! request extensions as [`KillSignal`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{CallNotes, ResponseFuture, take_ready};
use crate::body::Body;
use crate::call::call_of;
use crate::denial::{Denial, DenialKind, Responder};
use crate::guard::{Guard, KillSignal, Verdict};

/// Applies a [`Guard`] to every call.
#[derive(Clone)]
#[must_use]
pub struct GuardLayer {
    guard: Arc<dyn Guard>,
    responder: Arc<dyn Responder>,
}

impl GuardLayer {
    /// Guards calls with `guard`, answering refusals through `responder`.
    pub fn new(guard: Arc<dyn Guard>, responder: Arc<dyn Responder>) -> Self {
        Self { guard, responder }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`GuardLayer`].
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S, ReqB> Service<Request<ReqB>> for Admission<S>
where
    S: Service<Request<ReqB>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
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
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let notes = request.extensions().get::<CallNotes>().cloned();
            let refuse = |denial: Denial| {
                if let Some(notes) = &notes {
                    notes.denial(&denial);
                }
                Ok(layer.responder.respond(&denial))
            };
            let Some(call) = call_of(&request).cloned() else {
                return refuse(Denial::new(DenialKind::Internal, "call is not described"));
            };
            match layer.guard.admit(&call).await {
                Ok(Verdict::Admit(token)) => {
                    if let Some(token) = token {
                        request.extensions_mut().insert(KillSignal(token));
                    }
                    inner.call(request).await
                }
                Ok(Verdict::Reject(denial)) => refuse(denial),
                Err(error) => {
                    tracing::warn!(request_id = %call.request_id, %error, "admission failed; refusing call");
                    refuse(Denial::new(
                        DenialKind::Internal,
                        "admission control is unavailable",
                    ))
                }
            }
        })
    }
}
