//! [`AdmissionGuard`]: the kill switch, then the rate limits, as one [`Guard`].
//!
//! The kill switch runs first so a stopped call never takes a rate-limit cell; an admitted
//! call carries the kill switch's cancellation token.

use std::sync::Arc;

use async_trait::async_trait;

use super::kill_switch::KillSwitch;
use super::{Guard, GuardError, Verdict};
use crate::call::Call;

/// Kill switch, then rate limits.
#[derive(Clone)]
pub struct AdmissionGuard {
    kill_switch: Arc<KillSwitch>,
    limits: Arc<dyn Guard>,
}

impl std::fmt::Debug for AdmissionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionGuard").finish_non_exhaustive()
    }
}

impl AdmissionGuard {
    /// Runs `kill_switch` then `limits` (usually a
    /// [`RateLimitGuard`](super::rate_limit::RateLimitGuard)).
    pub fn new(kill_switch: Arc<KillSwitch>, limits: Arc<dyn Guard>) -> Self {
        Self {
            kill_switch,
            limits,
        }
    }

    /// The kill-switch registry, to engage and release switches.
    pub fn kill_switch(&self) -> &Arc<KillSwitch> {
        &self.kill_switch
    }
}

#[async_trait]
impl Guard for AdmissionGuard {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        let token = match self.kill_switch.admit(call).await? {
            Verdict::Admit(token) => token,
            reject @ Verdict::Reject(_) => return Ok(reject),
        };
        match self.limits.admit(call).await? {
            Verdict::Admit(other) => Ok(Verdict::Admit(token.or(other))),
            reject @ Verdict::Reject(_) => Ok(reject),
        }
    }
}
