//! The PAT service: authenticate the gateway key, describe the call, run it through the
//! core governance stack, settle its budget when the answer ends.
//!
//! ```text
//! request ─▶ key (x-api-key | Bearer) ─▶ read body (≤ limit) ─▶ describe ─▶ scope check
//!         ─▶ strip client auth ─▶ [audit ▸ guard: ledger ▸ policy ▸ redaction ▸ credential] ─▶ upstream
//! response ◀─ request-id, anthropic-ratelimit-* ◀─ settle budget at end of body
//! ```
//!
//! Authentication sits outside the stack because the stack's subject *is* the key's
//! subject; everything after it is audited, including limit and policy refusals.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use fortress_core::audit::{AuditEvent, AuditSink};
use fortress_core::body::{self, Body, BoxError};
use fortress_core::call::{Action, RequestId};
use fortress_core::guard::{AdmissionGuard, Guard, KillSwitch};
use fortress_core::layer::credential::{ConnectorSlot, HeaderInjector};
use fortress_core::policy::PolicyEngine;
use fortress_core::redact::Redactor;
use fortress_core::stack::{GovernanceStack, MissingPart};
use fortress_core::vault::Vault;
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::archive::{ArchiveEntry, ArchiveError, Archiver, HandOver};
use crate::batch_usage::{BatchCreated, BatchTap, results_batch_id};
use crate::describe::{Route, describe};
use crate::error::{ErrorType, error_response};
use crate::keys::{AuthError, KeyStore, token_of};
use crate::limits::{
    BODY_BYTES_ATTRIBUTE, KEY_ATTRIBUTE, Ledger, LedgerGuard, Principal, TEAM_ATTRIBUTE,
};
use crate::proxy::ClaudeUpstream;
use crate::redaction::ClaudeBodyRedaction;
use crate::upstream::Upstream;
use crate::usage::UsageTap;

/// The vault connector name of the Anthropic key.
pub const ANTHROPIC_CONNECTOR: &str = "anthropic";
/// The largest request body accepted (the Claude API's own limit).
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

type Governed = BoxCloneSyncService<Request<Bytes>, Response<Body>, Infallible>;

/// Everything the PAT service is built from.
pub struct PatParts {
    /// Gateway keys.
    pub keys: KeyStore,
    /// Budgets, rate limits, metering.
    pub ledger: Arc<Ledger>,
    /// Policy.
    pub policy: Arc<dyn PolicyEngine>,
    /// Vault holding each workspace's Anthropic key in the `anthropic` connector slot.
    pub vault: Arc<dyn Vault>,
    /// Redactor.
    pub redactor: Arc<dyn Redactor>,
    /// Audit sink.
    pub audit: Arc<dyn AuditSink>,
    /// The Claude API client.
    pub upstream: Upstream,
    /// Where each call's request and response are archived (none: not archived).
    pub archive: Option<Archiver>,
}

/// The PAT Fortress service. Cheap to clone.
#[derive(Clone)]
pub struct PatService {
    keys: KeyStore,
    ledger: Arc<Ledger>,
    governed: Governed,
    max_body: usize,
    archive: Option<Archiver>,
    /// For refusals made before the stack is reached (key scopes).
    audit: Arc<dyn AuditSink>,
}

impl PatService {
    /// Composes the service. The stack order is the core's: audit ▸ guard ▸ policy ▸
    /// redaction ▸ credential; the ledger is the guard, so limit refusals are audited and
    /// cost no policy evaluation; the Claude-aware body redaction meters usage.
    pub fn new(parts: PatParts) -> Result<Self, MissingPart> {
        Self::with_kill_switch(parts, None)
    }

    /// [`new`](Self::new), with a kill switch that refuses calls before the ledger counts
    /// them (the switch the dashboard flips).
    pub fn with_kill_switch(
        parts: PatParts,
        kill_switch: Option<Arc<KillSwitch>>,
    ) -> Result<Self, MissingPart> {
        let ledger: Arc<dyn Guard> = Arc::new(LedgerGuard(parts.ledger.clone()));
        let guard: Arc<dyn Guard> = match kill_switch {
            Some(switch) => Arc::new(AdmissionGuard::new(switch, ledger)),
            None => ledger,
        };
        let audit = parts.audit.clone();
        let stack = GovernanceStack::builder()
            .audit(parts.audit)
            .guard(guard)
            .policy(parts.policy.clone())
            .redactor(parts.redactor)
            .body_redaction(Arc::new(ClaudeBodyRedaction))
            .vault(parts.vault)
            .credential_slots(Arc::new(ConnectorSlot::fixed(ANTHROPIC_CONNECTOR)))
            .responder(Arc::new(crate::error::ClaudeResponder))
            .build()?;
        let inner = ClaudeUpstream::new(parts.upstream, parts.policy);
        let injector = HeaderInjector::new(http::HeaderName::from_static("x-api-key"));
        let governed = BoxCloneSyncService::new(stack.wrap(injector, inner));
        Ok(Self {
            keys: parts.keys,
            ledger: parts.ledger,
            governed,
            max_body: MAX_REQUEST_BYTES,
            archive: parts.archive,
            audit,
        })
    }

