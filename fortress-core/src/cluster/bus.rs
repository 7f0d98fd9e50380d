//! The Redis pub/sub channel replicas announce changes on.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Mutex, broadcast};

use super::Change;

/// How long a publish may take before it is given up (followers still poll).
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest wait between attempts to (re)subscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The bus cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The Redis URL is unusable (the URL itself is not repeated: it may hold a password).
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
}

/// Announces [`Change`]s to every replica through one Redis channel, and delivers the
/// announcements of every replica (its own included) to local subscribers.
///
/// Publishing is best-effort: when Redis is unreachable the change is logged as not
/// announced and the other replicas pick it up at their next database poll. The listener
/// task reconnects with back-off and, after every (re)subscription, delivers
/// [`Change::Resync`] so followers re-read what they may have missed.
#[derive(Clone)]
pub struct ClusterBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Change>,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for ClusterBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBus")
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

impl ClusterBus {
    /// A bus on `url` (`redis://…`); the channel is `<prefix>:fortress:changes`, so
    /// deployments sharing one Redis stay apart. Must run inside a tokio runtime: it starts
    /// the listener task, which connects in the background (Redis may come up later).
    pub fn connect(url: &str, prefix: &str) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url).map_err(ClusterError::InvalidUrl)?;
        let (local, _) = broadcast::channel(256);
        let bus = Self {
            inner: Arc::new(Inner {
                client,
                channel: format!("{prefix}:fortress:changes"),
                local,
                publisher: Mutex::new(None),
                listener: std::sync::Mutex::new(None),
            }),
        };
        let task = tokio::spawn(listen(
            bus.inner.client.clone(),
            bus.inner.channel.clone(),
            bus.inner.local.clone(),
        ));
        *bus.inner.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(bus)
    }

    /// The Redis channel.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Receives every announcement from now on (a slow receiver that lags behind gets
    /// `RecvError::Lagged` and should re-read everything).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.local.subscribe()
    }

    /// Announces `change` to every replica; returns whether Redis took it.
    pub async fn publish(&self, change: &Change) -> bool {
        let payload = match serde_json::to_string(change) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "change announcement not encodable");
                return false;
            }
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.try_publish(&payload)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "change not announced on Redis; replicas will poll it");
                false
            }
            Err(_) => {
                tracing::warn!("change announcement timed out; replicas will poll it");
                false
            }
        }
    }

    async fn try_publish(&self, payload: &str) -> redis::RedisResult<()> {
        let mut slot = self.inner.publisher.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.inner.client.get_multiplexed_async_connection().await?,
        };
        redis::cmd("PUBLISH")
            .arg(&self.inner.channel)
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await?;
        // Kept only after a success: a broken connection is replaced next time.
        *slot = Some(connection);
        Ok(())
    }
}

/// Subscribes, forwards announcements to local receivers, and starts over on failure.
async fn listen(client: redis::Client, channel: String, local: broadcast::Sender<Change>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let _ = local.send(Change::Resync);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Change>(&payload) {
                            Ok(change) => {
                                let _ = local.send(change);
                            }
                            // A newer replica may announce kinds this one does not know.
                            Err(_) => {
                                let _ = local.send(Change::Resync);
                            }
                        }
                    }
                    tracing::warn!("Redis subscription ended; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to Redis changes"),
            },
            Err(error) => tracing::debug!(%error, "Redis unavailable for change announcements"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
