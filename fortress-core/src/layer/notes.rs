//! What inner layers tell the audit layer about a call.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::decision::Decision;
use crate::denial::{Denial, DenialKind};
use crate::redact::RedactionReport;
use crate::vault::CredentialSlot;

#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) decision: Option<Decision>,
    pub(crate) denial: Option<DenialKind>,
    pub(crate) redactions: RedactionReport,
    pub(crate) credential: Option<(CredentialSlot, u32)>,
    pub(crate) failed: Option<String>,
    pub(crate) detail: Vec<(String, serde_json::Value)>,
}

/// A shared record of one call, installed by the audit layer as a request extension and
/// written by the layers (and protocol code) inside it. It holds metadata only.
#[derive(Clone, Debug, Default)]
pub struct CallNotes(Arc<Mutex<Notes>>);

impl CallNotes {
    /// A fresh record.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Notes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the policy decision.
    pub fn decision(&self, decision: &Decision) {
        self.lock().decision = Some(decision.clone());
    }

    /// Records a refusal.
    pub fn denial(&self, denial: &Denial) {
        let mut notes = self.lock();
        notes.denial = Some(denial.kind);
        if let Some(decision) = &denial.decision {
            notes.decision = Some(decision.clone());
        }
    }

    /// Adds redaction counts.
    pub fn redactions(&self, report: &RedactionReport) {
        self.lock().redactions.merge(report);
    }

    /// Records which credential (slot and version, never the value) the call used.
    pub fn credential(&self, slot: &CredentialSlot, version: u32) {
        self.lock().credential = Some((slot.clone(), version));
    }

    /// Marks the call as failed upstream even though the response status looked fine
    /// (for example a JSON-RPC error inside an HTTP 200).
    pub fn failed(&self, reason: impl Into<String>) {
        self.lock().failed = Some(reason.into());
    }

    /// Adds a metadata entry to the event's `detail` (never content or secrets).
    pub fn detail(&self, key: impl Into<String>, value: serde_json::Value) {
        self.lock().detail.push((key.into(), value));
    }

    /// Counts so far (for tests and protocol code).
    pub fn redaction_report(&self) -> RedactionReport {
        self.lock().redactions.clone()
    }
}

/// The notes of a request, if the audit layer installed them.
pub fn notes_of<B>(request: &http::Request<B>) -> Option<&CallNotes> {
    request.extensions().get::<CallNotes>()
}
