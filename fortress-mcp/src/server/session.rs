//! Legacy sessions: what an `initialize` established, and the requests it has in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fortress_core::cluster::token::TokenSealer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{ErrorObject, Id, Message, Request, Response, UPSTREAM_ERROR};
use crate::upstream::ClientRequester;
use crate::version::{ClientContext, Era};

/// The prefix of sealed session ids.
pub(crate) const SEALED_PREFIX: &str = "fs1.";
/// How long a sealed session id stays valid on any replica.
pub(crate) const SEALED_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a sealed session id carries: everything a replica needs to resume the session.
#[derive(Serialize, Deserialize)]
struct SealedSession {
    /// The negotiated protocol version.
    v: String,
    /// The client's capabilities.
    c: Map<String, Value>,
    /// The client's `Implementation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<Value>,
    /// The owner (workspace, subject id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<(String, String)>,
}

/// One legacy client session.
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) client: Arc<ClientContext>,
    /// Server-to-client requests waiting for the client's answer.
    pending: Mutex<HashMap<Id, oneshot::Sender<Response>>>,
    /// Client requests in flight, cancellable by `notifications/cancelled`.
    inflight: Mutex<HashMap<Id, CancellationToken>>,
    /// Ends the session's streams when it is deleted.
    pub(crate) closed: CancellationToken,
    next: std::sync::atomic::AtomicU64,
    answer_timeout: Duration,
    last_seen: Mutex<std::time::Instant>,
    /// Who opened the session (workspace, subject id), when the edge authenticates: only
    /// they may use it.
    pub(crate) owner: Option<(String, String)>,
    /// The resources it subscribed to (released when the session is gone).
    held: Option<super::subscriptions::Held>,
    /// The level its `logging/setLevel` asked for (carried in `_meta` to modern upstreams).
    log_level: Mutex<Option<String>>,
}

impl Session {
    pub(crate) fn new(client: ClientContext, answer_timeout: Duration) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            client: Arc::new(client),
            pending: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            next: std::sync::atomic::AtomicU64::new(1),
            answer_timeout,
            last_seen: Mutex::new(std::time::Instant::now()),
            owner: None,
            held: None,
            log_level: Mutex::new(None),
        }
    }

    /// Tracks the session's resource subscriptions in `held`.
    pub(crate) fn with_subscriptions(mut self, held: super::subscriptions::Held) -> Self {
        self.held = Some(held);
        self
    }

    /// The session's resource subscriptions.
    pub(crate) fn held(&self) -> Option<&super::subscriptions::Held> {
        self.held.as_ref()
    }

    /// Whether a notification not tied to a request is for this session.
    pub(crate) fn wants(&self, notification: &crate::jsonrpc::Notification) -> bool {
        self.held
            .as_ref()
            .is_none_or(|held| held.wants(notification))
    }

    /// Remembers the level of the session's `logging/setLevel`.
    pub(crate) fn set_log_level(&self, level: &str) {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = Some(level.to_owned());
    }

    /// The level the session asked for, if it did.
    pub(crate) fn log_level(&self) -> Option<String> {
        self.log_level
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Binds the session to the subject that opened it.
    pub(crate) fn owned_by(mut self, owner: Option<(String, String)>) -> Self {
        self.owner = owner;
        self
    }

    /// Replaces the random id with one sealed by `sealer`, carrying the session's state.
    pub(crate) fn sealed(mut self, sealer: &TokenSealer) -> Self {
        let state = SealedSession {
            v: self.client.protocol_version.clone(),
            c: self.client.capabilities.clone(),
            i: self.client.client_info.clone(),
            o: self.owner.clone(),
        };
        if let Some(id) = sealer.seal(&state, SEALED_LIFETIME) {
            self.id = id;
        }
        self
    }

    /// The session a sealed `id` describes (issued by this or another replica), if the
    /// id opens under `sealer` and has not expired.
    pub(crate) fn resume(id: &str, sealer: &TokenSealer, answer_timeout: Duration) -> Option<Self> {
        let state: SealedSession = sealer.open(id)?;
        let client = ClientContext {
            era: Era::Legacy,
            protocol_version: state.v,
            capabilities: state.c,
            client_info: state.i,
        };
        let mut session = Self::new(client, answer_timeout).owned_by(state.o);
        session.id = id.to_owned();
        Some(session)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Id, oneshot::Sender<Response>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<Id, CancellationToken>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers the client's answer to a server-to-client request; `false` if nobody waits.
    pub(crate) fn answer(&self, response: Response) -> bool {
        let waiter = response
            .id
            .as_ref()
            .and_then(|id| self.pending().remove(id));
        match waiter {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Registers a client request; the token is cancelled by `notifications/cancelled`.
    pub(crate) fn track(self: &Arc<Self>, id: Id, cancel: CancellationToken) -> InflightGuard {
        self.inflight().insert(id.clone(), cancel);
        InflightGuard {
            session: self.clone(),
            id,
        }
    }

    /// Cancels a client request by id.
    pub(crate) fn cancel(&self, id: &Id) {
        if let Some(token) = self.inflight().remove(id) {
            token.cancel();
        }
    }

    /// Ends the session: streams close and requests in flight are cancelled.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        for (_, token) in self.inflight().drain() {
            token.cancel();
        }
        self.pending().clear();
    }
}

/// Forgets a request in flight when its relay ends.
pub(crate) struct InflightGuard {
    session: Arc<Session>,
    id: Id,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.session.inflight().remove(&self.id);
    }
}

