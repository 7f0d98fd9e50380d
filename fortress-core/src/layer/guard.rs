//! Admission: kill switches and rate limits, before policy.
//!
//! [`GuardLayer`] asks a [`Guard`] about each call. A rejection becomes the protocol's
//! denial; a guard error fails closed. An admitted call's kill signal is placed in the
//! request extensions as [`KillSignal`].

use std::sync::Arc;

use http::Request;

use super::CallNotes;
use super::check::{Check, CheckLayer, Checked};
use crate::call::Call;
use crate::denial::{Denial, DenialKind, Responder};
use crate::guard::{Guard, KillSignal, Verdict};

/// The [`Check`] of [`GuardLayer`].
#[derive(Clone)]
pub struct Admission {
    guard: Arc<dyn Guard>,
}

/// Applies a [`Guard`] to every call.
pub type GuardLayer = CheckLayer<Admission>;

/// The service of [`GuardLayer`].
pub type Admit<S> = Checked<S, Admission>;

impl GuardLayer {
    /// Guards calls with `guard`, answering refusals through `responder`.
    pub fn new(guard: Arc<dyn Guard>, responder: Arc<dyn Responder>) -> Self {
        Self::with_check(Admission { guard }, responder)
    }
}

impl<ReqB: Send> Check<ReqB> for Admission {
    async fn check(
        &self,
        call: Arc<Call>,
        request: &mut Request<ReqB>,
        _notes: Option<&CallNotes>,
    ) -> Result<(), Denial> {
        match self.guard.admit(&call).await {
            Ok(Verdict::Admit(token)) => {
                if let Some(token) = token {
                    request.extensions_mut().insert(KillSignal(token));
                }
                Ok(())
            }
            Ok(Verdict::Reject(denial)) => Err(denial),
            Err(error) => {
                tracing::warn!(request_id = %call.request_id, %error, "admission failed; refusing call");
                Err(Denial::new(
                    DenialKind::Internal,
                    "admission control is unavailable",
                ))
            }
        }
    }
}
