//! # Fortress core
//!
//! The governance core shared by MCP Fortress and PAT Fortress: the domain types that
//! describe a call, the four pluggable engines — [`PolicyEngine`](policy::PolicyEngine),
//! [`Vault`](vault::Vault), [`Redactor`](redact::Redactor), [`AuditSink`](audit::AuditSink) —
//! and the tower layers that compose them around any service.
//!
//! ```text
//! client ─▶ [audit] ─▶ [guard] ─▶ [policy] ─▶ [redaction] ─▶ [credential] ─▶ upstream
//! ```
//!
//! A protocol crate describes each call once as a [`Call`](call::Call) (an `Arc<Call>`
//! request extension) and supplies a [`Responder`](denial::Responder) that turns refusals
//! into protocol answers; [`GovernanceStack`](stack::GovernanceStack) does the rest.

#[cfg(feature = "admin")]
pub mod admin;
pub mod audit;
pub mod body;
pub mod call;
pub mod cli;
pub mod cluster;
pub mod db;
pub mod decision;
pub mod denial;
pub mod guard;
pub mod keys;
pub mod layer;
pub mod logging;
pub mod policy;
pub mod redact;
pub mod secret;
pub mod sse;
pub mod stack;
pub mod subject;
pub mod tier;
pub mod tls;
pub mod vault;
pub mod workers;

/// The names most embedders need.
pub mod prelude {
    pub use crate::audit::{AuditEvent, AuditSink, JsonLinesAuditSink, MemoryAuditSink, Outcome};
    pub use crate::call::{Action, Attributes, Call, RequestId, Resource, ResourceKind, call_of};
    pub use crate::decision::{Decision, Effect};
    pub use crate::denial::{Denial, DenialKind, PlainResponder, Responder};
    pub use crate::guard::{AdmitAll, Guard, Verdict};
    pub use crate::layer::credential::{
        ConnectorSlot, ExtensionInjector, HeaderInjector, InjectedCredential,
    };
    pub use crate::policy::{AllowListPolicy, AllowRule, PolicyEngine};
    pub use crate::redact::{PatternRedactor, RedactionReport, RedactionScope, Redactor};
    pub use crate::secret::Secret;
    pub use crate::stack::GovernanceStack;
    pub use crate::subject::{Subject, SubjectKind, WorkspaceId};
    pub use crate::tier::Tier;
    pub use crate::vault::{CredentialSlot, MemoryVault, Vault};
}
