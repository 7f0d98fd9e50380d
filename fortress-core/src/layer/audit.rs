//! Audit: every call, allowed or denied, becomes one [`AuditEvent`].
//!
//! [`AuditLayer`] sits outside admission and policy, so refusals are recorded with the
//! decision's reasons and policy version. It installs [`CallNotes`] for the inner layers,
//! measures latency to the response head, and records the event when the response body
//! ends — waiting for the sink to make it durable before the body reports its end, so an
//! answer is never complete before its audit record is. If the sink fails, the body ends
//! with an error instead (fail closed). A body dropped early (the client went away) is
//! recorded as `client_closed` in the background.
//!
//! How long the wait is: with the default [`DurableAuditSink`](crate::audit::DurableAuditSink)
//! a lone call's event is committed at once, alone (one commit, one fsync with
//! `power_loss` durability); concurrent calls share commits. A deployment that prefers
//! latency to the guarantee can choose `acknowledge = "queued"` explicitly
//! ([`Acknowledge::Queued`](crate::audit::Acknowledge::Queued)).
//!
//! Tool arguments are recorded as a keyed digest; for workspaces that opted in
//! ([`RedactedArguments`]) also passed through the redactor — never raw.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body::Frame;
use sha2::Sha256;
use tower_layer::Layer;
use tower_service::Service;

use super::{CallNotes, ResponseFuture, take_ready};
use crate::audit::arguments::RedactedArguments;
use crate::audit::{
    AuditError, AuditEvent, AuditSink, DecisionRecord, EventKind, Outcome, SubjectRef,
};
use crate::body::{self, Body, BoxError};
use crate::call::{Call, call_of};
use crate::denial::DenialKind;
use crate::redact::{RedactionScope, Redactor};
use crate::secret::Secret;
use crate::subject::{SubjectKind, WorkspaceId};

/// Records an audit event for every call.
#[derive(Clone)]
#[must_use]
pub struct AuditLayer {
    sink: Arc<dyn AuditSink>,
    /// HMAC-SHA256 keyed once with the argument key: each digest clones the keyed state
    /// instead of hashing the key again (two SHA-256 blocks per call).
    argument_mac: Arc<Hmac<Sha256>>,
    redacted_arguments: Option<(Arc<dyn Redactor>, RedactedArguments)>,
}

