//! A JSON Lines audit sink: one event per line, synced to disk before `record` returns.
//! Simple and durable, but neither hash-chained nor fast; the default store is.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{AuditError, AuditEvent, AuditSink};

/// Appends events to a file, one JSON object per line.
pub struct JsonLinesAuditSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesAuditSink {
    /// Opens (or creates) the file for appending.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| AuditError::Storage(Box::new(e)))?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl AuditSink for JsonLinesAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(&event).map_err(AuditError::Encode)?;
        line.push(b'\n');
        let mut file = self.file.lock().await;
        file.write_all(&line)
            .await
            .map_err(|e| AuditError::Storage(Box::new(e)))?;
        file.sync_data()
            .await
            .map_err(|e| AuditError::Storage(Box::new(e)))
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let file = self.file.lock().await;
        file.sync_data()
            .await
            .map_err(|e| AuditError::Storage(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;
    use crate::call::{Action, Call, Resource};
    use crate::subject::{Subject, WorkspaceId};

    #[tokio::test]
    async fn appends_one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesAuditSink::open(dir.path().join("audit.jsonl"))
            .await
            .unwrap();
        let call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::CallTool,
            Resource::tool("c", "t"),
        );
        sink.record(AuditEvent::for_call(&call, Outcome::Success)).await.unwrap();
        sink.record(AuditEvent::for_call(&call, Outcome::Denied)).await.unwrap();
        let text = std::fs::read_to_string(sink.path()).unwrap();
        let events: Vec<AuditEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].outcome, Outcome::Denied);
        assert_eq!(events[0].resource, "tool:c/t");
    }
}
