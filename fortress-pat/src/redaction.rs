//! PAT body processing: Claude responses are redacted and metered event by event.
//!
//! [`ClaudeBodyRedaction`] is the PAT [`BodyRedaction`]:
//! - **SSE streams** are decoded into whole events (bounded buffer). `text_delta` and
//!   `thinking_delta` text goes through the core [`StreamRedactor`], which holds back only
//!   what a later delta could still turn into a match; held text is flushed before any
//!   other content event (`content_block_stop`, `message_delta`, …) and at the end. Usage
//!   is counted from `message_start` and the cumulative `message_delta`. An upstream
//!   `event: error` is forwarded; a stream that ends without `message_stop` gets a final
//!   `error` event and is recorded as failed. Nothing is buffered beyond one event.
//! - **JSON documents** (messages, errors, listings) are redacted whole, structure kept,
//!   and a message's `usage` is counted.
//! - Other bodies fall back to the core's content-type handling.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use fortress_core::body::{self, Body, BoxError};
use fortress_core::layer::CallNotes;
use fortress_core::layer::redaction::{BodyRedaction, ByContentType, RedactionSession};
use fortress_core::redact::{RedactError, StreamRedactor};
use http_body::Frame;
use http_body_util::BodyExt;

use crate::api::Usage;
use crate::error::{ErrorType, error_body};
use crate::sse::{SseDecoder, SseEvent};
use crate::usage::UsageTap;

/// The largest single SSE event accepted from upstream.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// The largest JSON document redacted in one piece.
pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;

/// Redacts and meters Claude responses (SSE streams and JSON documents).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaudeBodyRedaction;

impl BodyRedaction for ClaudeBodyRedaction {
    fn redact(
        &self,
        head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError> {
        let essence = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let tap = head.extensions.get::<UsageTap>().cloned();
        let ok_status = head.status.is_success();
        if essence == "text/event-stream" {
            let stream = session.redactor.stream(&session.scope)?;
            return Ok(body::boxed(ClaudeSse::new(
                body,
                stream,
                session.notes,
                tap,
                ok_status,
            )));
        }
        if essence == "application/json" {
            let future = redact_json(body, session, tap, ok_status);
            return Ok(
                http_body_util::StreamBody::new(futures_util::stream::once(future)).boxed_unsync(),
            );
        }
        if let Some(tap) = tap {
            tap.report(Usage::default(), ok_status);
        }
        ByContentType::default().redact(head, body, session)
    }
}

async fn redact_json(
    mut body: Body,
    session: RedactionSession,
    tap: Option<UsageTap>,
    ok_status: bool,
) -> Result<Frame<Bytes>, BoxError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                report(&tap, &session.notes, Usage::default(), false);
                return Err(error);
            }
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_JSON_BYTES {
                report(&tap, &session.notes, Usage::default(), false);
                return Err(Box::new(RedactError::TooLarge {
                    size: buf.len() + data.len(),
                    limit: MAX_JSON_BYTES,
                }));
            }
            buf.extend_from_slice(&data);
        }
    }
    let mut value: serde_json::Value = match serde_json::from_slice(&buf) {
        Ok(value) => value,
        Err(_) => {
            report(&tap, &session.notes, Usage::default(), ok_status);
            let bytes = fortress_core::layer::redaction::redact_json_bytes(&buf, &session)?;
            return Ok(Frame::data(bytes));
        }
    };
    let mut usage = Usage::default();
    if let Some(reported) = value.get("usage") {
        usage.apply(reported);
    }
    let redacted = session.redactor.redact_json(&session.scope, &mut value);
    let redactions = match redacted {
        Ok(r) => r,
        Err(error) => {
            report(&tap, &session.notes, usage, false);
            return Err(Box::new(error));
        }
    };
    session.notes.redactions(&redactions);
    report(&tap, &session.notes, usage, ok_status);
    if redactions.is_empty() {
        return Ok(Frame::data(buf.freeze()));
    }
    Ok(Frame::data(Bytes::from(serde_json::to_vec(&value)?)))
}

fn report(tap: &Option<UsageTap>, notes: &CallNotes, usage: Usage, complete: bool) {
    if let Some(tap) = tap {
        tap.report(usage, complete);
    }
    if usage != Usage::default() {
        notes.detail(
            "usage",
            serde_json::to_value(usage).unwrap_or(serde_json::Value::Null),
        );
    }
}

/// The text being held back: which block and which delta kind it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    index: u64,
    kind: &'static str,
}

impl Held {
    fn field(&self) -> &'static str {
        if self.kind == "thinking_delta" {
            "thinking"
        } else {
            "text"
        }
    }
}

/// An SSE body redacted and metered event by event.
struct ClaudeSse {
    inner: Body,
    decoder: SseDecoder,
    stream: Box<dyn StreamRedactor>,
    notes: CallNotes,
    tap: Option<UsageTap>,
    usage: Usage,
    held: Option<Held>,
    saw_stop: bool,
    saw_error: bool,
    ok_status: bool,
    ended: bool,
    events: Vec<SseEvent>,
    queue: VecDeque<Bytes>,
}

