//! The dashboard's policy editor: read the live policy documents, validate a candidate with
//! line and column errors, dry-run it against recently audited calls, and apply it in one
//! atomic swap of the live [`CedarEngine`] set.
//!
//! A dry run rebuilds each recent access event into the [`Call`] it recorded (subject,
//! action, resource, model, client IP) and decides it under the live and the candidate set
//! ([`dry_run`]). Groups and tool arguments are not in the audit trail (by design), so
//! policies that depend on them are replayed without them; the report says how many
//! events could not be replayed.
//!
//! ```
//! use std::sync::Arc;
//! use fortress_core::admin::policy_editor::{DocumentEdit, PolicyEditor};
//! use fortress_core::policy::{CedarEngine, PolicyDocuments};
//!
//! let docs = PolicyDocuments::new().with_policies("main.cedar", "permit(principal, action, resource);");
//! let editor = PolicyEditor::new(Arc::new(CedarEngine::new(&docs).unwrap()), docs);
//! let candidate = editor.candidate(&[DocumentEdit { name: "main.cedar".into(), text: "permit(principal".into() }]).unwrap();
//! let error = editor.validate(&candidate).unwrap_err();
//! assert_eq!((error.line, error.column > 1), (1, true));
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::call::{Action, Attributes, Call, RequestId, Resource, ResourceKind};
use crate::cluster::policies::SharedPolicies;
use crate::policy::documents::{DocumentKind, LIMITS_FILE};
use crate::policy::shadow::{DryRunReport, dry_run};
use crate::policy::store::PolicyStoreError;
use crate::policy::{CedarEngine, CompiledSet, PolicyDocuments, PolicyEngine, PolicyError};
use crate::subject::{Subject, SubjectKind};

/// One document of a candidate: its file name and new text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentEdit {
    /// `*.cedar`, `*.cedarschema` or `limits.toml`.
    pub name: String,
    /// The full new text.
    pub text: String,
}

/// A candidate that does not compile, located in its document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong (starts with the document's name).
    pub message: String,
}

/// Why an edit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditorError {
    /// A document name is not a policy, schema or limits file name.
    #[error("{0}: policy documents are named *.cedar, *.cedarschema or limits.toml")]
    BadName(String),
    /// The candidate does not compile.
    #[error("invalid policy at line {}, column {}: {}", .0.line, .0.column, .0.message)]
    Invalid(ValidationError),
    /// The policy directory could not be written; the live set is unchanged.
    #[error("policy directory could not be written")]
    Persist(#[source] std::io::Error),
    /// The shared policy store failed; the live set is unchanged.
    #[error("shared policy store failed")]
    Store(#[source] PolicyStoreError),
}

/// The live policy set behind the dashboard's editor.
pub struct PolicyEditor {
    engine: Arc<CedarEngine>,
    documents: RwLock<PolicyDocuments>,
    dir: Option<PathBuf>,
    /// Replicas: the store whose newest revision is in force, and the bus.
    shared: Option<SharedPolicies>,
    /// The stored revision live here (0: none yet).
    revision: AtomicI64,
    // One apply at a time, so the documents and the live set never disagree.
    apply: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PolicyEditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEditor")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn kind_of(name: &str) -> Option<DocumentKind> {
    let plain = !name.is_empty()
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_graphic());
    if !plain {
        return None;
    }
    if name == LIMITS_FILE {
        Some(DocumentKind::Limits)
    } else if name.ends_with(".cedarschema") {
        Some(DocumentKind::Schema)
    } else if name.ends_with(".cedar") {
        Some(DocumentKind::Policies)
    } else {
        None
    }
}

impl PolicyEditor {
    /// Edits the set `engine` serves, which was compiled from `documents`.
    pub fn new(engine: Arc<CedarEngine>, documents: PolicyDocuments) -> Self {
        Self {
            engine,
            documents: RwLock::new(documents),
            dir: None,
            shared: None,
            revision: AtomicI64::new(0),
            apply: tokio::sync::Mutex::new(()),
        }
    }

    /// Shares the set with other replicas through `shared`: applied sets are saved there
    /// and announced (instead of written to a directory), and
    /// [`follow_shared`](Self::follow_shared) makes the newest stored set live. Call
    /// [`join_shared`](Self::join_shared) once at start.
    #[must_use]
    pub fn shared_through(mut self, shared: SharedPolicies) -> Self {
        self.shared = Some(shared);
        self
    }

