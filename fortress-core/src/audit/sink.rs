//! The default [`AuditSink`]: a bounded queue in front of a group-committing writer task.
//!
//! `record` encodes the event on the caller's task, queues it, and waits for the writer
//! to commit the batch that contains it — so it returns only once the event is durable,
//! while the writer turns many concurrent callers into one transaction and one fsync.
//! When the queue is full the deployment chooses, explicitly, between waiting
//! ([`WhenFull::Backpressure`]) and refusing at once ([`WhenFull::FailClosed`], which the
//! audit layer turns into a refused call); an event is never dropped silently.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::audit::keys::Ed25519KeyProvider;
//! use fortress_core::audit::sink::{DurableAuditSink, SinkConfig};
//! use fortress_core::audit::store::SqliteAuditStore;
//! use fortress_core::audit::{AuditEvent, AuditSink, Outcome};
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteAuditStore::open_in(dir.path()).await.unwrap()
//!     .with_signer(Arc::new(Ed25519KeyProvider::generate()));
//! let sink = DurableAuditSink::start(Arc::new(store), SinkConfig::default());
//! let call = Call::new(Subject::app("ci", WorkspaceId::new("acme")), Action::ListModels, Resource::workspace("acme"));
//! sink.record(AuditEvent::for_call(&call, Outcome::Success)).await.unwrap();
//! sink.shutdown().await.unwrap();
//! # });
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::row::EncodedEvent;
use super::store::{AuditStore, StoreError};
use super::{AuditError, AuditEvent, AuditSink};

/// What `record` does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: callers slow down to the store's pace.
    #[default]
    Backpressure,
    /// Fail at once with [`AuditError::QueueFull`]: the call is refused (fail closed).
    FailClosed,
}

/// When [`AuditSink::record`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acknowledge {
    /// Once the transaction holding the event has committed (the default): an answer is
    /// never complete before its audit record is durable.
    #[default]
    Durable,
    /// As soon as the event is queued, before it is durable. Saves the governed call the
    /// wait for its commit, at a price: events queued when the process dies are lost,
    /// and a commit failure reaches later calls (every record after a failed batch fails,
    /// closed) instead of the calls whose events were lost. [`DurableAuditSink::append`]
    /// and [`AuditSink::flush`] still wait for durability.
    Queued,
}

/// Sink settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Events that may wait for the writer.
    pub capacity: usize,
    /// The most events committed in one transaction.
    pub max_batch: usize,
    /// Behaviour when `capacity` events are waiting.
    pub when_full: WhenFull,
    /// When `record` returns.
    pub acknowledge: Acknowledge,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_batch: 8_192,
            when_full: WhenFull::Backpressure,
            acknowledge: Acknowledge::Durable,
        }
    }
}

type Ack<T> = oneshot::Sender<Result<T, Arc<StoreError>>>;

// Events are nearly every command, so boxing them would only add an allocation each.
#[allow(clippy::large_enum_variant)]
enum Command {
    Event(EncodedEvent, Ack<u64>),
    Flush(Ack<()>),
    Shutdown(Ack<()>),
}

/// The durable, hash-chained, group-committing sink.
pub struct DurableAuditSink {
    queue: mpsc::Sender<Command>,
    when_full: WhenFull,
    acknowledge: Acknowledge,
    /// Set by the writer when a batch fails; with [`Acknowledge::Queued`] every later
    /// record then fails (closed), since earlier acknowledged events may be lost.
    failed: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn storage(e: Arc<StoreError>) -> AuditError {
    AuditError::Storage(Box::new(e))
}

impl DurableAuditSink {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<dyn AuditStore>, config: SinkConfig) -> Self {
        let (queue, commands) = mpsc::channel(config.capacity.max(1));
        let failed = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_loop(
            store,
            commands,
            config.max_batch.max(1),
            failed.clone(),
        ));
        Self {
            queue,
            when_full: config.when_full,
            acknowledge: config.acknowledge,
            failed,
            writer: Mutex::new(Some(writer)),
        }
    }

    async fn enqueue(&self, command: Command) -> Result<(), AuditError> {
        match self.when_full {
            WhenFull::Backpressure => self
                .queue
                .send(command)
                .await
                .map_err(|_| AuditError::Closed),
            WhenFull::FailClosed => self.queue.try_send(command).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AuditError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => AuditError::Closed,
            }),
        }
    }

    /// Records an event and returns its sequence number once it is durable.
    pub async fn append(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let encoded = EncodedEvent::new(event).map_err(AuditError::Encode)?;
        let (ack, done) = oneshot::channel();
        self.enqueue(Command::Event(encoded, ack)).await?;
        done.await.map_err(|_| AuditError::Closed)?.map_err(storage)
    }

    /// Commits what is queued, signs a final checkpoint and stops the writer. Later
    /// records fail with [`AuditError::Closed`].
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        // Shutdown always waits for room: it must come after every queued event.
        self.queue
            .send(Command::Shutdown(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        let result = done.await.map_err(|_| AuditError::Closed)?.map_err(storage);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        result
    }
}

