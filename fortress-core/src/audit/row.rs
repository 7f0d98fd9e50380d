//! How an event is laid out in a store: indexed columns for queries beside the canonical
//! body that is hashed.
//!
//! The columns are derived from the body, and verification re-derives them, so editing a
//! column to hide a row from a query is detected as surely as editing the body.

use chrono::{DateTime, TimeZone, Utc};

use super::{AuditEvent, EventKind, Outcome, canonical};
use crate::decision::Effect;

/// The queryable columns of a stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventColumns {
    /// The event timestamp, in microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// The workspace.
    pub workspace: String,
    /// The subject id.
    pub subject_id: String,
    /// `user` or `app`.
    pub subject_kind: String,
    /// The action name.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The connector.
    pub connector: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// `allow`, `deny`, or none.
    pub decision: Option<String>,
    /// The outcome name.
    pub outcome: String,
    /// The request id.
    pub request_id: String,
}

/// The name an outcome is stored and filtered under.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Denied => "denied",
        Outcome::UpstreamError => "upstream_error",
        Outcome::Error => "error",
        Outcome::ClientClosed => "client_closed",
    }
}

/// The name an event kind has in the stored body (and is filtered under).
pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Access => "access",
        EventKind::Admin => "admin",
        EventKind::Credential => "credential",
        EventKind::System => "system",
    }
}

/// The name a decision effect is stored and filtered under.
pub fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// Microseconds since the epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The instant `us` microseconds after the epoch (the epoch itself if out of range).
pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

impl EventColumns {
    /// The columns of an event.
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            timestamp_us: micros(event.timestamp),
            workspace: event.workspace.as_str().to_owned(),
            subject_id: event.subject.id.clone(),
            subject_kind: event.subject.kind.as_str().to_owned(),
            action: event.action.clone(),
            resource: event.resource.clone(),
            connector: event.connector.clone(),
            model: event.model.clone(),
            decision: event
                .decision
                .as_ref()
                .map(|d| effect_name(d.effect).to_owned()),
            outcome: outcome_name(event.outcome).to_owned(),
            request_id: event.request_id.clone(),
        }
    }
}

/// An event ready to append: its columns and its canonical body.
#[derive(Clone, Debug)]
pub struct EncodedEvent {
    /// Queryable columns.
    pub columns: EventColumns,
    /// The canonical encoding (see [`canonical`]).
    pub body: String,
}

impl EncodedEvent {
    /// Encodes an event.
    pub fn new(event: &AuditEvent) -> Result<Self, serde_json::Error> {
        Ok(Self {
            columns: EventColumns::of(event),
            body: canonical::encode(event)?,
        })
    }
}

/// An event as stored: its place in the chain, its hash, its columns and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// When the store appended it (drives retention), in microseconds since the epoch.
    pub recorded_at_us: i64,
    /// The chain hash of this event (see [`super::chain::link_hash`]).
    pub hash: [u8; 32],
    /// Queryable columns.
    pub columns: EventColumns,
    /// The canonical body.
    pub body: String,
}

impl StoredEvent {
    /// Decodes the body.
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        canonical::decode(&self.body)
    }

    /// When the store appended it.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        from_micros(self.recorded_at_us)
    }
}
