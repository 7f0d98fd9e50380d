//! The kill switches as the dashboard controls them: the gateway's shared
//! [`KillSwitch`] plus a file that keeps the engaged switches across restarts, or — when
//! replicas share a database — the shared kill-switch table
//! ([`SharedSwitches`]), whose changes reach every replica.
//!
//! The file is rewritten whole (write to a temporary file, then rename) after every change,
//! so a crash leaves either the old or the new list, never half of one. A switch engaged
//! before a restart is engaged again at start, before the gateway takes traffic.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::admin::switches::KillSwitchBoard;
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::guard::{KillSwitch, KillTarget};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("kill_switches.json");
//! let audit = Arc::new(MemoryAuditSink::new());
//! let board = KillSwitchBoard::open(Arc::new(KillSwitch::new(audit.clone())), &path).unwrap();
//! let ops = Subject::user("ops", WorkspaceId::new("acme"));
//! board.engage(KillTarget::model("claude-opus"), &ops, "cost spike").await.unwrap();
//!
//! // After a restart, the switch is still engaged.
//! let again = KillSwitchBoard::open(Arc::new(KillSwitch::new(audit)), &path).unwrap();
//! assert!(again.switch().is_engaged(&KillTarget::model("claude-opus")));
//! # });
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::switches::{SharedSwitchError, SharedSwitches};
use crate::guard::kill_switch::{Engagement, KillSwitch, KillSwitchError, KillTarget};
use crate::subject::Subject;

/// One engaged switch, as listed and as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngagedSwitch {
    /// What it stops.
    pub target: KillTarget,
    /// Who engaged it, when and why.
    pub engagement: Engagement,
}

/// Why a kill-switch change failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoardError {
    /// The switch itself refused (the change could not be audited, or its state is lost).
    #[error(transparent)]
    Switch(#[from] KillSwitchError),
    /// The state file could not be read or written.
    #[error("kill switch state file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file holds something else than a list of engaged switches.
    #[error("kill switch state file {path} is malformed: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The shared kill-switch table failed.
    #[error(transparent)]
    Shared(#[from] SharedSwitchError),
}

/// The shared kill switch, with optional persistence.
#[derive(Clone, Debug)]
pub struct KillSwitchBoard {
    switch: Arc<KillSwitch>,
    file: Option<PathBuf>,
    shared: Option<SharedSwitches>,
}

impl KillSwitchBoard {
    /// Controls `switch` without persistence (state is lost on restart).
    pub fn in_memory(switch: Arc<KillSwitch>) -> Self {
        Self {
            switch,
            file: None,
            shared: None,
        }
    }

    /// Controls `switch` through the table replicas share: the switches stored there are
    /// engaged now, and every change is stored and announced to the other replicas.
    pub async fn shared(
        switch: Arc<KillSwitch>,
        shared: SharedSwitches,
    ) -> Result<Self, BoardError> {
        shared.sync(&switch).await?;
        Ok(Self {
            switch,
            file: None,
            shared: Some(shared),
        })
    }

    /// Controls `switch`, persisting to `path`; switches recorded there are engaged again.
    pub fn open(switch: Arc<KillSwitch>, path: &Path) -> Result<Self, BoardError> {
        let file_error = |source| BoardError::File {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let saved: Vec<EngagedSwitch> =
                    serde_json::from_slice(&bytes).map_err(|source| BoardError::Malformed {
                        path: path.to_owned(),
                        source,
                    })?;
                for entry in saved {
                    switch.restore(entry.target, entry.engagement)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        Ok(Self {
            switch,
            file: Some(path.to_owned()),
            shared: None,
        })
    }

    /// The shared switch, to put in the gateway's guard.
    pub fn switch(&self) -> &Arc<KillSwitch> {
        &self.switch
    }

    /// Every engaged switch, in a stable order.
    pub fn list(&self) -> Vec<EngagedSwitch> {
        let mut list: Vec<EngagedSwitch> = self
            .switch
            .engaged()
            .into_iter()
            .map(|(target, engagement)| EngagedSwitch { target, engagement })
            .collect();
        list.sort_by_key(|e| e.target.to_string());
        list
    }

    /// Engages a switch (audited by the switch) and persists the new state.
    pub async fn engage(
        &self,
        target: KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<(), BoardError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.engage(&self.switch, target, actor, reason).await?);
        }
        let result = self.switch.engage(target, actor, reason).await;
        // An engage stays in force even when it could not be audited, so persist it anyway.
        self.save()?;
        Ok(result?)
    }

    /// Releases a switch (audited before it takes effect) and persists the new state.
    /// Returns whether it was engaged.
    pub async fn release(
        &self,
        target: &KillTarget,
        actor: &Subject,
        reason: &str,
    ) -> Result<bool, BoardError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.release(&self.switch, target, actor, reason).await?);
        }
        let released = self.switch.release(target, actor, reason).await?;
        self.save()?;
        Ok(released)
    }

    fn save(&self) -> Result<(), BoardError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let file_error = |source| BoardError::File {
            path: path.clone(),
            source,
        };
        let text =
            serde_json::to_vec_pretty(&self.list()).map_err(|source| BoardError::Malformed {
                path: path.clone(),
                source,
            })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(file_error)?;
        std::fs::rename(&tmp, path).map_err(file_error)
    }
}