    /// At start: serve the newest stored set, or, when the store has none yet (the first
    /// replica of a deployment), store the set this editor was opened with. Returns the
    /// version made live, if it changed.
    pub async fn join_shared(&self) -> Result<Option<String>, EditorError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let _one_at_a_time = self.apply.lock().await;
        let latest = shared
            .store()
            .latest(shared.set())
            .await
            .map_err(EditorError::Store)?;
        match latest {
            Some(stored) => self.adopt(stored.revision, stored.documents),
            None => {
                let revision = shared
                    .store()
                    .save_compiled(shared.set(), &self.documents())
                    .await
                    .map_err(EditorError::Store)?;
                self.revision.store(revision, Ordering::Release);
                Ok(None)
            }
        }
    }

    /// Makes the newest stored set live if it is not already (a cheap revision check
    /// first). Returns the version made live, if it changed.
    pub async fn follow_shared(&self) -> Result<Option<String>, EditorError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let store = shared.store();
        let newest = store
            .latest_revision(shared.set())
            .await
            .map_err(EditorError::Store)?;
        if newest == self.revision.load(Ordering::Acquire) {
            return Ok(None);
        }
        let _one_at_a_time = self.apply.lock().await;
        match store
            .latest(shared.set())
            .await
            .map_err(EditorError::Store)?
        {
            Some(stored) if stored.revision != self.revision.load(Ordering::Acquire) => {
                self.adopt(stored.revision, stored.documents)
            }
            _ => Ok(None),
        }
    }

    /// Makes a stored revision live (the caller holds the apply lock).
    fn adopt(
        &self,
        revision: i64,
        documents: PolicyDocuments,
    ) -> Result<Option<String>, EditorError> {
        let changed = documents.version() != self.version();
        let version = if changed {
            let set = self.validate(&documents).map_err(EditorError::Invalid)?;
            Some(self.engine.install(Arc::new(set)))
        } else {
            None
        };
        *self.documents.write().unwrap_or_else(|e| e.into_inner()) = documents;
        self.revision.store(revision, Ordering::Release);
        Ok(version)
    }

    /// Writes applied documents to `dir` too, so they survive a restart.
    #[must_use]
    pub fn persist_to(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The engine whose set is edited.
    pub fn engine(&self) -> &Arc<CedarEngine> {
        &self.engine
    }

    /// The documents of the live set.
    pub fn documents(&self) -> PolicyDocuments {
        self.documents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The version of the live set.
    pub fn version(&self) -> String {
        PolicyEngine::version(self.engine.as_ref())
    }

    /// The live documents with `edits` applied: an edited document replaces the one of the
    /// same name, a new name adds a document, the others stay.
    pub fn candidate(&self, edits: &[DocumentEdit]) -> Result<PolicyDocuments, EditorError> {
        let live = self.documents();
        let mut docs = PolicyDocuments::new();
        for doc in live.documents() {
            if !edits.iter().any(|e| e.name == doc.name) {
                docs = docs.with(doc.kind, doc.name.clone(), doc.text.clone());
            }
        }
        for edit in edits {
            let kind =
                kind_of(&edit.name).ok_or_else(|| EditorError::BadName(edit.name.clone()))?;
            docs = docs.with(kind, edit.name.clone(), edit.text.clone());
        }
        Ok(docs)
    }

    /// Compiles a candidate, or says where it is wrong.
    pub fn validate(&self, candidate: &PolicyDocuments) -> Result<CompiledSet, ValidationError> {
        CompiledSet::compile(candidate).map_err(|e| match e {
            PolicyError::Invalid {
                line,
                column,
                message,
            } => ValidationError {
                line,
                column,
                message,
            },
            other => ValidationError {
                line: 1,
                column: 1,
                message: other.to_string(),
            },
        })
    }

    /// Decides `events` (recent access events) under the live set and `candidate`.
    /// Returns the report and how many events could not be rebuilt into calls.
    pub fn dry_run(&self, candidate: &CompiledSet, events: &[AuditEvent]) -> (DryRunReport, usize) {
        let calls: Vec<Call> = events.iter().filter_map(call_of_event).collect();
        let skipped = events.len() - calls.len();
        (dry_run(&self.engine.current(), candidate, &calls), skipped)
    }

    /// Validates, persists and makes `candidate` live in one swap. Returns the previous and
    /// the new version. On any error the live set is unchanged. A shared set is saved to
    /// the store (the source of truth for every replica) and then announced.
    pub async fn apply(&self, candidate: PolicyDocuments) -> Result<(String, String), EditorError> {
        let _one_at_a_time = self.apply.lock().await;
        let set = self.validate(&candidate).map_err(EditorError::Invalid)?;
        match &self.shared {
            Some(shared) => {
                let revision = shared
                    .store()
                    .save_compiled(shared.set(), &candidate)
                    .await
                    .map_err(EditorError::Store)?;
                self.revision.store(revision, Ordering::Release);
            }
            None => {
                if let Some(dir) = &self.dir {
                    write_documents(dir, &self.documents(), &candidate)
                        .map_err(EditorError::Persist)?;
                }
            }
        }
        let before = self.version();
        let after = self.engine.install(Arc::new(set));
        *self.documents.write().unwrap_or_else(|e| e.into_inner()) = candidate;
        if let Some(shared) = &self.shared {
            shared.announce().await;
        }
        Ok((before, after))
    }
}

/// One gateway's policy set in the dashboard's editor: a name to select it by, its
/// editor, and which audited calls are its own (a dry run replays only those).
#[derive(Clone, Debug)]
pub struct PolicySet {
    name: String,
    editor: Arc<PolicyEditor>,
    actions: Vec<String>,
}

impl PolicySet {
    /// The set `name` (for example `pat` or `mcp`), edited through `editor`; its dry runs
    /// replay every audited call until [`for_actions`](Self::for_actions) narrows them.
    pub fn new(name: impl Into<String>, editor: Arc<PolicyEditor>) -> Self {
        Self {
            name: name.into(),
            editor,
            actions: Vec::new(),
        }
    }

    /// Replays only calls whose action starts with one of `prefixes` (the gateway's own).
    #[must_use]
    pub fn for_actions<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.actions = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The set's editor.
    pub fn editor(&self) -> &Arc<PolicyEditor> {
        &self.editor
    }

    /// Whether `event` is a call this set governs.
    pub fn governs(&self, event: &AuditEvent) -> bool {
        self.actions.is_empty() || self.actions.iter().any(|a| event.action.starts_with(a))
    }
}

/// Writes each document (to a temporary name, then renamed over the old file) and removes
/// documents the candidate dropped.
fn write_documents(
    dir: &Path,
    live: &PolicyDocuments,
    candidate: &PolicyDocuments,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for doc in candidate.documents() {
        let tmp = dir.join(format!(".{}.tmp", doc.name));
        std::fs::write(&tmp, &doc.text)?;
        std::fs::rename(&tmp, dir.join(&doc.name))?;
    }
    for doc in live.documents() {
        if !candidate.documents().iter().any(|d| d.name == doc.name) {
            match std::fs::remove_file(dir.join(&doc.name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Rebuilds the call an access event recorded (without groups or tool arguments, which
/// the audit trail does not keep). `None` for events that are not calls.
pub fn call_of_event(event: &AuditEvent) -> Option<Call> {
    if event.kind != crate::audit::EventKind::Access {
        return None;
    }
    let subject = match event.subject.kind {
        SubjectKind::User => Subject::user(event.subject.id.clone(), event.workspace.clone()),
        SubjectKind::App => Subject::app(event.subject.id.clone(), event.workspace.clone()),
    };
    let resource = resource_of(&event.resource, event.connector.as_deref())?;
    let mut call = Call::new(subject, Action::from(event.action.clone()), resource)
        .with_attributes(Attributes {
            client_ip: event.client_ip,
            model: event.model.clone(),
            ..Attributes::default()
        })
        .with_request_id(RequestId::new(event.request_id.clone()));
    call.received_at = event.timestamp;
    Some(call)
}

/// Parses a resource as [`Resource`]'s `Display` writes it (`tool:zendesk/search`,
/// `model:claude-x`, `connector:zendesk`, `endpoint:GET /v1/files`).
fn resource_of(text: &str, connector: Option<&str>) -> Option<Resource> {
    let (kind, rest) = text.split_once(':')?;
    let kind = match kind {
        "workspace" => ResourceKind::Workspace,
        "connector" => return Some(Resource::connector(rest)),
        "tool" => ResourceKind::Tool,
        "resource" => ResourceKind::Resource,
        "prompt" => ResourceKind::Prompt,
        "model" => ResourceKind::Model,
        "endpoint" => ResourceKind::Endpoint,
        _ => return None,
    };
    // The connector prefix is only there when the call had a connector: ids may hold `/`.
    let (id, connector) =
        match connector.and_then(|c| Some((rest.strip_prefix(c)?.strip_prefix('/')?, c))) {
            Some((id, c)) => (id, Some(c.to_owned())),
            None => (rest, None),
        };
    Some(Resource::new(kind, id, connector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;
    use crate::subject::WorkspaceId;

    #[test]
    fn recorded_calls_are_rebuilt() {
        for (resource, connector) in [
            (Resource::tool("zendesk", "search/v2"), Some("zendesk")),
            (Resource::model("claude-x"), None),
            (Resource::connector("github"), Some("github")),
            (
                Resource::new(ResourceKind::Endpoint, "GET /v1/files", None),
                None,
            ),
        ] {
            let call = Call::new(
                Subject::app("ci", WorkspaceId::new("acme")),
                Action::CallTool,
                resource.clone(),
            );
            let event = AuditEvent::for_call(&call, Outcome::Success);
            assert_eq!(event.connector.as_deref(), connector);
            let rebuilt = call_of_event(&event).unwrap();
            assert_eq!(rebuilt.resource, resource);
            assert_eq!(rebuilt.subject.kind, SubjectKind::App);
            assert_eq!(rebuilt.request_id, call.request_id);
        }
    }

    #[tokio::test]
    async fn applying_swaps_the_live_set_and_writes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("old.cedar"),
            "forbid(principal, action, resource);",
        )
        .unwrap();
        let docs = PolicyDocuments::from_dir(dir.path()).unwrap();
        let engine = Arc::new(CedarEngine::new(&docs).unwrap());
        let editor = PolicyEditor::new(engine.clone(), docs).persist_to(dir.path());
        let call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::CreateMessage,
            Resource::model("m"),
        );
        assert!(!engine.decide(&call).await.unwrap().is_allowed());
        // A candidate that replaces nothing keeps `old.cedar`: forbid still wins.
        let add = editor
            .candidate(&[DocumentEdit {
                name: "new.cedar".into(),
                text: "permit(principal, action, resource);".into(),
            }])
            .unwrap();
        assert_eq!(add.documents().len(), 2);
        // Dropping `old.cedar` and adding `new.cedar` removes the file too.
        let replaced = PolicyDocuments::new()
            .with_policies("new.cedar", "permit(principal, action, resource);");
        let (before, after) = editor.apply(replaced).await.unwrap();
        assert_ne!(before, after);
        assert!(engine.decide(&call).await.unwrap().is_allowed());
        assert!(!dir.path().join("old.cedar").exists());
        let reread = PolicyDocuments::from_dir(dir.path()).unwrap();
        assert_eq!(reread.version(), after);
        // An invalid candidate changes neither the engine nor the files.
        let broken = PolicyDocuments::new().with_policies("new.cedar", "permit(");
        assert!(matches!(
            editor.apply(broken).await,
            Err(EditorError::Invalid(_))
        ));
        assert_eq!(engine.version(), after);
        assert_eq!(
            PolicyDocuments::from_dir(dir.path()).unwrap().version(),
            after
        );
    }

    #[tokio::test]
    async fn a_shared_set_is_stored_announced_and_followed() {
        use crate::policy::store::PolicyStore;
        let store = PolicyStore::open(crate::db::Database::sqlite_memory().await.unwrap())
            .await
            .unwrap();
        let replica = |docs: PolicyDocuments| {
            let engine = Arc::new(CedarEngine::new(&docs).unwrap());
            let editor = PolicyEditor::new(engine.clone(), docs)
                .shared_through(SharedPolicies::new(store.clone(), "pat", None));
            (engine, Arc::new(editor))
        };
        let forbid = PolicyDocuments::new()
            .with_policies("main.cedar", "forbid(principal, action, resource);");
        let permit = PolicyDocuments::new()
            .with_policies("main.cedar", "permit(principal, action, resource);");
        let call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::CreateMessage,
            Resource::model("m"),
        );
        // The first replica seeds the store; a later one, whatever its own documents,
        // serves the stored set.
        let (engine_a, a) = replica(forbid.clone());
        assert_eq!(a.join_shared().await.unwrap(), None);
        let (engine_b, b) = replica(permit.clone());
        assert_eq!(b.join_shared().await.unwrap(), Some(forbid.version()));
        assert!(!engine_b.decide(&call).await.unwrap().is_allowed());
        assert_eq!(b.documents(), forbid);

        a.apply(permit.clone()).await.unwrap();
        assert!(engine_a.decide(&call).await.unwrap().is_allowed());
        assert_eq!(b.follow_shared().await.unwrap(), Some(permit.version()));
        assert!(engine_b.decide(&call).await.unwrap().is_allowed());
        assert_eq!(b.follow_shared().await.unwrap(), None);
        assert_eq!(store.latest_revision("pat").await.unwrap(), 2);
        // A broken set is stored nowhere and changes nothing.
        let broken = PolicyDocuments::new().with_policies("main.cedar", "permit(");
        assert!(matches!(
            b.apply(broken).await,
            Err(EditorError::Invalid(_))
        ));
        assert_eq!(store.latest_revision("pat").await.unwrap(), 2);
        assert_eq!(a.follow_shared().await.unwrap(), None);
    }

    #[test]
    fn document_names_are_plain_policy_files() {
        assert_eq!(kind_of("main.cedar"), Some(DocumentKind::Policies));
        assert_eq!(kind_of("limits.toml"), Some(DocumentKind::Limits));
        for bad in ["../x.cedar", "a/b.cedar", ".hidden.cedar", "notes.md", ""] {
            assert_eq!(kind_of(bad), None, "{bad}");
        }
    }
}
