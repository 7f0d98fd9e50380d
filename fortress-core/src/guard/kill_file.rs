//! Kill switches engaged from outside the process: a small JSON file an operator command
//! writes and a running gateway follows.
//!
//! `fortress-mcp kill engage …` (or any tool) rewrites the file atomically; the gateway
//! reads it every interval and engages or releases switches to match, through
//! [`KillSwitch`] (so every change is audited and calls in flight are cancelled). The file
//! holds targets, reasons and actors — never secrets.
//!
//! ```
//! use fortress_core::guard::kill_file::{KillFile, KillFileEntry};
//! use fortress_core::guard::KillTarget;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let file = KillFile::new(dir.path().join("kill-switches.json"));
//! file.engage(KillFileEntry::new(KillTarget::connector("zendesk"), "ops", "incident 7")).unwrap();
//! assert_eq!(file.read().unwrap().len(), 1);
//! file.release(&KillTarget::connector("zendesk")).unwrap();
//! assert!(file.read().unwrap().is_empty());
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kill_switch::{KillSwitch, KillTarget};
use crate::subject::{Subject, WorkspaceId};

/// One engaged switch in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillFileEntry {
    /// What is stopped.
    pub target: KillTarget,
    /// Who engaged it.
    pub by: String,
    /// Why (for operators and the audit; never shown to callers).
    pub reason: String,
}

impl KillFileEntry {
    /// An entry.
    pub fn new(target: KillTarget, by: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            target,
            by: by.into(),
            reason: reason.into(),
        }
    }
}

/// The kill-switch file.
#[derive(Clone, Debug)]
pub struct KillFile {
    path: PathBuf,
}

impl KillFile {
    /// The file at `path` (absent means nothing engaged).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engaged entries.
    pub fn read(&self) -> std::io::Result<Vec<KillFileEntry>> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Vec::new()),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn write(&self, entries: &[KillFileEntry]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(entries)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        std::fs::write(&tmp, text)?;
        // Readers see the old file or the new one, never half of one.
        std::fs::rename(&tmp, &self.path)
    }

    /// Adds (or updates) an entry.
    pub fn engage(&self, entry: KillFileEntry) -> std::io::Result<()> {
        let mut entries = self.read()?;
        entries.retain(|e| e.target != entry.target);
        entries.push(entry);
        self.write(&entries)
    }

    /// Removes the entry for `target`; whether there was one.
    pub fn release(&self, target: &KillTarget) -> std::io::Result<bool> {
        let mut entries = self.read()?;
        let before = entries.len();
        entries.retain(|e| e.target != *target);
        self.write(&entries)?;
        Ok(entries.len() != before)
    }

    /// Makes `switch` match the file once: engages what the file lists and releases what it
    /// no longer lists. An unreadable file changes nothing (the switches in force stay).
    pub async fn sync(&self, switch: &KillSwitch) -> std::io::Result<()> {
        let entries = self.read()?;
        let operator = |by: &str| Subject::user(by, WorkspaceId::new("*"));
        for entry in &entries {
            if !switch.is_engaged(&entry.target) {
                if let Err(error) = switch
                    .engage(entry.target.clone(), &operator(&entry.by), &entry.reason)
                    .await
                {
                    tracing::error!(%error, target = %entry.target, "kill switch engage not audited");
                }
            }
        }
        for (target, engagement) in switch.engaged() {
            if !entries.iter().any(|e| e.target == target) {
                if let Err(error) = switch
                    .release(&target, &operator(&engagement.by), "released by operator")
                    .await
                {
                    tracing::error!(%error, %target, "kill switch release not audited");
                }
            }
        }
        Ok(())
    }

    /// Follows the file every `interval` until the task is aborted.
    pub fn follow(
        self,
        switch: Arc<KillSwitch>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = self.sync(&switch).await {
                    tracing::error!(%error, file = %self.path.display(), "kill-switch file unreadable; switches unchanged");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAuditSink;
    use crate::call::{Action, Call, Resource};
    use crate::guard::{Guard, Verdict};

    #[tokio::test]
    async fn the_switch_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = KillFile::new(dir.path().join("k.json"));
        let audit = Arc::new(MemoryAuditSink::new());
        let switch = KillSwitch::new(audit.clone());
        let call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        );
        file.engage(KillFileEntry::new(
            KillTarget::connector("zendesk"),
            "ops",
            "x",
        ))
        .unwrap();
        file.sync(&switch).await.unwrap();
        assert!(matches!(
            switch.admit(&call).await.unwrap(),
            Verdict::Reject(_)
        ));
        file.sync(&switch).await.unwrap();
        assert_eq!(audit.events().len(), 1, "no repeated engage");
        file.release(&KillTarget::connector("zendesk")).unwrap();
        file.sync(&switch).await.unwrap();
        assert!(matches!(
            switch.admit(&call).await.unwrap(),
            Verdict::Admit(_)
        ));
        assert_eq!(audit.events().len(), 2);
    }
}
