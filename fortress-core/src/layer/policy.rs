//! Authorization: each call is decided by the [`PolicyEngine`] before it goes further.
//!
//! An allowed call proceeds with its [`Decision`] in the request extensions. A denied call
//! gets the protocol's `Forbidden` answer; callers are told *that* policy denied, and only
//! with [`PolicyLayer::with_reasons_shown`] *why*. An evaluation error denies (fail closed).

use std::sync::Arc;

use http::Request;

use super::CallNotes;
use super::check::{Check, CheckLayer, Checked};
use crate::call::Call;
use crate::decision::Decision;
use crate::denial::{Denial, DenialKind, Responder};
use crate::policy::PolicyEngine;

/// The [`Check`] of [`PolicyLayer`].
#[derive(Clone)]
pub struct Authorization {
    engine: Arc<dyn PolicyEngine>,
    show_reasons: bool,
}

/// Decides every call with a [`PolicyEngine`].
pub type PolicyLayer = CheckLayer<Authorization>;

/// The service of [`PolicyLayer`].
pub type Authorize<S> = Checked<S, Authorization>;

impl PolicyLayer {
    /// Decides calls with `engine`, answering denials through `responder`.
    pub fn new(engine: Arc<dyn PolicyEngine>, responder: Arc<dyn Responder>) -> Self {
        Self::with_check(
            Authorization {
                engine,
                show_reasons: false,
            },
            responder,
        )
    }

    /// Whether denial messages include the decision's reasons (off by default, so policy
    /// internals do not leak to callers).
    pub fn with_reasons_shown(mut self, show: bool) -> Self {
        self.check_mut().show_reasons = show;
        self
    }
}

impl Authorization {
    fn denial_for(&self, decision: Decision) -> Denial {
        let message = if self.show_reasons && !decision.reasons.is_empty() {
            format!("denied by policy: {}", decision.reasons.join("; "))
        } else {
            "denied by policy".to_owned()
        };
        Denial::new(DenialKind::Forbidden, message).with_decision(decision)
    }
}

impl<ReqB: Send> Check<ReqB> for Authorization {
    async fn check(
        &self,
        call: Arc<Call>,
        request: &mut Request<ReqB>,
        notes: Option<&CallNotes>,
    ) -> Result<(), Denial> {
        match self.engine.decide(&call).await {
            Ok(decision) if decision.is_allowed() => {
                if let Some(notes) = notes {
                    notes.decision(&decision);
                }
                request.extensions_mut().insert(decision);
                Ok(())
            }
            Ok(decision) => Err(self.denial_for(decision)),
            Err(error) => {
                tracing::warn!(request_id = %call.request_id, %error, "policy evaluation failed; denying");
                let decision = Decision::deny(self.engine.version())
                    .with_reason(format!("evaluation error: {error}"));
                Err(
                    Denial::new(DenialKind::Internal, "policy could not be evaluated")
                        .with_decision(decision),
                )
            }
        }
    }
}
