//! The loop that keeps one replica's view of shared state current.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast::error::RecvError;

use super::{Change, ClusterBus};

/// Reacts to changes of the shared state.
#[async_trait]
pub trait ChangeHandler: Send + Sync + 'static {
    /// An announcement arrived (including [`Change::Resync`]).
    async fn on_change(&self, change: &Change);
    /// The poll interval elapsed: re-read the database (the fallback when announcements
    /// are not arriving).
    async fn on_poll(&self);
}

/// Runs `handler` until the task is aborted: on every announcement of `bus` (if any) and
/// every `poll` interval. A receiver that fell behind re-reads everything.
pub fn follow(
    bus: Option<&ClusterBus>,
    poll: Duration,
    handler: Arc<dyn ChangeHandler>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = bus.map(ClusterBus::subscribe);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let received = async {
                match changes.as_mut() {
                    Some(rx) => Some(rx.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = received => match received {
                    Some(Ok(change)) => handler.on_change(&change).await,
                    Some(Err(RecvError::Lagged(_))) => handler.on_change(&Change::Resync).await,
                    Some(Err(RecvError::Closed)) | None => changes = None,
                },
                _ = ticker.tick() => handler.on_poll().await,
            }
        }
    })
}
