//! Authorization: each call is decided by the [`PolicyEngine`] before it goes further.
//!
//! An allowed call proceeds with its [`Decision`] in the request extensions. A denied call
//! gets the protocol's `Forbidden` answer; callers are told *that* policy denied, and only
//! with [`PolicyLayer::with_reasons_shown`] *why*. An evaluation error denies (fail closed).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{CallNotes, ResponseFuture, take_ready};
use crate::body::Body;
use crate::call::call_of;
use crate::decision::Decision;
use crate::denial::{Denial, DenialKind, Responder};
use crate::policy::PolicyEngine;

/// Decides every call with a [`PolicyEngine`].
#[derive(Clone)]
#[must_use]
pub struct PolicyLayer {
    engine: Arc<dyn PolicyEngine>,
    responder: Arc<dyn Responder>,
    show_reasons: bool,
}

impl PolicyLayer {
    /// Decides calls with `engine`, answering denials through `responder`.
    pub fn new(engine: Arc<dyn PolicyEngine>, responder: Arc<dyn Responder>) -> Self {
        Self {
            engine,
            responder,
            show_reasons: false,
        }
    }

    /// Whether denial messages include the decision's reasons (off by default, so policy
    /// internals do not leak to callers).
    pub fn with_reasons_shown(mut self, show: bool) -> Self {
        self.show_reasons = show;
        self
    }

    fn denial_for(&self, decision: Decision) -> Denial {
        let message = if self.show_reasons && !decision.reasons.is_empty() {
            format!("denied by policy: {}", decision.reasons.join("; "))
        } else {
            "denied by policy".to_owned()
        };
        Denial::new(DenialKind::Forbidden, message).with_decision(decision)
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`PolicyLayer`].
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    layer: PolicyLayer,
}

impl<S, ReqB> Service<Request<ReqB>> for Authorize<S>
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
            match layer.engine.decide(&call).await {
                Ok(decision) if decision.is_allowed() => {
                    if let Some(notes) = &notes {
                        notes.decision(&decision);
                    }
                    request.extensions_mut().insert(decision);
                    inner.call(request).await
                }
                Ok(decision) => refuse(layer.denial_for(decision)),
                Err(error) => {
                    tracing::warn!(request_id = %call.request_id, %error, "policy evaluation failed; denying");
                    let decision = Decision::deny(layer.engine.version())
                        .with_reason(format!("evaluation error: {error}"));
                    refuse(
                        Denial::new(DenialKind::Internal, "policy could not be evaluated")
                            .with_decision(decision),
                    )
                }
            }
        })
    }
}
