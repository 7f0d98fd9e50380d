//! The kill switch: stop a whole workspace, a connector, a tool, a model or one user at once.
//!
//! Engaging a switch takes effect on the next call (admission rejects it) and fires the
//! cancellation token of every matching call in flight, so protocols end those calls where
//! they can. Every change is recorded in the audit trail as an admin event.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::guard::{Guard, Verdict};
//! use fortress_core::guard::kill_switch::{KillSwitch, KillTarget};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let audit = Arc::new(MemoryAuditSink::new());
//! let switch = KillSwitch::new(audit.clone());
//! let call = Call::new(Subject::user("u", WorkspaceId::new("w")), Action::CallTool, Resource::tool("zendesk", "delete_ticket"));
//! let Verdict::Admit(Some(token)) = switch.admit(&call).await.unwrap() else { panic!() };
//!
//! let admin = Subject::user("ops", WorkspaceId::new("w"));
//! switch.engage(KillTarget::connector("zendesk"), &admin, "incident 42").await.unwrap();
//! assert!(token.is_cancelled()); // the call in flight is told to stop
//! assert!(matches!(switch.admit(&call).await.unwrap(), Verdict::Reject(_)));
//! assert_eq!(audit.events().len(), 1);
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Guard, GuardError, Verdict};
use crate::audit::{AuditError, AuditEvent, AuditSink, EventKind, SubjectRef};
use crate::call::{Call, ResourceKind};
use crate::denial::{Denial, DenialKind};
use crate::subject::{Subject, WorkspaceId};

/// What a kill switch stops. Connectors, tools and models are stopped for every workspace;
/// users are named within their workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KillTarget {
    /// Every call of a workspace.
    Workspace {
        /// The workspace.
        workspace: WorkspaceId,
    },
    /// Every call through a connector.
    Connector {
        /// The connector.
        connector: String,
    },
    /// Every call of one tool.
    Tool {
        /// The tool's connector.
        connector: String,
        /// The tool.
        tool: String,
    },
    /// Every call for a model.
    Model {
        /// The model id.
        model: String,
    },
    /// Every call of one user (or app).
    User {
        /// The subject's workspace.
        workspace: WorkspaceId,
        /// The subject id.
        subject: String,
    },
}

impl KillTarget {
    /// A workspace.
    pub fn workspace(workspace: impl Into<String>) -> Self {
        Self::Workspace {
            workspace: WorkspaceId::new(workspace),
        }
    }

    /// A connector.
    pub fn connector(connector: impl Into<String>) -> Self {
        Self::Connector {
            connector: connector.into(),
        }
    }

    /// A tool of a connector.
    pub fn tool(connector: impl Into<String>, tool: impl Into<String>) -> Self {
        Self::Tool {
            connector: connector.into(),
            tool: tool.into(),
        }
    }

    /// A model.
    pub fn model(model: impl Into<String>) -> Self {
        Self::Model {
            model: model.into(),
        }
    }

    /// A user or app of a workspace.
    pub fn user(workspace: impl Into<String>, subject: impl Into<String>) -> Self {
        Self::User {
            workspace: WorkspaceId::new(workspace),
            subject: subject.into(),
        }
    }

    fn matches(&self, key: &CallKey) -> bool {
        match self {
            Self::Workspace { workspace } => *workspace == key.workspace,
            Self::Connector { connector } => key.connector.as_deref() == Some(connector),
            Self::Tool { connector, tool } => {
                key.connector.as_deref() == Some(connector) && key.tool.as_deref() == Some(tool)
            }
            Self::Model { model } => key.model.as_deref() == Some(model),
            Self::User { workspace, subject } => {
                *workspace == key.workspace && *subject == key.subject
            }
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Self::Workspace { .. } => "workspace",
            Self::Connector { .. } => "connector",
            Self::Tool { .. } => "tool",
            Self::Model { .. } => "model",
            Self::User { .. } => "user",
        }
    }
}

