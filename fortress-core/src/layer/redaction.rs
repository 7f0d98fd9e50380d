//! Response redaction: PII and secrets are masked before the answer reaches the caller.
//!
//! How a body is redacted depends on the protocol, so [`RedactionLayer`] delegates to a
//! [`BodyRedaction`]. Core ships three: [`TextStream`] (any text body, frame by frame, with
//! the streaming redactor's hold-back window), [`JsonDocument`] (a whole JSON document,
//! structure preserved) and [`ByContentType`] (the right one per `Content-Type`). Protocol
//! crates add their own (SSE events, JSON-RPC results). Counts go to the audit via
//! [`CallNotes`]. A redactor failure refuses the answer (fail closed).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;

use super::{CallNotes, ResponseFuture, take_ready};
use crate::body::{self, Body, BoxError};
use crate::call::call_of;
use crate::denial::{Denial, DenialKind, Responder};
use crate::redact::{RedactError, RedactionScope, Redactor, StreamRedactor};

/// Everything a [`BodyRedaction`] needs for one response.
#[derive(Clone)]
pub struct RedactionSession {
    /// The redactor.
    pub redactor: Arc<dyn Redactor>,
    /// Whose rules apply.
    pub scope: RedactionScope,
    /// Where counts are reported.
    pub notes: CallNotes,
}

/// Redacts one response body.
pub trait BodyRedaction: Send + Sync + 'static {
    /// Returns the redacted body. Headers may be adjusted (the layer already removes
    /// `Content-Length`, since redaction changes sizes).
    fn redact(
        &self,
        head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError>;
}

/// Redacts a UTF-8 text body frame by frame through a [`StreamRedactor`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TextStream;

impl BodyRedaction for TextStream {
    fn redact(
        &self,
        _head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError> {
        let stream = session.redactor.stream(&session.scope)?;
        Ok(body::boxed(RedactedText {
            inner: body,
            stream,
            carry: Vec::new(),
            notes: session.notes,
            trailers: None,
            done: false,
        }))
    }
}

/// A body whose text passes through a streaming redactor.
struct RedactedText {
    inner: Body,
    stream: Box<dyn StreamRedactor>,
    /// The bytes of a UTF-8 character split across frames.
    carry: Vec<u8>,
    notes: CallNotes,
    /// Trailers waiting behind the flushed text.
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl RedactedText {
    /// Decodes `data` (after any carried bytes) and pushes the complete characters.
    fn push(&mut self, data: &[u8], out: &mut String) -> Result<(), BoxError> {
        self.carry.extend_from_slice(data);
        let valid = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => return Err("response body is not valid UTF-8 text".into()),
        };
        let text =
            std::str::from_utf8(&self.carry[..valid]).map_err(|e| Box::new(e) as BoxError)?;
        self.stream.push(text, out);
        self.carry.drain(..valid);
        Ok(())
    }

    /// Ends the text: flushes what was held back and reports the counts.
    fn finish(&mut self, out: &mut String) -> Result<(), BoxError> {
        self.done = true;
        if !self.carry.is_empty() {
            return Err("response body ends inside a UTF-8 character".into());
        }
        self.stream.flush(out);
        self.notes.redactions(self.stream.report());
        Ok(())
    }
}

fn data_frame(text: String) -> Frame<Bytes> {
    Frame::data(Bytes::from(text))
}

impl http_body::Body for RedactedText {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let mut out = String::new();
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = this.push(&data, &mut out) {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(data_frame(out))));
                        }
                    }
                    Err(trailers) => {
                        // The text before the trailers is complete: flush it first.
                        if let Err(e) = this.finish(&mut out) {
                            return Poll::Ready(Some(Err(e)));
                        }
                        if out.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        this.trailers = Some(trailers);
                        return Poll::Ready(Some(Ok(data_frame(out))));
                    }
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Err(e) = this.finish(&mut out) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready((!out.is_empty()).then(|| Ok(data_frame(out))));
                }
            }
        }
    }
}

/// Redacts a whole JSON document (up to `limit` bytes), preserving its structure. A body
/// that is not JSON is redacted as text.
#[derive(Clone, Copy, Debug)]
pub struct JsonDocument {
    limit: usize,
}

