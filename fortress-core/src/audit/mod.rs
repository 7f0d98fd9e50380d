//! The audit trail: the [`AuditEvent`] record, the [`AuditSink`] trait, and simple sinks.
//!
//! An event records metadata only — when, who, what, on what, the decision and its
//! reasons, the outcome and latency — never a credential value and never request or
//! response content. Tool arguments appear only as a keyed digest, unless a workspace opted
//! in to recording them redacted ([`arguments`]).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use fortress_core::audit::{AuditEvent, AuditSink, MemoryAuditSink, Outcome};
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let sink = MemoryAuditSink::new();
//! let call = Call::new(Subject::app("ci", WorkspaceId::new("acme")), Action::ListModels, Resource::workspace("acme"));
//! sink.record(AuditEvent::for_call(&call, Outcome::Success)).await.unwrap();
//! assert_eq!(sink.events().len(), 1);
//! # });
//! ```
//!
//! The default sink is [`DurableAuditSink`] over an [`AuditStore`] (SQLite in the data
//! directory, or PostgreSQL): events are hash-chained ([`chain`]), periodically covered by
//! checkpoints signed with a key held outside the database ([`checkpoint`], [`keys`]),
//! retained per tier ([`retention`]), queried page by page ([`query`]), exported
//! ([`export`]) and verified end to end ([`verify`]). See `docs/audit.md`.

pub mod anchor;
pub mod arguments;
pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod cli;
pub mod export;
mod jsonl;
pub mod keys;
mod memory;
pub mod merkle;
pub mod query;
pub mod retention;
pub mod row;
pub mod settings;
pub mod sink;
pub mod store;
pub mod verify;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::call::Call;
use crate::decision::{Decision, Effect};
use crate::subject::{SubjectKind, WorkspaceId};

pub use jsonl::JsonLinesAuditSink;
pub use memory::MemoryAuditSink;
pub use sink::{Acknowledge, DurableAuditSink, SinkConfig, WhenFull};
pub use store::{AuditStore, PostgresAuditStore, SqliteAuditStore};
pub use verify::{VerifyOptions, VerifyReport, verify_store};

/// What kind of activity an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A governed call through a gateway.
    Access,
    /// An administrative change (policy, connector, key, kill switch, settings).
    Admin,
    /// A credential lifecycle change (put, rotate, revoke, delete).
    Credential,
    /// A gateway-internal event (start, stop, retention purge, export).
    System,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Completed and answered successfully.
    Success,
    /// Refused by the gateway (policy, limit, kill switch, authentication).
    Denied,
    /// The upstream answered with an error or failed.
    UpstreamError,
    /// The gateway failed internally and failed closed.
    Error,
    /// The client went away before the answer was complete.
    ClientClosed,
}

/// The subject of an event, reduced to what the audit needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRef {
    /// Subject id.
    pub id: String,
    /// User or app.
    pub kind: SubjectKind,
}

/// The decision of an event, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Allow or deny.
    pub effect: Effect,
    /// Reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Determining policies.
    #[serde(default)]
    pub policy_ids: Vec<String>,
    /// Policy-set version.
    pub policy_version: String,
}

impl From<&Decision> for DecisionRecord {
    fn from(d: &Decision) -> Self {
        Self {
            effect: d.effect,
            reasons: d.reasons.clone(),
            policy_ids: d.policy_ids.clone(),
            policy_version: d.policy_version.clone(),
        }
    }
}

/// One audit record. Holds no credential value and no content by construction: every field
/// is metadata, and `Secret` cannot be serialized into `detail`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the event happened (for calls: when the call was received).
    pub timestamp: DateTime<Utc>,
    /// The request id, shared with logs and upstream calls.
    pub request_id: String,
    /// The workspace.
    pub workspace: WorkspaceId,
    /// What kind of activity.
    pub kind: EventKind,
    /// Who.
    pub subject: SubjectRef,
    /// What (an action name such as `tools/call`, or an admin verb such as `policy.update`).
    pub action: String,
    /// On what (`tool:zendesk/search_tickets`, `model:…`, `credential:…`).
    pub resource: String,
    /// The connector involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The model involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The policy decision, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it was denied, when it was (`forbidden`, `rate_limited`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<String>,
    /// The protocol status returned (HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Time to the response head, in microseconds.
    pub latency_us: u64,
    /// Time to the end of the response body, in microseconds.
    pub duration_us: u64,
    /// Redactions by entity type (counts, never values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redactions: BTreeMap<String, u64>,
    /// Keyed digest of the tool arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_digest: Option<String>,
    /// The tool arguments after redaction — only for workspaces that opted in
    /// ([`arguments::RedactedArguments`]); never unredacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// Further metadata (for admin events: before/after summaries without secret values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, serde_json::Value>,
}

