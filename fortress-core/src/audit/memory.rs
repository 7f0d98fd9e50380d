//! An in-memory audit sink for tests and examples.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{AuditError, AuditEvent, AuditSink};

/// Keeps events in memory, in order.
#[derive(Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
    recorded: Notify,
}

impl MemoryAuditSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every event recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `n` events have been recorded, and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<AuditEvent> {
        loop {
            let notified = self.recorded.notified();
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl AuditSink for MemoryAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.recorded.notify_waiters();
        Ok(())
    }

    async fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }
}