#[async_trait]
impl AuditSink for DurableAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        match self.acknowledge {
            Acknowledge::Durable => self.append(&event).await.map(|_| ()),
            Acknowledge::Queued => {
                if self.failed.load(Ordering::Acquire) {
                    return Err(AuditError::Storage(
                        "an earlier audit batch failed to commit".into(),
                    ));
                }
                let encoded = EncodedEvent::new(&event).map_err(AuditError::Encode)?;
                // Nobody waits for the acknowledgement; the writer's send just finds no receiver.
                let (ack, _) = oneshot::channel();
                self.enqueue(Command::Event(encoded, ack)).await
            }
        }
    }

    /// Waits until everything queued before it is committed, and signs a checkpoint over it.
    async fn flush(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send(Command::Flush(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)?.map_err(storage)
    }
}

/// The writer. It takes whatever is queued the moment it is free and never waits for a
/// batch to fill: a lone caller's event is committed at once, alone, so it waits for
/// exactly one commit. Batches grow only with the events that arrive while a commit is
/// in progress — the group commit costs a caller at most the commit already under way.
async fn write_loop(
    store: Arc<dyn AuditStore>,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
    failed: Arc<AtomicBool>,
) {
    let mut buffer = Vec::with_capacity(max_batch);
    loop {
        if commands.recv_many(&mut buffer, max_batch).await == 0 {
            // Every sender is gone: sign what is left, best effort.
            let _ = store.append(Vec::new(), true).await;
            return;
        }
        let mut events = Vec::with_capacity(buffer.len());
        let mut event_acks = Vec::with_capacity(buffer.len());
        let mut flush_acks = Vec::new();
        let mut shutdown = None;
        for command in buffer.drain(..) {
            match command {
                Command::Event(event, ack) => {
                    events.push(event);
                    event_acks.push(ack);
                }
                Command::Flush(ack) => flush_acks.push(ack),
                Command::Shutdown(ack) => shutdown = Some(ack),
            }
        }
        let checkpoint = !flush_acks.is_empty() || shutdown.is_some();
        let result = if events.is_empty() && !checkpoint {
            Ok(Vec::new())
        } else {
            store
                .append(events, checkpoint)
                .await
                .map(|receipt| receipt.seqs)
                .map_err(Arc::new)
        };
        match &result {
            Ok(seqs) => {
                for (ack, seq) in event_acks.into_iter().zip(seqs) {
                    let _ = ack.send(Ok(*seq));
                }
            }
            Err(e) => {
                failed.store(true, Ordering::Release);
                tracing::error!(error = %e, events = event_acks.len(), "audit batch could not be committed");
                for ack in event_acks {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
        let done = result.map(|_| ());
        for ack in flush_acks {
            let _ = ack.send(done.clone());
        }
        if let Some(ack) = shutdown {
            commands.close();
            // Commands that raced in after shutdown are answered, never dropped silently.
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Event(_, ack) => drop(ack),
                    Command::Flush(ack) | Command::Shutdown(ack) => drop(ack),
                }
            }
            let _ = ack.send(done);
            return;
        }
    }
}
