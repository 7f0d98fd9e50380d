//! Resource subscriptions, shared by the clients of one upstream session.
//!
//! Fortress holds one session with each upstream for all its clients, so a client's
//! `resources/subscribe` must not be undone by another client's `resources/unsubscribe`,
//! and `notifications/resources/updated` must reach only the clients that subscribed to
//! that resource (spec 2025-11-25, Server › Resources › Subscriptions). Each client —
//! a legacy session, or a modern `subscriptions/listen` stream (spec 2026-07-28,
//! `resourceSubscriptions`) — keeps what it [`Held`]; the [`Subscriptions`] registry counts
//! holders per (virtual) URI, and the upstream subscription ends when the last one lets go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::jsonrpc::{Id, Notification, Request};
use crate::upstream::CallContext;
use crate::version::ClientContext;
use crate::virtual_server::VirtualServer;

/// The notification that a subscribed resource changed.
pub(crate) const UPDATED: &str = "notifications/resources/updated";

/// How many clients hold a subscription to each virtual resource URI.
pub(crate) struct Subscriptions {
    server: Arc<VirtualServer>,
    holders: Mutex<HashMap<String, usize>>,
}

impl Subscriptions {
    pub(crate) fn new(server: Arc<VirtualServer>) -> Arc<Self> {
        Arc::new(Self {
            server,
            holders: Mutex::new(HashMap::new()),
        })
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(&self, uri: &str) {
        *self.holders().entry(uri.to_owned()).or_default() += 1;
    }

    /// One holder fewer; `true` when it was the last.
    fn release(&self, uri: &str) -> bool {
        let mut holders = self.holders();
        match holders.get_mut(uri) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                holders.remove(uri);
                true
            }
            None => false,
        }
    }

    /// Ends the upstream subscription to `uri` in the background (nobody holds it any more;
    /// this is Fortress's own bookkeeping, not a client request).
    fn unsubscribe_upstream(&self, uri: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let server = self.server.clone();
        runtime.spawn(async move {
            let mut params = Map::new();
            params.insert("uri".into(), Value::from(uri.clone()));
            let request = Request::new(
                Id::String("fortress-unsubscribe".into()),
                "resources/unsubscribe",
                Some(params),
            );
            let client = Arc::new(ClientContext::legacy(
                crate::version::LATEST_LEGACY,
                Map::new(),
                Some(crate::upstream::fortress_info()),
            ));
            if let Err(error) = server
                .dispatch(&request, CallContext::detached(client))
                .await
            {
                tracing::info!(%uri, %error, "upstream unsubscribe failed");
            }
        });
    }
}

/// The subscriptions one client holds; released (and, where it was the last holder,
/// unsubscribed upstream) when dropped.
pub(crate) struct Held {
    registry: Arc<Subscriptions>,
    uris: Mutex<HashSet<String>>,
}

impl Held {
    pub(crate) fn new(registry: Arc<Subscriptions>) -> Self {
        Self {
            registry,
            uris: Mutex::new(HashSet::new()),
        }
    }

    fn uris(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.uris.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a subscription the upstream accepted.
    pub(crate) fn hold(&self, uri: &str) {
        if self.uris().insert(uri.to_owned()) {
            self.registry.acquire(uri);
        }
    }

    /// Lets go of `uri`: `Some(true)` when the upstream subscription should end now (this
    /// was its last holder), `Some(false)` when others still hold it, `None` when this
    /// client did not hold it.
    pub(crate) fn let_go(&self, uri: &str) -> Option<bool> {
        if !self.uris().remove(uri) {
            return None;
        }
        Some(self.registry.release(uri))
    }

    /// Whether this client holds `uri`.
    pub(crate) fn holds(&self, uri: &str) -> bool {
        self.uris().contains(uri)
    }

    /// Whether `notification` is for this client: every notification except resource
    /// updates, which only for resources it subscribed to.
    pub(crate) fn wants(&self, notification: &Notification) -> bool {
        if notification.method != UPDATED {
            return true;
        }
        notification
            .params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .is_some_and(|uri| self.holds(uri))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let uris = std::mem::take(&mut *self.uris());
        for uri in uris {
            if self.registry.release(&uri) {
                self.registry.unsubscribe_upstream(uri);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::ErrorObject;
    use crate::upstream::ServerDescription;
    use crate::upstream::Upstream;
    use async_trait::async_trait;
    use tokio::sync::broadcast;

    /// Records the unsubscribes it receives.
    struct Recorder(Mutex<Vec<String>>, broadcast::Sender<Notification>);

    #[async_trait]
    impl Upstream for Recorder {
        fn name(&self) -> &str {
            "up"
        }
        async fn request(
            &self,
            method: &str,
            params: Option<Map<String, Value>>,
            _ctx: CallContext,
        ) -> Result<Value, ErrorObject> {
            let uri = params
                .and_then(|p| p.get("uri").cloned())
                .unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push(format!("{method} {}", uri.as_str().unwrap_or("")));
            Ok(serde_json::json!({}))
        }
        async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
            Err(ErrorObject::internal("unused"))
        }
        fn subscribe(&self) -> broadcast::Receiver<Notification> {
            self.1.subscribe()
        }
    }

    fn updated(uri: &str) -> Notification {
        let mut params = Map::new();
        params.insert("uri".into(), Value::from(uri));
        Notification::new(UPDATED, Some(params))
    }

    #[tokio::test]
    async fn the_last_holder_ends_the_upstream_subscription() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new()), broadcast::channel(1).0));
        let server = Arc::new(
            VirtualServer::new(
                vec![recorder.clone() as Arc<dyn Upstream>],
                crate::virtual_server::Naming::default(),
            )
            .unwrap(),
        );
        let registry = Subscriptions::new(server);
        let (a, b) = (Held::new(registry.clone()), Held::new(registry.clone()));
        a.hold("up__r://1");
        b.hold("up__r://1");
        b.hold("up__r://2");
        assert!(a.wants(&updated("up__r://1")));
        assert!(!a.wants(&updated("up__r://2")));
        assert!(a.wants(&Notification::new("notifications/tools/list_changed", None)));
        assert_eq!(a.let_go("up__r://1"), Some(false));
        assert_eq!(a.let_go("up__r://1"), None);
        drop(b);
        // Dropping the last holder unsubscribes upstream, with the upstream's own URI.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut seen = recorder.0.lock().unwrap().clone();
            seen.sort();
            if seen.len() == 2 {
                assert_eq!(
                    seen,
                    ["resources/unsubscribe r://1", "resources/unsubscribe r://2"]
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{seen:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