impl AuditEvent {
    /// The event of a call refused in front of the governance stack: the call as the stack
    /// would record it, denied with `reason`, and who refused it (`refused_by`) as detail.
    /// Each refusal adds its own detail.
    pub fn refusal(call: &Call, refused_by: &str, reason: &str) -> Self {
        let mut event = Self::for_call(call, Outcome::Denied);
        event.decision = Some(DecisionRecord {
            effect: Effect::Deny,
            reasons: vec![reason.to_owned()],
            policy_ids: Vec::new(),
            policy_version: String::new(),
        });
        event
            .detail
            .insert("refused_by".into(), serde_json::Value::from(refused_by));
        event
    }

    /// The event of a call refused because the gateway key's scopes do not cover it: a
    /// [`refusal`](Self::refusal) by `key_scope` with the key's scopes (never the key) as
    /// detail. Both gateways record it before answering.
    pub fn scope_refusal(call: &Call, scopes: &[String], reason: &str) -> Self {
        let mut event = Self::refusal(call, "key_scope", reason);
        event.denial = Some(crate::denial::DenialKind::Forbidden.as_str().to_owned());
        event.detail.insert(
            "key_scopes".into(),
            serde_json::Value::from(scopes.to_vec()),
        );
        event
    }

    /// The event for a governed call, with zero latency and no decision yet.
    pub fn for_call(call: &Call, outcome: Outcome) -> Self {
        Self {
            timestamp: call.received_at,
            request_id: call.request_id.to_string(),
            workspace: call.subject.workspace.clone(),
            kind: EventKind::Access,
            subject: SubjectRef {
                id: call.subject.id.clone(),
                kind: call.subject.kind,
            },
            action: call.action.to_string(),
            resource: call.resource.to_string(),
            connector: call.resource.connector.clone(),
            model: call.attributes.model.clone(),
            decision: None,
            outcome,
            denial: None,
            status: None,
            latency_us: 0,
            duration_us: 0,
            redactions: BTreeMap::new(),
            arguments_digest: None,
            arguments: None,
            client_ip: call.attributes.client_ip,
            detail: BTreeMap::new(),
        }
    }

    /// An event for a non-call activity (admin change, credential change, system event).
    pub fn activity(
        kind: EventKind,
        workspace: WorkspaceId,
        actor: SubjectRef,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            timestamp: Utc::now(),
            request_id: uuid::Uuid::now_v7().to_string(),
            workspace,
            kind,
            subject: actor,
            action: action.into(),
            resource: resource.into(),
            connector: None,
            model: None,
            decision: None,
            outcome: Outcome::Success,
            denial: None,
            status: None,
            latency_us: 0,
            duration_us: 0,
            redactions: BTreeMap::new(),
            arguments_digest: None,
            arguments: None,
            client_ip: None,
            detail: BTreeMap::new(),
        }
    }
}

/// Why an event could not be recorded. Callers fail closed on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink's queue is full and it is configured to fail closed rather than wait.
    #[error("audit queue is full")]
    QueueFull,
    /// The sink was shut down.
    #[error("audit sink is closed")]
    Closed,
    /// The event could not be encoded.
    #[error("audit event cannot be encoded")]
    Encode(#[source] serde_json::Error),
    /// Storage failed.
    #[error("audit storage failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Records audit events durably.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event; returns once it is durable (or fails).
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Makes everything recorded so far durable.
    async fn flush(&self) -> Result<(), AuditError>;
}

#[async_trait]
impl<A: AuditSink + ?Sized> AuditSink for Arc<A> {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        (**self).record(event).await
    }

    async fn flush(&self) -> Result<(), AuditError> {
        (**self).flush().await
    }
}