impl fmt::Display for KillTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workspace { workspace } => write!(f, "workspace:{workspace}"),
            Self::Connector { connector } => write!(f, "connector:{connector}"),
            Self::Tool { connector, tool } => write!(f, "tool:{connector}/{tool}"),
            Self::Model { model } => write!(f, "model:{model}"),
            Self::User { workspace, subject } => write!(f, "user:{workspace}/{subject}"),
        }
    }
}

/// Why a switch is engaged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    /// The operator's reason (kept for operators and the audit; never shown to callers).
    pub reason: String,
    /// Who engaged it.
    pub by: String,
    /// When.
    pub since: DateTime<Utc>,
}

/// Why a kill-switch change failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KillSwitchError {
    /// The change could not be audited. An engage stays in force (stopping is the safe
    /// side); a release is not applied.
    #[error("kill switch change could not be audited")]
    Audit(#[source] AuditError),
    /// The registry's lock was poisoned by a panic elsewhere.
    #[error("kill switch state is unavailable")]
    Poisoned,
}

/// The part of a call that kill switches look at; calls with equal keys share one token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CallKey {
    workspace: WorkspaceId,
    subject: String,
    connector: Option<String>,
    tool: Option<String>,
    model: Option<String>,
}

impl CallKey {
    fn of(call: &Call) -> Self {
        let model = call.attributes.model.clone().or_else(|| {
            (call.resource.kind == ResourceKind::Model).then(|| call.resource.id.clone())
        });
        Self {
            workspace: call.subject.workspace.clone(),
            subject: call.subject.id.clone(),
            connector: call.resource.connector.clone(),
            tool: (call.resource.kind == ResourceKind::Tool).then(|| call.resource.id.clone()),
            model,
        }
    }
}

#[derive(Default)]
struct State {
    engaged: HashMap<KillTarget, Engagement>,
    /// One parent token per distinct call key seen; each admitted call gets a child, which
    /// leaves the parent's tree when the call drops it, so finished calls cost nothing.
    in_flight: HashMap<CallKey, CancellationToken>,
}

impl State {
    fn engaged_for(&self, key: &CallKey) -> Option<&KillTarget> {
        self.engaged.keys().find(|t| t.matches(key))
    }
}

/// The kill-switch registry; a [`Guard`] that rejects calls a switch stops.
pub struct KillSwitch {
    state: RwLock<State>,
    audit: Arc<dyn AuditSink>,
}

impl fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillSwitch").finish_non_exhaustive()
    }
}

impl KillSwitch {
    /// A registry with every switch released, auditing changes to `audit`.
    pub fn new(audit: Arc<dyn AuditSink>) -> Self {
        Self {
            state: RwLock::new(State::default()),
            audit,
        }
    }

