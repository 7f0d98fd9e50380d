//! Dry runs and shadow mode: evaluate a candidate policy set beside the live one and report
//! the decisions that would change, without enforcing them.
//!
//! - [`dry_run`] replays recorded calls against both sets at once (the CLI's `diff`).
//! - [`ShadowEngine`] is a [`PolicyEngine`] that enforces the live engine's decisions and
//!   evaluates every call against a candidate too, keeping the changes it would make.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::policy::{CedarEngine, CompiledSet, PolicyDocuments, PolicyEngine};
//! use fortress_core::policy::shadow::ShadowEngine;
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let live = Arc::new(CedarEngine::new(&PolicyDocuments::new().with_policies(
//!     "p.cedar", r#"permit (principal, action, resource is Model);"#)).unwrap());
//! let candidate = CompiledSet::compile(&PolicyDocuments::new().with_policies(
//!     "p.cedar", r#"permit (principal, action, resource == Model::"small");"#)).unwrap();
//! let shadow = ShadowEngine::new(live.clone(), 100);
//! shadow.set_candidate(Some(Arc::new(candidate)));
//!
//! let call = Call::new(Subject::user("u", WorkspaceId::new("w")), Action::CreateMessage, Resource::model("large"));
//! assert!(shadow.decide(&call).await.unwrap().is_allowed()); // the live set still decides
//! let changes = shadow.take_changes();
//! assert_eq!(changes.len(), 1);
//! assert!(!changes[0].candidate.is_allowed());
//! # });
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use serde::Serialize;

use super::compiled::CompiledSet;
use super::{PolicyEngine, PolicyError};
use crate::call::{Call, Resource};
use crate::decision::{Decision, Effect};

/// A call whose decision differs between the live and the candidate set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionChange {
    /// The call's request id.
    pub request_id: String,
    /// Who (`user:alice@acme`).
    pub subject: String,
    /// The action name.
    pub action: String,
    /// The resource (`tool:zendesk/search_tickets`).
    pub resource: String,
    /// What the live set decided.
    pub live: Decision,
    /// What the candidate set would decide.
    pub candidate: Decision,
}

impl DecisionChange {
    fn of(call: &Call, live: Decision, candidate: Decision) -> Self {
        Self {
            request_id: call.request_id.to_string(),
            subject: format!(
                "{}:{}@{}",
                call.subject.kind.as_str(),
                call.subject.id,
                call.subject.workspace
            ),
            action: call.action.to_string(),
            resource: call.resource.to_string(),
            live,
            candidate,
        }
    }
}

/// The outcome of a [`dry_run`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DryRunReport {
    /// Calls replayed.
    pub calls: usize,
    /// Calls allowed by the live set and denied by the candidate.
    pub newly_denied: usize,
    /// Calls denied by the live set and allowed by the candidate.
    pub newly_allowed: usize,
    /// Every call whose effect changes.
    pub changes: Vec<DecisionChange>,
}

/// Decides each call under both sets and reports the calls whose effect changes. An
/// evaluation error counts as a deny (as enforcement treats it).
pub fn dry_run<'a>(
    live: &CompiledSet,
    candidate: &CompiledSet,
    calls: impl IntoIterator<Item = &'a Call>,
) -> DryRunReport {
    let mut report = DryRunReport::default();
    for call in calls {
        report.calls += 1;
        let before = decide_closed(live, call);
        let after = decide_closed(candidate, call);
        if before.effect != after.effect {
            if after.effect == Effect::Deny {
                report.newly_denied += 1;
            } else {
                report.newly_allowed += 1;
            }
            report.changes.push(DecisionChange::of(call, before, after));
        }
    }
    report
}

fn decide_closed(set: &CompiledSet, call: &Call) -> Decision {
    set.decide(call).unwrap_or_else(|e| {
        Decision::deny(set.version()).with_reason(format!("{e} (denied: fail closed)"))
    })
}

/// Enforces the live engine and evaluates a candidate set beside it.
pub struct ShadowEngine<E> {
    live: E,
    candidate: ArcSwapOption<CompiledSet>,
    changes: Mutex<VecDeque<DecisionChange>>,
    capacity: usize,
}

impl<E> std::fmt::Debug for ShadowEngine<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowEngine").finish_non_exhaustive()
    }
}

impl<E: PolicyEngine> ShadowEngine<E> {
    /// Wraps `live`, keeping at most `capacity` changes (oldest dropped first).
    pub fn new(live: E, capacity: usize) -> Self {
        Self {
            live,
            candidate: ArcSwapOption::empty(),
            changes: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// Sets (or with `None` clears) the candidate set.
    pub fn set_candidate(&self, candidate: Option<Arc<CompiledSet>>) {
        self.candidate.store(candidate);
    }

    /// The changes observed since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<DecisionChange> {
        self.changes
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default()
    }

    fn observe(&self, call: &Call, live: &Result<Decision, PolicyError>) {
        let Some(candidate) = self.candidate.load_full() else {
            return;
        };
        let live = match live {
            Ok(d) => d.clone(),
            Err(e) => Decision::deny(self.live.version())
                .with_reason(format!("{e} (denied: fail closed)")),
        };
        let shadow = decide_closed(&candidate, call);
        if shadow.effect == live.effect {
            return;
        }
        tracing::info!(
            request_id = %call.request_id,
            live = ?live.effect,
            candidate = ?shadow.effect,
            candidate_version = %shadow.policy_version,
            "shadow policy set would change this decision"
        );
        metrics::counter!("fortress_policy_shadow_changes_total").increment(1);
        if let Ok(mut changes) = self.changes.lock() {
            if changes.len() == self.capacity {
                changes.pop_front();
            }
            if self.capacity > 0 {
                changes.push_back(DecisionChange::of(call, live, shadow));
            }
        }
    }
}

#[async_trait]
impl<E: PolicyEngine> PolicyEngine for ShadowEngine<E> {
    async fn decide(&self, call: &Call) -> Result<Decision, PolicyError> {
        let live = self.live.decide(call).await;
        self.observe(call, &live);
        live
    }

    async fn decide_each(
        &self,
        template: &Call,
        candidates: &[Resource],
    ) -> Result<Vec<Decision>, PolicyError> {
        // Listings are enforced by the live engine only; shadowing every listed item would
        // multiply the cost of every tools/list.
        self.live.decide_each(template, candidates).await
    }

    fn version(&self) -> String {
        self.live.version()
    }
}