/// Asks a legacy client on the stream of the request being served (spec 2025-11-25,
/// Transports › Streamable HTTP: the server may send requests on the POST's SSE stream).
pub(crate) struct SessionRequester {
    pub(crate) session: Arc<Session>,
}

#[async_trait]
impl ClientRequester for SessionRequester {
    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        via: &mpsc::Sender<Message>,
    ) -> Result<Value, ErrorObject> {
        let n = self
            .session
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = Id::String(format!("fortress-{n}"));
        let (tx, rx) = oneshot::channel();
        self.session.pending().insert(id.clone(), tx);
        let request = Message::Request(Request::new(id.clone(), method, params));
        if via.send(request).await.is_err() {
            self.session.pending().remove(&id);
            return Err(ErrorObject::new(UPSTREAM_ERROR, "the client went away"));
        }
        let answer = tokio::select! {
            answer = rx => answer.map_err(|_| ErrorObject::new(UPSTREAM_ERROR, "the session ended")),
            () = tokio::time::sleep(self.session.answer_timeout) => Err(ErrorObject::new(UPSTREAM_ERROR, "the client did not answer in time")),
            () = self.session.closed.cancelled() => Err(ErrorObject::new(UPSTREAM_ERROR, "the session ended")),
        };
        self.session.pending().remove(&id);
        answer?.outcome
    }
}

/// All live sessions. A session unused for longer than the idle timeout is forgotten (its
/// id then answers 404, and the client starts a new one, as the transport specifies).
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    idle: Duration,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    pub(crate) fn insert(&self, session: Arc<Session>) {
        let mut map = self.map();
        let idle = self.idle;
        map.retain(|_, s| {
            let keep = s
                .last_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                < idle;
            if !keep {
                s.close();
            }
            keep
        });
        map.insert(session.id.clone(), session);
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.map().get(id).cloned()?;
        let mut seen = session.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.elapsed() >= self.idle {
            drop(seen);
            self.remove(id);
            return None;
        }
        *seen = std::time::Instant::now();
        drop(seen);
        Some(session)
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.map().remove(id);
        if let Some(s) = &session {
            s.close();
        }
        session
    }

    /// Closes the session whose id has `digest` (it was deleted on another replica).
    pub(crate) fn remove_by_digest(&self, digest: &str) {
        let mut map = self.map();
        map.retain(|id, session| {
            let keep = fortress_core::cluster::revoked::token_digest(id) != digest;
            if !keep {
                session.close();
            }
            keep
        });
    }

    pub(crate) fn close_all(&self) {
        for (_, s) in self.map().drain() {
            s.close();
        }
    }
}