    /// Lowers the request size limit.
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The ledger (metering, budgets).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>, client_ip: Option<IpAddr>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request_id = RequestId::generate();
        let id = request_id.as_str().to_owned();
        let mut response = self.handle_inner(request, client_ip, request_id).await;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("request-id", value);
        }
        if let Some(snapshot) = self.ledger.take_snapshot(&id) {
            snapshot.apply(response.headers_mut());
        }
        response
    }

    async fn handle_inner<B>(
        &self,
        request: Request<B>,
        client_ip: Option<IpAddr>,
        request_id: RequestId,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let id = request_id.as_str().to_owned();
        let fail = |kind: ErrorType, message: &str| error_response(kind, message, Some(&id), None);
        let (mut parts, body) = request.into_parts();
        let route = Route::of(&parts.method, parts.uri.path());

        let Some(token) = token_of(&parts.headers) else {
            return fail(
                ErrorType::Authentication,
                "missing API key: send x-api-key or Authorization: Bearer",
            );
        };
        let record = match self.keys.authenticate(token, client_ip).await {
            Ok(record) => record,
            Err(AuthError::Network) => {
                return fail(
                    ErrorType::Permission,
                    "API key not permitted from this address",
                );
            }
            Err(AuthError::Store) => return fail(ErrorType::Api, "key store unavailable"),
            Err(_) => return fail(ErrorType::Authentication, "invalid API key"),
        };

        let bytes = match http_body_util::Limited::new(body, self.max_body)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                if error.is::<http_body_util::LengthLimitError>() {
                    return fail(
                        ErrorType::RequestTooLarge,
                        &format!("request exceeds {} bytes", self.max_body),
                    );
                }
                return fail(ErrorType::InvalidRequest, "request body could not be read");
            }
        };

        let mut call = match describe(&route, &parts.headers, &bytes, record.subject(), client_ip) {
            Ok(call) => call.with_request_id(request_id.clone()),
            Err(error) => return fail(ErrorType::InvalidRequest, &error.to_string()),
        };
        if !record.allows(&call.action) {
            // Audited like every refusal; a refusal that cannot be recorded fails closed.
            let reason = format!("this API key has no scope for {}", call.action);
            let event = AuditEvent::scope_refusal(&call, &record.scopes, &reason);
            if self.audit.record(event).await.is_err() {
                return fail(ErrorType::Api, "audit trail unavailable");
            }
            return fail(ErrorType::Permission, &reason);
        }
        let extra = &mut call.attributes.extra;
        extra.insert(KEY_ATTRIBUTE.into(), record.id.clone().into());
        if let Some(team) = &record.team {
            extra.insert(TEAM_ATTRIBUTE.into(), team.clone().into());
        }
        extra.insert(BODY_BYTES_ATTRIBUTE.into(), bytes.len().into());

        // The caller's credentials never travel upstream.
        parts.headers.remove("x-api-key");
        parts.headers.remove(http::header::AUTHORIZATION);
        parts.headers.remove(http::header::COOKIE);
        let tap = UsageTap::new();
        let archive = self.archive.clone().map(|archiver| ArchiveCapture {
            archiver,
            workspace: record.subject().workspace,
            request_id: id.clone(),
            at: chrono::Utc::now(),
            request: bytes.clone(),
            response: Vec::new(),
        });
        let batch = results_batch_id(parts.uri.path()).map(|id| BatchMeter {
            batch_id: id.to_owned(),
            principal: Principal::of(&call),
            tap: BatchTap::new(),
        });
        let created = (call.action == Action::CreateBatch)
            .then(|| (BatchCreated::new(), Principal::of(&call)));
        parts.extensions.clear();
        if let Some((slot, _)) = &created {
            parts.extensions.insert(slot.clone());
        }
        parts.extensions.insert(Arc::new(call));
        parts.extensions.insert(tap.clone());
        if let Some(batch) = &batch {
            parts.extensions.insert(batch.tap.clone());
        }
        let governed = self.governed.clone();
        let response = match governed.oneshot(Request::from_parts(parts, bytes)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (head, body) = response.into_parts();
        let body = match archive {
            Some(capture) => body::boxed(ArchiveBody::new(body, capture)),
            None => body,
        };
        let body = body::boxed(SettleBody {
            inner: body,
            settle: Some(Settle {
                ledger: self.ledger.clone(),
                request_id: id,
                tap,
                batch,
                created,
            }),
        });
        Response::from_parts(head, body)
    }
}

/// Settles a call's reservation exactly once: at the end of the body, or when it is
/// dropped early (the client went away).
struct Settle {
    ledger: Arc<Ledger>,
    request_id: String,
    tap: UsageTap,
    batch: Option<BatchMeter>,
    /// A batch creation: whose the batch is.
    created: Option<(BatchCreated, Principal)>,
}

