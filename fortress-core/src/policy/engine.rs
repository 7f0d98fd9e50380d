//! [`CedarEngine`]: the default [`PolicyEngine`], a compiled Cedar policy set behind an atomic
//! pointer. Reloading compiles the new documents completely before one pointer swap, so an
//! evaluation sees either the old set or the new one, never a mix; a set that fails to
//! compile is rejected with its line and column and the previous set stays live.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::policy::{CedarEngine, PolicyEngine, PolicyError};
//! use fortress_core::policy::documents::PolicyDocuments;
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let engine = CedarEngine::new(&PolicyDocuments::new().with_policies(
//!     "models.cedar",
//!     r#"permit (principal, action == Action::"messages/create", resource == Model::"small");"#,
//! )).unwrap();
//! let call = Call::new(Subject::user("u", WorkspaceId::new("w")), Action::CreateMessage, Resource::model("small"));
//! assert!(engine.decide(&call).await.unwrap().is_allowed());
//!
//! let before = engine.version();
//! let broken = PolicyDocuments::new().with_policies("models.cedar", "permit (principal, action");
//! assert!(matches!(engine.reload(&broken), Err(PolicyError::Invalid { line: 1, .. })));
//! assert_eq!(engine.version(), before); // the previous set stays live
//! # });
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use tokio::sync::watch;

use super::compiled::{CompileOptions, CompiledSet, Explanation};
use super::documents::PolicyDocuments;
use super::{PolicyEngine, PolicyError};
use crate::audit::{AuditError, AuditEvent, AuditSink, EventKind, Outcome, SubjectRef};
use crate::call::{Call, Resource};
use crate::decision::Decision;
use crate::guard::limits::LimitsConfig;
use crate::guard::rate_limit::LimitsSource;
use crate::subject::Subject;

/// Why an audited reload failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The set was rejected; the previous set stays live.
    #[error(transparent)]
    Policy(PolicyError),
    /// The change could not be audited.
    #[error("policy change could not be audited")]
    Audit(#[source] AuditError),
}

/// The default policy engine: Cedar, default deny, forbid wins, schema-validated, indexed.
#[derive(Debug)]
pub struct CedarEngine {
    live: ArcSwap<CompiledSet>,
    options: CompileOptions,
    changes: watch::Sender<String>,
}

impl CedarEngine {
    /// An engine serving the compiled `docs`.
    pub fn new(docs: &PolicyDocuments) -> Result<Self, PolicyError> {
        Self::with_options(docs, CompileOptions::default())
    }

    /// An engine serving the compiled `docs`, compiled with `options` now and on reload.
    pub fn with_options(
        docs: &PolicyDocuments,
        options: CompileOptions,
    ) -> Result<Self, PolicyError> {
        let set = CompiledSet::compile_with(docs, options)?;
        let (changes, _) = watch::channel(set.version().to_owned());
        Ok(Self {
            live: ArcSwap::from_pointee(set),
            options,
            changes,
        })
    }

    /// An engine serving the documents of a directory.
    pub fn from_dir(dir: impl AsRef<std::path::Path>) -> Result<Self, PolicyError> {
        Self::new(&PolicyDocuments::from_dir(dir)?)
    }

    /// An engine with no policy: it denies everything until a set is loaded.
    pub fn deny_all() -> Self {
        // The empty set always compiles; an error here would be a schema bug caught by tests.
        Self::new(&PolicyDocuments::new()).unwrap_or_else(|e| panic!("empty policy set: {e}"))
    }

    /// Compiles `docs` and, if it compiles, makes it live in one atomic swap. Returns the
    /// new version. On error the previous set stays live.
    pub fn reload(&self, docs: &PolicyDocuments) -> Result<String, PolicyError> {
        let set = CompiledSet::compile_with(docs, self.options)?;
        Ok(self.install(Arc::new(set)))
    }

    /// [`reload`](Self::reload) for the admin API: the change (old and new version) is
    /// recorded as an admin audit event by `actor`; a rejected set is recorded as a denied
    /// change. An audit failure is returned after the swap (the new set stays live, since
    /// it was valid and asked for).
    pub async fn reload_audited(
        &self,
        docs: &PolicyDocuments,
        actor: &Subject,
        audit: &dyn AuditSink,
    ) -> Result<String, ReloadError> {
        let before = PolicyEngine::version(self);
        let result = self.reload(docs);
        let mut event = AuditEvent::activity(
            EventKind::Admin,
            actor.workspace.clone(),
            SubjectRef {
                id: actor.id.clone(),
                kind: actor.kind,
            },
            "policy.update",
            format!("policy_set:{}", docs.version()),
        );
        event
            .detail
            .insert("previous_version".into(), before.into());
        match &result {
            Ok(version) => {
                event
                    .detail
                    .insert("version".into(), version.clone().into());
            }
            Err(error) => {
                event.outcome = Outcome::Denied;
                event
                    .detail
                    .insert("error".into(), error.to_string().into());
            }
        }
        audit.record(event).await.map_err(ReloadError::Audit)?;
        result.map_err(ReloadError::Policy)
    }

    /// Makes an already compiled set live (for example one checked in shadow mode first).
    pub fn install(&self, set: Arc<CompiledSet>) -> String {
        let version = set.version().to_owned();
        self.live.store(set);
        self.changes.send_replace(version.clone());
        tracing::info!(policy_version = %version, "policy set is live");
        version
    }

    /// The set live now. Holding it keeps it alive even across a reload.
    pub fn current(&self) -> Arc<CompiledSet> {
        self.live.load_full()
    }

    /// Notified with the new version after each successful reload.
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.changes.subscribe()
    }

    /// Would `call` be allowed by the live set, and why.
    pub fn explain(&self, call: &Call) -> Result<Explanation, PolicyError> {
        self.live.load().explain(call)
    }
}

#[async_trait]
impl PolicyEngine for CedarEngine {
    async fn decide(&self, call: &Call) -> Result<Decision, PolicyError> {
        self.live.load().decide(call)
    }

    async fn decide_each(
        &self,
        template: &Call,
        candidates: &[Resource],
    ) -> Result<Vec<Decision>, PolicyError> {
        self.live.load().decide_each(template, candidates)
    }

    fn version(&self) -> String {
        self.live.load().version().to_owned()
    }
}

impl LimitsSource for CedarEngine {
    fn limits(&self) -> Arc<LimitsConfig> {
        Arc::clone(self.live.load().limits())
    }
}
