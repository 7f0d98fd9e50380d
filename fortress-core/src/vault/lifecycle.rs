//! Audit events for credential lifecycle changes. An event names the slot, the version and
//! the key source; it never carries a value, a ciphertext or key material.

use std::sync::Arc;

use crate::audit::{AuditEvent, AuditSink, EventKind, SubjectRef};
use crate::subject::{SubjectKind, WorkspaceId};

use super::{CredentialSlot, VaultError};

/// Who lifecycle events are attributed to when the caller does not say.
pub(crate) fn default_actor() -> SubjectRef {
    SubjectRef {
        id: "fortress-vault".into(),
        kind: SubjectKind::App,
    }
}

#[derive(Clone)]
pub(crate) struct LifecycleAudit {
    sink: Arc<dyn AuditSink>,
    actor: SubjectRef,
}

impl LifecycleAudit {
    pub(crate) fn new(sink: Arc<dyn AuditSink>) -> Self {
        Self {
            sink,
            actor: default_actor(),
        }
    }

    pub(crate) fn with_actor(mut self, actor: SubjectRef) -> Self {
        self.actor = actor;
        self
    }

    /// Records a change to one slot. The change has already happened; a failure to record
    /// it is still reported to the caller so that it can fail closed and alert.
    pub(crate) async fn slot_changed(
        &self,
        action: &str,
        slot: &CredentialSlot,
        detail: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    ) -> Result<(), VaultError> {
        let mut event = AuditEvent::activity(
            EventKind::Credential,
            slot.workspace.clone(),
            self.actor.clone(),
            action,
            format!("credential:{slot}"),
        );
        event.connector = Some(slot.connector.clone());
        event
            .detail
            .extend(detail.into_iter().map(|(k, v)| (k.to_owned(), v)));
        self.sink
            .record(event)
            .await
            .map_err(|e| VaultError::Backend(Box::new(e)))
    }

    /// Records a change to a whole workspace (termination, key rotation).
    pub(crate) async fn workspace_changed(
        &self,
        action: &str,
        workspace: &WorkspaceId,
        detail: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    ) -> Result<(), VaultError> {
        let mut event = AuditEvent::activity(
            EventKind::Credential,
            workspace.clone(),
            self.actor.clone(),
            action,
            format!("workspace:{workspace}"),
        );
        event
            .detail
            .extend(detail.into_iter().map(|(k, v)| (k.to_owned(), v)));
        self.sink
            .record(event)
            .await
            .map_err(|e| VaultError::Backend(Box::new(e)))
    }
}