    /// Engages a switch: later calls it covers are rejected and calls in flight are told to
    /// stop. Engaging an engaged switch updates its reason.
    pub async fn engage(
        &self,
        target: KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<(), KillSwitchError> {
        let before = {
            let mut state = self.state.write().map_err(|_| KillSwitchError::Poisoned)?;
            let before = state.engaged.insert(
                target.clone(),
                Engagement {
                    reason: reason.to_owned(),
                    by: actor.id.clone(),
                    since: Utc::now(),
                },
            );
            state.in_flight.retain(|key, token| {
                if target.matches(key) {
                    token.cancel();
                    false
                } else {
                    !token.is_cancelled()
                }
            });
            before
        };
        tracing::warn!(target = %target, by = %actor.id, "kill switch engaged");
        self.audit_change(
            "kill_switch.engage",
            &target,
            actor,
            reason,
            before.is_some(),
            true,
        )
        .await
    }

    /// Re-engages a switch recorded before a restart, keeping who engaged it, when and why.
    /// Not audited again: the original engage was.
    pub fn restore(
        &self,
        target: KillTarget,
        engagement: Engagement,
    ) -> Result<(), KillSwitchError> {
        let mut state = self.state.write().map_err(|_| KillSwitchError::Poisoned)?;
        state.engaged.insert(target, engagement);
        Ok(())
    }

    /// Makes the engaged set exactly `engaged`: the shared state, as another replica left
    /// it. Not audited (the replica that made each change audited it). Calls in flight
    /// that a newly engaged switch covers are told to stop.
    pub fn mirror(&self, engaged: Vec<(KillTarget, Engagement)>) -> Result<(), KillSwitchError> {
        let mut state = self.state.write().map_err(|_| KillSwitchError::Poisoned)?;
        let engaged: HashMap<KillTarget, Engagement> = engaged.into_iter().collect();
        let added: Vec<KillTarget> = engaged
            .keys()
            .filter(|t| !state.engaged.contains_key(t))
            .cloned()
            .collect();
        state.engaged = engaged;
        if !added.is_empty() {
            state.in_flight.retain(|key, token| {
                if added.iter().any(|t| t.matches(key)) {
                    token.cancel();
                    false
                } else {
                    !token.is_cancelled()
                }
            });
        }
        Ok(())
    }

    /// Releases a switch; returns whether it was engaged. Audited before it takes effect.
    pub async fn release(
        &self,
        target: &KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<bool, KillSwitchError> {
        if !self.is_engaged(target) {
            return Ok(false);
        }
        self.audit_change("kill_switch.release", target, actor, reason, true, false)
            .await?;
        let mut state = self.state.write().map_err(|_| KillSwitchError::Poisoned)?;
        tracing::warn!(target = %target, by = %actor.id, "kill switch released");
        Ok(state.engaged.remove(target).is_some())
    }

    /// Whether `target` is engaged.
    pub fn is_engaged(&self, target: &KillTarget) -> bool {
        self.state
            .read()
            .map(|s| s.engaged.contains_key(target))
            .unwrap_or(true)
    }

    /// Every engaged switch.
    pub fn engaged(&self) -> Vec<(KillTarget, Engagement)> {
        self.state
            .read()
            .map(|s| {
                s.engaged
                    .iter()
                    .map(|(t, e)| (t.clone(), e.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn audit_change(
        &self,
        verb: &str,
        target: &KillTarget,
        actor: &Subject,
        reason: &str,
        engaged_before: bool,
        engaged_after: bool,
    ) -> Result<(), KillSwitchError> {
        let mut event = AuditEvent::activity(
            EventKind::Admin,
            actor.workspace.clone(),
            SubjectRef {
                id: actor.id.clone(),
                kind: actor.kind,
            },
            verb,
            target.to_string(),
        );
        event.detail.insert("reason".into(), reason.into());
        // The Change Log shows every admin change as before → after.
        event.detail.insert(
            "before".into(),
            serde_json::json!({ "engaged": engaged_before }),
        );
        event.detail.insert(
            "after".into(),
            serde_json::json!({ "engaged": engaged_after }),
        );
        if let KillTarget::Connector { connector } | KillTarget::Tool { connector, .. } = target {
            event.connector = Some(connector.clone());
        }
        if let KillTarget::Model { model } = target {
            event.model = Some(model.clone());
        }
        self.audit
            .record(event)
            .await
            .map_err(KillSwitchError::Audit)
    }

    fn reject(target: &KillTarget) -> Verdict {
        Verdict::Reject(Denial::new(
            DenialKind::KillSwitch,
            format!("this {} is stopped by a kill switch", target.kind_name()),
        ))
    }
}

#[async_trait]
impl Guard for KillSwitch {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        let key = CallKey::of(call);
        let poisoned = || GuardError::Config("kill switch state is poisoned".into());
        {
            let state = self.state.read().map_err(|_| poisoned())?;
            if let Some(target) = state.engaged_for(&key) {
                return Ok(Self::reject(target));
            }
            if let Some(token) = state.in_flight.get(&key).filter(|t| !t.is_cancelled()) {
                return Ok(Verdict::Admit(Some(token.child_token())));
            }
        }
        // Checked again under the write lock so an engage between the two locks is seen.
        let mut state = self.state.write().map_err(|_| poisoned())?;
        if let Some(target) = state.engaged_for(&key) {
            return Ok(Self::reject(target));
        }
        let parent = state
            .in_flight
            .entry(key)
            .and_modify(|t| {
                if t.is_cancelled() {
                    *t = CancellationToken::new();
                }
            })
            .or_default();
        Ok(Verdict::Admit(Some(parent.child_token())))
    }
}
