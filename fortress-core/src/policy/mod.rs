//! Policy: the [`PolicyEngine`] trait that decides each call, and a simple allow-list engine.
//!
//! Engines are object-safe and async, so an integrator can back one with a remote PDP. The
//! default engine (Cedar) lives beside this trait; [`AllowListPolicy`] serves tests and
//! examples.
//!
//! ```
//! # tokio_test_block(async {
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::policy::{AllowListPolicy, AllowRule, PolicyEngine};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let policy = AllowListPolicy::new([AllowRule::group("support", "tools/call", "tool:zendesk/*")]);
//! let alice = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["support"]);
//! let call = Call::new(alice, Action::CallTool, Resource::tool("zendesk", "search"));
//! assert!(policy.decide(&call).await.unwrap().is_allowed());
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod allow_list;
pub mod cli;
pub mod compiled;
pub mod documents;
mod engine;
mod index;
mod reads;
mod request_cache;
pub mod schema;
pub mod shadow;
pub mod store;
mod translate;
pub mod watch;

use std::sync::Arc;

use async_trait::async_trait;

use crate::call::{Call, Resource};
use crate::decision::Decision;

pub use allow_list::{AllowListPolicy, AllowRule};
pub use compiled::{CompileOptions, CompiledSet, Explanation};
pub use documents::PolicyDocuments;
pub use engine::{CedarEngine, ReloadError};

/// Why a policy could not be evaluated or loaded. Every evaluation error denies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy document is invalid (parse or schema validation).
    #[error("invalid policy at line {line}, column {column}: {message}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The call could not be translated into the engine's request form.
    #[error("cannot evaluate call: {0}")]
    Request(String),
    /// The engine failed while evaluating.
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),
    /// A remote or storage backend failed.
    #[error("policy backend unavailable")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Decides whether a call may proceed.
#[async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Decides one call. An `Err` is treated as a denial by every caller (fail closed).
    async fn decide(&self, call: &Call) -> Result<Decision, PolicyError>;

    /// Decides, for a listing, which `candidates` the subject of `template` may see; the
    /// answer holds one decision per candidate, in order. Engines override this to decide
    /// a whole list in one pass.
    async fn decide_each(
        &self,
        template: &Call,
        candidates: &[Resource],
    ) -> Result<Vec<Decision>, PolicyError> {
        let mut decisions = Vec::with_capacity(candidates.len());
        let mut call = template.clone();
        for candidate in candidates {
            call.resource = candidate.clone();
            decisions.push(self.decide(&call).await?);
        }
        Ok(decisions)
    }

    /// The version (content hash) of the policy set now live.
    fn version(&self) -> String;
}

#[async_trait]
impl<P: PolicyEngine + ?Sized> PolicyEngine for Arc<P> {
    async fn decide(&self, call: &Call) -> Result<Decision, PolicyError> {
        (**self).decide(call).await
    }

    async fn decide_each(
        &self,
        template: &Call,
        candidates: &[Resource],
    ) -> Result<Vec<Decision>, PolicyError> {
        (**self).decide_each(template, candidates).await
    }

    fn version(&self) -> String {
        (**self).version()
    }
}