impl ClaudeSse {
    fn new(
        inner: Body,
        stream: Box<dyn StreamRedactor>,
        notes: CallNotes,
        tap: Option<UsageTap>,
        ok_status: bool,
    ) -> Self {
        Self {
            inner,
            decoder: SseDecoder::new(MAX_EVENT_BYTES),
            stream,
            notes,
            tap,
            usage: Usage::default(),
            held: None,
            saw_stop: false,
            saw_error: false,
            ok_status,
            ended: false,
            events: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Emits what the redactor held back for the current block.
    fn flush_held(&mut self, out: &mut Vec<Bytes>) {
        let Some(held) = self.held.take() else {
            return;
        };
        let mut text = String::new();
        self.stream.flush(&mut text);
        if !text.is_empty() {
            out.push(delta_event(&held, &text).encode());
        }
    }

    fn process(&mut self, event: SseEvent, out: &mut Vec<Bytes>) {
        let parsed: Option<serde_json::Value> = serde_json::from_str(event.data()).ok();
        let kind = parsed
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(|t| t.as_str())
            .or(event.event())
            .unwrap_or("")
            .to_owned();
        match kind.as_str() {
            "ping" => {
                // Pings carry no content: forwarding them keeps held text intact.
                out.push(event.encode());
                return;
            }
            "content_block_delta" => {
                if let Some(value) = &parsed
                    && let Some((held, text)) = text_delta(value)
                {
                    if self.held.as_ref() != Some(&held) {
                        self.flush_held(out);
                    }
                    let mut emitted = String::new();
                    self.stream.push(text, &mut emitted);
                    if !emitted.is_empty() {
                        out.push(delta_event(&held, &emitted).encode());
                    }
                    self.held = Some(held);
                    return;
                }
            }
            "message_start" => {
                if let Some(u) = parsed.as_ref().and_then(|v| v.pointer("/message/usage")) {
                    self.usage.apply(u);
                }
            }
            "message_delta" => {
                if let Some(u) = parsed.as_ref().and_then(|v| v.get("usage")) {
                    self.usage.apply(u);
                }
            }
            "message_stop" => self.saw_stop = true,
            "error" => {
                self.saw_error = true;
                self.notes.failed("upstream stream error");
            }
            _ => {}
        }
        self.flush_held(out);
        out.push(event.encode());
    }

    /// Ends the stream: flushes, adds a final error event if upstream broke off.
    fn finish(&mut self, broken: Option<String>, out: &mut Vec<Bytes>) {
        self.ended = true;
        let mut tail = Vec::new();
        let truncated = self.decoder.finish(&mut tail).is_err();
        for event in tail {
            self.process(event, out);
        }
        self.flush_held(out);
        let failure = match broken {
            Some(reason) => Some(reason),
            None if truncated => Some("upstream stream ended inside an event".to_owned()),
            None if !self.saw_stop && !self.saw_error && self.ok_status => {
                Some("upstream stream ended before message_stop".to_owned())
            }
            None => None,
        };
        if let Some(reason) = &failure {
            self.notes.failed(reason.clone());
            let payload = error_body(ErrorType::Api, reason, None);
            out.push(SseEvent::new("error", payload.to_string()).encode());
        }
        self.notes.redactions(self.stream.report());
        let complete = failure.is_none() && !self.saw_error && self.ok_status;
        report(&self.tap, &self.notes, self.usage, complete);
    }

    fn on_data(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let mut events = std::mem::take(&mut self.events);
        let decoded = self.decoder.push_into(data, &mut events);
        for event in events.drain(..) {
            self.process(event, out);
        }
        self.events = events;
        if let Err(error) = decoded {
            self.finish(Some(format!("upstream stream is malformed: {error}")), out);
        }
    }
}

/// The block index, delta kind and text of a text or thinking delta.
fn text_delta(value: &serde_json::Value) -> Option<(Held, &str)> {
    let index = value.get("index")?.as_u64()?;
    let delta = value.get("delta")?;
    let (kind, field) = match delta.get("type")?.as_str()? {
        "text_delta" => ("text_delta", "text"),
        "thinking_delta" => ("thinking_delta", "thinking"),
        _ => return None,
    };
    let text = delta.get(field)?.as_str()?;
    Some((Held { index, kind }, text))
}

fn delta_event(held: &Held, text: &str) -> SseEvent {
    let mut delta = serde_json::Map::new();
    delta.insert("type".into(), held.kind.into());
    delta.insert(held.field().into(), text.into());
    let payload = serde_json::json!({
        "type": "content_block_delta",
        "index": held.index,
        "delta": delta,
    });
    SseEvent::new("content_block_delta", payload.to_string())
}

impl http_body::Body for ClaudeSse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            // Passed-through events are the very bytes received: nothing is copied.
            let mut out = Vec::new();
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.on_data(&data, &mut out);
                    }
                }
                Some(Err(error)) => {
                    this.finish(Some(format!("upstream stream failed: {error}")), &mut out)
                }
                None => this.finish(None, &mut out),
            }
            this.queue.extend(out);
        }
    }
}
