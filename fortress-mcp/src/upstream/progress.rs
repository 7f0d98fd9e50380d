//! Progress tokens, mapped: many clients share one upstream, so each relayed request gets a
//! token unique to Fortress and the client's own token is restored on the way back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::jsonrpc::{Message, Notification};

/// Where progress for each Fortress-issued token goes.
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    next: AtomicU64,
    routes: Mutex<HashMap<String, (Value, mpsc::Sender<Message>)>>,
}

/// Removes the route when the request is over.
pub(crate) struct ProgressGuard<'a> {
    routes: &'a ProgressRoutes,
    token: Option<String>,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.routes.lock().remove(&token);
        }
    }
}

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Value, mpsc::Sender<Message>)>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the client's `_meta.progressToken` in `params` with a fresh one routed to
    /// `events`.
    pub(crate) fn map(
        &self,
        params: &mut Map<String, Value>,
        events: &mpsc::Sender<Message>,
    ) -> ProgressGuard<'_> {
        let token = params
            .get_mut("_meta")
            .and_then(Value::as_object_mut)
            .and_then(|meta| {
                let original = meta.get("progressToken")?.clone();
                let ours = format!("fortress-{}", self.next.fetch_add(1, Ordering::Relaxed));
                meta.insert("progressToken".into(), Value::from(ours.clone()));
                Some((ours, original))
            });
        let token = token.map(|(ours, original)| {
            tracing::debug!(%ours, %original, "progress token mapped");
            self.lock().insert(ours.clone(), (original, events.clone()));
            ours
        });
        ProgressGuard {
            routes: self,
            token,
        }
    }

    /// Routes an upstream `notifications/progress` to its request, with the client's token
    /// restored. Returns the notification back when no request claims it.
    pub(crate) fn route(&self, mut n: Notification) -> Result<(), Notification> {
        let key = n
            .params
            .as_ref()
            .and_then(|p| p.get("progressToken"))
            .map(|t| match t {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        let Some(key) = key else { return Err(n) };
        let Some((original, events)) = self.lock().get(&key).cloned() else {
            tracing::debug!(token = %key, "progress for an unmapped token");
            return Err(n);
        };
        if let Some(params) = n.params.as_mut() {
            params.insert("progressToken".into(), original);
        }
        // A full or closed channel means the client is slow or gone: progress is advisory.
        let sent = events.try_send(Message::Notification(n));
        tracing::debug!(token = %key, ok = sent.is_ok(), "progress routed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_unique_upstream_and_restored_for_the_client() {
        let routes = ProgressRoutes::default();
        let (tx, mut rx) = mpsc::channel(4);
        let mut a = json!({"_meta": {"progressToken": 7}})
            .as_object()
            .cloned()
            .unwrap();
        let mut b = json!({"_meta": {"progressToken": 7}})
            .as_object()
            .cloned()
            .unwrap();
        let guard_a = routes.map(&mut a, &tx);
        let _guard_b = routes.map(&mut b, &tx);
        let ours = a["_meta"]["progressToken"].clone();
        assert_ne!(
            ours, b["_meta"]["progressToken"],
            "two clients' equal tokens differ upstream"
        );
        let progress = |token: &Value| {
            Notification::new(
                "notifications/progress",
                json!({"progressToken": token, "progress": 1})
                    .as_object()
                    .cloned(),
            )
        };
        assert!(routes.route(progress(&ours)).is_ok());
        let Ok(Message::Notification(n)) = rx.try_recv() else {
            panic!("progress routed to the request");
        };
        assert_eq!(n.params.unwrap()["progressToken"], 7);
        drop(guard_a);
        assert!(
            routes.route(progress(&ours)).is_err(),
            "a finished request's route is gone"
        );
        let mut none = Map::new();
        let _ = routes.map(&mut none, &tx);
        assert!(none.is_empty(), "requests without a token are left alone");
    }
}
