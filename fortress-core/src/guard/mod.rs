//! The admission hook: kill switches and rate limits decide before policy is consulted.
//!
//! A [`Guard`] admits or rejects a call. An admitted call may carry a cancellation token
//! that the guard fires when a kill switch is flipped mid-call; the guard layer puts it in
//! the request extensions so the protocol can end the call where the protocol allows.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::guard::{AdmitAll, Guard, Verdict};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let call = Call::new(Subject::app("a", WorkspaceId::new("w")), Action::ListTools, Resource::workspace("w"));
//! assert!(matches!(AdmitAll.admit(&call).await.unwrap(), Verdict::Admit(_)));
//! # });
//! ```

pub mod combined;
pub mod kill_file;
pub mod kill_switch;
pub mod limits;
pub mod rate_limit;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::call::Call;
use crate::denial::Denial;

pub use combined::AdmissionGuard;
pub use kill_switch::{KillSwitch, KillTarget};
pub use rate_limit::{GovernorStore, RateLimitGuard, RateLimitStore};

/// The guard's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Proceed; the token, if any, is cancelled when the call must be ended early.
    Admit(Option<CancellationToken>),
    /// Refuse with this denial (rate limited, kill switch).
    Reject(Denial),
}

/// The token an admitted call carries in its request extensions.
#[derive(Clone, Debug)]
pub struct KillSignal(pub CancellationToken);

/// Why a guard could not decide. The call is refused (fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// A shared counter store (for example Redis) failed.
    #[error("admission backend unavailable")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The guard is misconfigured.
    #[error("admission configuration: {0}")]
    Config(String),
}

/// Admits or rejects calls before policy evaluation.
#[async_trait]
pub trait Guard: Send + Sync + 'static {
    /// Decides admission for one call.
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError>;
}

#[async_trait]
impl<G: Guard + ?Sized> Guard for Arc<G> {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        (**self).admit(call).await
    }
}

/// A guard that admits everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAll;

#[async_trait]
impl Guard for AdmitAll {
    async fn admit(&self, _call: &Call) -> Result<Verdict, GuardError> {
        Ok(Verdict::Admit(None))
    }
}
