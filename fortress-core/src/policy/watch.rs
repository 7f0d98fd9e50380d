//! Hot reload from a directory: [`PolicyWatcher`] polls the policy directory and reloads the
//! engine when its content hash changes. A set that does not compile is logged with its line
//! and column and skipped; the previous set stays live until a valid one appears.
//!
//! Polling the content (not file-system events) keeps reloads correct on every platform and
//! volume type (network mounts, Kubernetes config maps that swap symlinks), at the cost of
//! reading a few small files per interval.
//!
//! ```
//! use std::sync::Arc;
//! use fortress_core::policy::CedarEngine;
//! use fortress_core::policy::watch::{PolicyWatcher, ReloadOutcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("p.cedar"), "").unwrap();
//! let engine = Arc::new(CedarEngine::from_dir(dir.path()).unwrap());
//! let mut watcher = PolicyWatcher::new(engine.clone(), dir.path());
//! assert_eq!(watcher.check().unwrap(), ReloadOutcome::Unchanged);
//! std::fs::write(dir.path().join("p.cedar"), "permit(principal, action, resource);").unwrap();
//! assert!(matches!(watcher.check().unwrap(), ReloadOutcome::Reloaded(_)));
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::documents::PolicyDocuments;
use super::{CedarEngine, PolicyError};
#[cfg(feature = "admin")]
use crate::admin::policy_editor::PolicyEditor;

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The directory holds the set already live (or a set already rejected).
    Unchanged,
    /// A new set is live, with this version.
    Reloaded(String),
}

/// Reloads an engine from a directory when the directory's content changes.
#[derive(Debug)]
pub struct PolicyWatcher {
    engine: Arc<CedarEngine>,
    dir: PathBuf,
    /// The version of the documents last seen, valid or not.
    seen: Option<String>,
    /// Applies changes instead of reloading the engine directly (replicas: the editor
    /// saves them to the shared store and announces them).
    #[cfg(feature = "admin")]
    editor: Option<Arc<PolicyEditor>>,
}

impl PolicyWatcher {
    /// Watches `dir` for `engine`; the engine's live version counts as seen.
    pub fn new(engine: Arc<CedarEngine>, dir: impl AsRef<Path>) -> Self {
        let seen = Some(super::PolicyEngine::version(engine.as_ref()));
        Self {
            engine,
            dir: dir.as_ref().to_owned(),
            seen,
            #[cfg(feature = "admin")]
            editor: None,
        }
    }

    /// Applies the directory's changes through `editor` (which edits this watcher's
    /// engine): with a shared store, a change made to one replica's directory is saved
    /// there and reaches every replica. Only [`spawn`](Self::spawn) uses it.
    #[cfg(feature = "admin")]
    #[must_use]
    pub fn through(mut self, editor: Arc<PolicyEditor>) -> Self {
        self.editor = Some(editor);
        self
    }

    /// The directory's documents, if they differ from those last seen.
    fn changed(&mut self) -> Result<Option<PolicyDocuments>, PolicyError> {
        let docs = PolicyDocuments::from_dir(&self.dir)?;
        let version = docs.version();
        if self.seen.as_deref() == Some(version.as_str()) {
            return Ok(None);
        }
        self.seen = Some(version);
        Ok(Some(docs))
    }

    /// Reads the directory once and reloads if it changed. An invalid set is reported once
    /// (as `Err`) and then counts as seen, so the previous set stays live without retrying
    /// the same broken files on every tick.
    pub fn check(&mut self) -> Result<ReloadOutcome, PolicyError> {
        match self.changed()? {
            None => Ok(ReloadOutcome::Unchanged),
            Some(docs) => self.engine.reload(&docs).map(ReloadOutcome::Reloaded),
        }
    }

    /// [`check`](Self::check), applying through the editor when there is one.
    #[cfg(feature = "admin")]
    async fn check_and_apply(&mut self) -> Result<ReloadOutcome, String> {
        let Some(editor) = self.editor.clone() else {
            return self.check().map_err(|e| e.to_string());
        };
        match self.changed().map_err(|e| e.to_string())? {
            None => Ok(ReloadOutcome::Unchanged),
            Some(docs) => editor
                .apply(docs)
                .await
                .map(|(_, version)| ReloadOutcome::Reloaded(version))
                .map_err(|e| e.to_string()),
        }
    }

    #[cfg(not(feature = "admin"))]
    async fn check_and_apply(&mut self) -> Result<ReloadOutcome, String> {
        self.check().map_err(|e| e.to_string())
    }

    /// Checks every `interval` until the task is aborted, logging rejected sets.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match self.check_and_apply().await {
                    Ok(ReloadOutcome::Unchanged) => {}
                    Ok(ReloadOutcome::Reloaded(version)) => {
                        tracing::info!(policy_version = %version, dir = %self.dir.display(), "policy set reloaded");
                    }
                    Err(error) => {
                        tracing::error!(%error, dir = %self.dir.display(), "policy set rejected; previous set stays live");
                    }
                }
            }
        })
    }
}