impl JsonDocument {
    /// Buffers at most `limit` bytes; a larger body fails closed.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl Default for JsonDocument {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl BodyRedaction for JsonDocument {
    fn redact(
        &self,
        _head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError> {
        let future = redact_json_body(body, self.limit, session);
        Ok(http_body_util::StreamBody::new(futures_util::stream::once(future)).boxed_unsync())
    }
}

async fn redact_json_body(
    body: Body,
    limit: usize,
    session: RedactionSession,
) -> Result<Frame<Bytes>, BoxError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                let error = RedactError::TooLarge {
                    size: buf.len() + data.len(),
                    limit,
                };
                return Err(Box::new(error));
            }
            buf.extend_from_slice(&data);
        }
    }
    let bytes = buf.freeze();
    match redact_json_bytes(&bytes, &session) {
        Ok(out) => Ok(Frame::data(out)),
        Err(error) => Err(Box::new(error)),
    }
}

/// Redacts a JSON document given as bytes; non-JSON UTF-8 is redacted as text.
pub fn redact_json_bytes(bytes: &[u8], session: &RedactionSession) -> Result<Bytes, RedactError> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut value) => {
            let report = session.redactor.redact_json(&session.scope, &mut value)?;
            session.notes.redactions(&report);
            if report.is_empty() {
                return Ok(Bytes::copy_from_slice(bytes));
            }
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| RedactError::Content(e.to_string()))
        }
        Err(_) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| RedactError::Content("body is neither JSON nor UTF-8 text".into()))?;
            let (out, report) = session.redactor.redact_text(&session.scope, text)?;
            session.notes.redactions(&report);
            Ok(Bytes::from(out.into_owned()))
        }
    }
}

/// Chooses by `Content-Type`: JSON documents as JSON, other text (and untyped bodies) as
/// a text stream, and binary media (`image/*`, `audio/*`, `video/*`, octet streams) passed
/// through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByContentType {
    json: JsonDocument,
}

impl BodyRedaction for ByContentType {
    fn redact(
        &self,
        head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError> {
        let content_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence == "application/json" || essence.ends_with("+json") {
            self.json.redact(head, body, session)
        } else if ["image/", "audio/", "video/"]
            .iter()
            .any(|p| essence.starts_with(p))
            || essence == "application/octet-stream"
        {
            Ok(body)
        } else {
            TextStream.redact(head, body, session)
        }
    }
}

/// Redacts every response with a [`Redactor`] through a [`BodyRedaction`].
#[derive(Clone)]
#[must_use]
pub struct RedactionLayer {
    redactor: Arc<dyn Redactor>,
    redaction: Arc<dyn BodyRedaction>,
    responder: Arc<dyn Responder>,
}

impl RedactionLayer {
    /// Redacts responses with `redactor`, choosing the body handling by content type.
    pub fn new(redactor: Arc<dyn Redactor>, responder: Arc<dyn Responder>) -> Self {
        Self {
            redactor,
            redaction: Arc::new(ByContentType::default()),
            responder,
        }
    }

    /// Uses a protocol's own body handling.
    pub fn with_body_redaction(mut self, redaction: Arc<dyn BodyRedaction>) -> Self {
        self.redaction = redaction;
        self
    }
}

impl<S> Layer<S> for RedactionLayer {
    type Service = Redact<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Redact {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RedactionLayer`].
#[derive(Clone)]
pub struct Redact<S> {
    inner: S,
    layer: RedactionLayer,
}

impl<S, ReqB> Service<Request<ReqB>> for Redact<S>
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

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let notes = request
                .extensions()
                .get::<CallNotes>()
                .cloned()
                .unwrap_or_default();
            let Some(call) = call_of(&request).cloned() else {
                let denial = Denial::new(DenialKind::Internal, "call is not described");
                notes.denial(&denial);
                return Ok(layer.responder.respond(&denial));
            };
            let response = inner.call(request).await?;
            let (mut head, body) = response.into_parts();
            head.headers.remove(http::header::CONTENT_LENGTH);
            let session = RedactionSession {
                redactor: layer.redactor.clone(),
                scope: RedactionScope::of_call(&call),
                notes: notes.clone(),
            };
            match layer.redaction.redact(&mut head, body, session) {
                Ok(body) => Ok(Response::from_parts(head, body)),
                Err(error) => {
                    tracing::warn!(request_id = %call.request_id, %error, "redaction failed; withholding response");
                    let denial =
                        Denial::new(DenialKind::Internal, "the response could not be redacted");
                    notes.denial(&denial);
                    Ok(layer.responder.respond(&denial))
                }
            }
        })
    }
}
