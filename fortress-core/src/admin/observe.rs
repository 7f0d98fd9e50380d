//! Watching the audit stream: observers see every event as it is recorded.
//!
//! [`ObservingSink`] wraps the deployment's durable sink; after an event is durable it shows
//! it to each [`AuditObserver`] — the Status Board's [`Telemetry`](super::telemetry::Telemetry)
//! and the Traffic Feed's [`LiveFeed`]. Observers never block or fail the recording.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::audit::{AuditError, AuditEvent, AuditSink};

/// Sees audit events after they are durable. Must be quick and must not block.
pub trait AuditObserver: Send + Sync + 'static {
    /// One recorded event.
    fn observe(&self, event: &AuditEvent);
}

/// An [`AuditSink`] that records into another sink and then shows each event to observers.
pub struct ObservingSink {
    inner: Arc<dyn AuditSink>,
    observers: Vec<Arc<dyn AuditObserver>>,
}

impl ObservingSink {
    /// Records into `inner`.
    pub fn new(inner: Arc<dyn AuditSink>) -> Self {
        Self {
            inner,
            observers: Vec::new(),
        }
    }

    /// Adds an observer.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn AuditObserver>) -> Self {
        self.observers.push(observer);
        self
    }
}

#[async_trait]
impl AuditSink for ObservingSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        // Observers only see what is durable: the feed never shows an event the trail lacks.
        let shown = (!self.observers.is_empty()).then(|| event.clone());
        self.inner.record(event).await?;
        if let Some(event) = shown {
            for observer in &self.observers {
                observer.observe(&event);
            }
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush().await
    }
}

/// The live Traffic Feed: a broadcast of recorded events to every open dashboard.
///
/// Slow subscribers skip ahead (they are told how many events they missed) rather than
/// holding back the gateway.
#[derive(Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<AuditEvent>>,
}

impl LiveFeed {
    /// A feed that buffers up to `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// A new subscription, starting with the next event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditEvent>> {
        self.sender.subscribe()
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl AuditObserver for LiveFeed {
    fn observe(&self, event: &AuditEvent) {
        // No subscribers is not an error: nobody is watching.
        let _ = self.sender.send(Arc::new(event.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{MemoryAuditSink, Outcome};
    use crate::call::{Action, Call, Resource};
    use crate::subject::{Subject, WorkspaceId};

    fn event() -> AuditEvent {
        let call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::ListTools,
            Resource::workspace("w"),
        );
        AuditEvent::for_call(&call, Outcome::Success)
    }

    #[tokio::test]
    async fn subscribers_see_recorded_events() {
        let feed = LiveFeed::new(8);
        let mut rx = feed.subscribe();
        let memory = Arc::new(MemoryAuditSink::new());
        let sink = ObservingSink::new(memory.clone()).with(Arc::new(feed.clone()));
        sink.record(event()).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().action, "tools/list");
        assert_eq!(memory.events().len(), 1);
    }

    struct Broken;

    #[async_trait]
    impl AuditSink for Broken {
        async fn record(&self, _: AuditEvent) -> Result<(), AuditError> {
            Err(AuditError::Closed)
        }
        async fn flush(&self) -> Result<(), AuditError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn events_that_fail_to_record_are_not_shown() {
        let feed = LiveFeed::new(8);
        let mut rx = feed.subscribe();
        let sink = ObservingSink::new(Arc::new(Broken)).with(Arc::new(feed.clone()));
        assert!(sink.record(event()).await.is_err());
        assert!(rx.try_recv().is_err());
    }
}