impl AuditLayer {
    /// Records into `sink`. Tool arguments are digested with a random per-process key
    /// until [`AuditLayer::with_argument_key`] sets a stable one.
    pub fn new(sink: Arc<dyn AuditSink>) -> Self {
        let mut key = vec![0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), key.as_mut_slice());
        Self {
            sink,
            argument_mac: Arc::new(keyed_mac(&Secret::new(key))),
            redacted_arguments: None,
        }
    }

    /// The sink events are recorded into (for refusals made before the stack is reached).
    pub fn sink(&self) -> &Arc<dyn AuditSink> {
        &self.sink
    }

    /// Records the tool arguments of the workspaces in `opt_in`, passed through
    /// `redactor`, beside their digest. Other workspaces keep the digest only.
    pub fn with_redacted_arguments(
        mut self,
        redactor: Arc<dyn Redactor>,
        opt_in: RedactedArguments,
    ) -> Self {
        self.redacted_arguments = Some((redactor, opt_in));
        self
    }

    /// The key of the tool-argument digest (HMAC-SHA256), so equal arguments can be
    /// correlated across events without being revealed.
    pub fn with_argument_key(mut self, key: Secret) -> Self {
        self.argument_mac = Arc::new(keyed_mac(&key));
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuditLayer`].
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    layer: AuditLayer,
}

/// Everything needed to write the event once the response is over.
struct Pending {
    sink: Arc<dyn AuditSink>,
    event: AuditEvent,
    notes: CallNotes,
    started: Instant,
}

impl Pending {
    /// Completes the event from the notes and the way the call ended.
    fn finish(mut self, ended: Ended) -> (Arc<dyn AuditSink>, AuditEvent) {
        let notes = self.notes.lock();
        let event = &mut self.event;
        event.duration_us = micros(self.started.elapsed());
        event.decision = notes.decision.as_ref().map(DecisionRecord::from);
        event.denial = notes.denial.map(|d| d.as_str().to_owned());
        event.redactions = notes.redactions.counts().clone();
        if let Some((slot, version)) = &notes.credential {
            event.detail.insert(
                "credential".into(),
                serde_json::json!({ "slot": slot.to_string(), "version": version }),
            );
        }
        for (key, value) in &notes.detail {
            event.detail.insert(key.clone(), value.clone());
        }
        event.outcome = match (notes.denial, ended) {
            (Some(DenialKind::Internal | DenialKind::CredentialUnavailable), _) => Outcome::Error,
            (Some(_), _) => Outcome::Denied,
            (None, Ended::ClientClosed) => Outcome::ClientClosed,
            (None, Ended::Failed) => Outcome::UpstreamError,
            (None, Ended::Complete) if notes.failed.is_some() => Outcome::UpstreamError,
            (None, Ended::Complete) if event.status.is_some_and(|s| s >= 500) => {
                Outcome::UpstreamError
            }
            (None, Ended::Complete) => Outcome::Success,
        };
        if let Some(reason) = &notes.failed {
            event.detail.insert("failure".into(), reason.clone().into());
        }
        drop(notes);
        (self.sink, self.event)
    }
}

#[derive(Clone, Copy)]
enum Ended {
    Complete,
    Failed,
    ClientClosed,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn keyed_mac(key: &Secret) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Feeds serialized JSON straight into the MAC (no intermediate buffer).
struct MacWriter<'a>(&'a mut Hmac<Sha256>);

impl std::io::Write for MacWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn argument_digest(keyed: &Hmac<Sha256>, arguments: &serde_json::Value) -> String {
    let mut mac = keyed.clone();
    // serde_json keeps object members in insertion order here (`preserve_order` is on), so
    // the digest is of the arguments as the client sent them; writing into the MAC cannot
    // fail.
    let _ = serde_json::to_writer(MacWriter(&mut mac), arguments);
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// The arguments as recorded for an opted-in workspace: redacted, or not at all when the
/// redactor fails (fail closed: the digest alone is recorded).
fn redacted_arguments(
    redactor: &dyn Redactor,
    call: &Call,
    arguments: &serde_json::Value,
) -> Option<serde_json::Value> {
    let mut redacted = arguments.clone();
    match redactor.redact_json(&RedactionScope::of_call(call), &mut redacted) {
        Ok(_) => Some(redacted),
        Err(error) => {
            tracing::warn!(%error, "tool arguments could not be redacted; only their digest is recorded");
            None
        }
    }
}

fn event_for(call: Option<&Call>, layer: &AuditLayer) -> AuditEvent {
    match call {
        Some(call) => {
            let mut event = AuditEvent::for_call(call, Outcome::Success);
            if let Some(args) = call.attributes.tool_arguments.as_ref() {
                event.arguments_digest = Some(argument_digest(&layer.argument_mac, args));
                if let Some((redactor, opt_in)) = &layer.redacted_arguments
                    && opt_in.is_enabled_for(call.subject.workspace.as_str())
                {
                    event.arguments = redacted_arguments(redactor.as_ref(), call, args);
                }
            }
            event
        }
        None => AuditEvent::activity(
            EventKind::Access,
            WorkspaceId::new("unknown"),
            SubjectRef {
                id: "unknown".into(),
                kind: SubjectKind::App,
            },
            "unknown",
            "unknown",
        ),
    }
}

impl<S, ReqB> Service<Request<ReqB>> for Audit<S>
where
    S: Service<Request<ReqB>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let started = Instant::now();
        let notes = CallNotes::new();
        request.extensions_mut().insert(notes.clone());
        let event = event_for(call_of(&request).map(|c| &**c), &self.layer);
        let sink = self.layer.sink.clone();
        ResponseFuture::new(async move {
            let mut pending = Pending {
                sink,
                event,
                notes,
                started,
            };
            match inner.call(request).await {
                Ok(response) => {
                    pending.event.latency_us = micros(started.elapsed());
                    pending.event.status = Some(response.status().as_u16());
                    let (head, body) = response.into_parts();
                    let body = body::boxed(AuditBody {
                        inner: body,
                        state: State::Streaming(Some(Box::new(pending))),
                    });
                    Ok(Response::from_parts(head, body))
                }
                Err(error) => {
                    pending.event.latency_us = micros(started.elapsed());
                    let (sink, event) = pending.finish(Ended::Failed);
                    if let Err(audit_error) = sink.record(event).await {
                        tracing::error!(%audit_error, "audit event for a failed call was not recorded");
                    }
                    Err(error)
                }
            }
        })
    }
}

enum State {
    Streaming(Option<Box<Pending>>),
    /// Waiting for the sink; then yield `last` (an error frame) or end.
    Recording {
        write: BoxFuture<'static, Result<(), AuditError>>,
        last: Option<BoxError>,
    },
    Done,
}

/// A response body that records the call's audit event when it ends.
struct AuditBody {
    inner: Body,
    state: State,
}

impl AuditBody {
    fn start_recording(&mut self, ended: Ended, last: Option<BoxError>) {
        if let State::Streaming(pending) = &mut self.state
            && let Some(pending) = pending.take()
        {
            let (sink, event) = pending.finish(ended);
            self.state = State::Recording {
                write: Box::pin(async move { sink.record(event).await }),
                last,
            };
        }
    }
}

impl http_body::Body for AuditBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Streaming(_) => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Some(Err(error)) => this.start_recording(Ended::Failed, Some(error)),
                    None => this.start_recording(Ended::Complete, None),
                },
                State::Recording { write, last } => {
                    let written = ready!(write.as_mut().poll(cx));
                    let last = last.take();
                    this.state = State::Done;
                    match (written, last) {
                        (_, Some(error)) => return Poll::Ready(Some(Err(error))),
                        (Err(audit_error), None) => {
                            tracing::error!(%audit_error, "audit event not recorded; failing the response");
                            return Poll::Ready(Some(Err(Box::new(audit_error))));
                        }
                        (Ok(()), None) => return Poll::Ready(None),
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.state {
            State::Streaming(_) => self.inner.size_hint(),
            _ => http_body::SizeHint::with_exact(0),
        }
    }
}

impl Drop for AuditBody {
    fn drop(&mut self) {
        let State::Streaming(pending) = &mut self.state else {
            return;
        };
        let Some(pending) = pending.take() else {
            return;
        };
        let (sink, event) = pending.finish(Ended::ClientClosed);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(audit_error) = sink.record(event).await {
                        tracing::error!(%audit_error, "audit event for a closed call was not recorded");
                    }
                });
            }
            Err(_) => tracing::error!(
                request_id = %event.request_id,
                "response dropped outside a runtime; its audit event could not be recorded"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is HMAC-SHA256 over the arguments' JSON, whichever way it is computed:
    /// digests made with the same stable key keep matching across versions.
    #[test]
    fn argument_digest_is_the_hmac_of_the_arguments_json() {
        let key = Secret::from("stable argument key");
        let arguments = serde_json::json!({"q": "refund", "limit": 5, "nested": {"a": [1, "é"]}});
        let mut fresh = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).unwrap();
        fresh.update(&serde_json::to_vec(&arguments).unwrap());
        let expected = format!("hmac-sha256:{}", hex::encode(fresh.finalize().into_bytes()));
        let keyed = keyed_mac(&key);
        assert_eq!(argument_digest(&keyed, &arguments), expected);
        // The keyed state is reused, never consumed: a second digest is the same.
        assert_eq!(argument_digest(&keyed, &arguments), expected);
        let other = serde_json::json!({"q": "refunds"});
        assert_ne!(argument_digest(&keyed, &other), expected);
    }
}