/// A batch results read, metered when it was read in full.
struct BatchMeter {
    batch_id: String,
    principal: Principal,
    tap: BatchTap,
}

impl Settle {
    fn run(self) {
        // A created batch keeps its reservation until its results are metered.
        if let Some((slot, owner)) = &self.created
            && let Some(id) = slot.take()
        {
            self.ledger
                .hold_for_batch_soon(self.request_id, id, owner.clone());
            return;
        }
        let usage = self.tap.outcome().map(|(usage, _)| usage);
        self.ledger.settle_soon(&self.request_id, usage);
        if let Some(batch) = self.batch
            && let Some(results) = batch.tap.take()
        {
            self.ledger
                .meter_batch_soon(batch.batch_id, batch.principal, results);
        }
    }
}

struct SettleBody {
    inner: Body,
    settle: Option<Settle>,
}

impl http_body::Body for SettleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if matches!(frame, None | Some(Err(_)))
            && let Some(settle) = this.settle.take()
        {
            settle.run();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SettleBody {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.run();
        }
    }
}

/// What an archived call has sent so far.
struct ArchiveCapture {
    archiver: Archiver,
    workspace: fortress_core::subject::WorkspaceId,
    request_id: String,
    at: chrono::DateTime<chrono::Utc>,
    request: Bytes,
    response: Vec<Bytes>,
}

impl ArchiveCapture {
    fn into_entry(self) -> (Archiver, ArchiveEntry) {
        let response = match self.response.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            chunks => {
                let mut joined =
                    bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in chunks {
                    joined.extend_from_slice(chunk);
                }
                joined.freeze()
            }
        };
        let entry = ArchiveEntry {
            workspace: self.workspace,
            request_id: self.request_id,
            at: self.at,
            request: self.request,
            response,
        };
        (self.archiver, entry)
    }
}

type Reserve = Pin<
    Box<
        dyn Future<Output = Result<tokio::sync::mpsc::OwnedPermit<ArchiveEntry>, ArchiveError>>
            + Send,
    >,
>;

/// A response body whose bytes are archived when it ends: the end of the body waits for
/// room in the archive queue (backpressure on the connection, never loss). A body dropped
/// early (the client went away) hands what was sent over without waiting.
struct ArchiveBody {
    inner: Body,
    capture: Option<ArchiveCapture>,
    /// The body's last frame (its end or its error), held while the queue is full.
    last: Option<Option<Result<Frame<Bytes>, BoxError>>>,
    /// The entry and the wait for room, while the queue is full.
    waiting: Option<(Archiver, ArchiveEntry, Reserve)>,
}

impl ArchiveBody {
    fn new(inner: Body, capture: ArchiveCapture) -> Self {
        Self {
            inner,
            capture: Some(capture),
            last: None,
            waiting: None,
        }
    }

    /// Hands the captured call over; pending while the queue is full.
    fn poll_hand_over(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(capture) = self.capture.take() {
            let (archiver, entry) = capture.into_entry();
            match archiver.try_submit(entry) {
                HandOver::Queued | HandOver::Closed => return Poll::Ready(()),
                HandOver::Full(entry) => {
                    let reserve = Box::pin(archiver.reserve());
                    self.waiting = Some((archiver, entry, reserve));
                }
            }
        }
        if let Some((_, _, reserve)) = &mut self.waiting {
            let permit = ready!(reserve.as_mut().poll(cx));
            if let Some((archiver, entry, _)) = self.waiting.take() {
                match permit {
                    Ok(permit) => archiver.queue(permit, entry),
                    // A closed queue: hand_over logs and counts it.
                    Err(_) => archiver.hand_over(entry),
                }
            }
        }
        Poll::Ready(())
    }
}

impl http_body::Body for ArchiveBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.last.is_none() {
            let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
            match frame {
                Some(Ok(frame)) => {
                    if let (Some(data), Some(capture)) = (frame.data_ref(), this.capture.as_mut()) {
                        capture.response.push(data.clone());
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                end => this.last = Some(end),
            }
        }
        ready!(this.poll_hand_over(cx));
        Poll::Ready(this.last.take().flatten())
    }

    fn is_end_stream(&self) -> bool {
        // Not ended while the call is still to be handed over: the last poll does it.
        self.capture.is_none() && self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ArchiveBody {
    fn drop(&mut self) {
        let pending = match (self.capture.take(), self.waiting.take()) {
            (Some(capture), _) => Some(capture.into_entry()),
            (None, Some((archiver, entry, _))) => Some((archiver, entry)),
            (None, None) => None,
        };
        if let Some((archiver, entry)) = pending {
            // Never blocks, never spawns on the dropping thread's runtime (which may be a
            // worker shutting down): waits, if it must, on the writers' runtime.
            archiver.hand_over(entry);
        }
    }
}
