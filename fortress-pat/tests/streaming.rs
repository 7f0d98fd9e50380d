//! Streaming redaction and metering of Claude SSE answers.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fortress_core::body::{self, Body};
use fortress_core::layer::CallNotes;
use fortress_core::layer::redaction::{BodyRedaction, RedactionSession};
use fortress_core::redact::{PatternRedactor, RedactionScope, Redactor};
use fortress_core::subject::WorkspaceId;
use fortress_pat::api::Usage;
use fortress_pat::mock::stream_events;
use fortress_pat::redaction::ClaudeBodyRedaction;
use fortress_pat::sse::{SseDecoder, SseEvent};
use fortress_pat::usage::UsageTap;
use serde_json::Value;

const REPLY: &str = "Contact bob.smith@example.com or 123-45-6789 today.";

fn session() -> (RedactionSession, CallNotes) {
    let notes = CallNotes::new();
    let redactor: Arc<dyn Redactor> = Arc::new(PatternRedactor::basic());
    (
        RedactionSession {
            redactor,
            scope: RedactionScope::new(WorkspaceId::new("acme")),
            notes: notes.clone(),
        },
        notes,
    )
}

/// Runs SSE frames through the PAT body redaction; returns the client's events and the tap.
async fn run(frames: Vec<Bytes>) -> (Vec<SseEvent>, UsageTap, CallNotes) {
    let stream = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))),
    );
    let upstream: Body = body::boxed(http_body_util::StreamBody::new(stream));
    let mut response = http::Response::new(());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    let tap = UsageTap::new();
    response.extensions_mut().insert(tap.clone());
    let (mut head, ()) = response.into_parts();
    let (session, notes) = session();
    let redacted = ClaudeBodyRedaction
        .redact(&mut head, upstream, session)
        .unwrap();
    let bytes = body::collect(redacted).await.unwrap();
    let mut decoder = SseDecoder::new(1 << 20);
    let mut events = Vec::new();
    decoder.push_into(&bytes, &mut events).unwrap();
    decoder.finish(&mut events).unwrap();
    (events, tap, notes)
}

fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e.data()).ok())
        .filter(|v| v["type"] == "content_block_delta" && v["delta"]["type"] == "text_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn expected() -> String {
    let scope = RedactionScope::new(WorkspaceId::new("acme"));
    let (text, _) = PatternRedactor::basic().redact_text(&scope, REPLY).unwrap();
    text.into_owned()
}

fn encode(events: &[SseEvent]) -> Vec<u8> {
    events.iter().flat_map(|e| e.encode()).collect()
}

/// The events of a reply split into two text deltas at byte `at`.
fn split_reply(at: usize) -> Vec<SseEvent> {
    let mut events = stream_events("msg_1", "claude-x", REPLY, REPLY.len(), "end_turn", 21, 17);
    let delta = |text: &str| {
        SseEvent::new(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}})
            .to_string(),
        )
    };
    // stream_events put the whole reply in one delta at position 3.
    events.splice(3..4, [delta(&REPLY[..at]), delta(&REPLY[at..])]);
    events
}

#[tokio::test]
async fn pii_split_across_deltas_at_every_offset_never_reaches_the_client() {
    let want = expected();
    assert!(!want.contains("bob.smith@example.com"));
    for at in 0..=REPLY.len() {
        let frames = vec![Bytes::from(encode(&split_reply(at)))];
        let (events, tap, notes) = run(frames).await;
        let got = text_of(&events);
        assert_eq!(got, want, "split at {at}");
        let all: String = events.iter().map(|e| e.data().to_owned()).collect();
        assert!(!all.contains("bob.smith"), "split at {at}");
        assert!(!all.contains("6789"), "split at {at}");
        let (usage, complete) = tap.outcome().unwrap();
        assert!(complete);
        assert_eq!(usage.input_tokens, 21);
        assert_eq!(usage.output_tokens, 17);
        assert_eq!(notes.redaction_report().count("EMAIL"), 1);
        assert_eq!(notes.redaction_report().count("SSN"), 1);
        // The event order around the text is kept.
        let kinds: Vec<_> = events
            .iter()
            .filter_map(|e| e.event().map(str::to_owned))
            .collect();
        let stop = kinds
            .iter()
            .position(|k| k == "content_block_stop")
            .unwrap();
        let last_delta = kinds
            .iter()
            .rposition(|k| k == "content_block_delta")
            .unwrap();
        assert!(
            last_delta < stop,
            "held text is flushed before content_block_stop"
        );
        assert_eq!(kinds.last().map(String::as_str), Some("message_stop"));
    }
}

#[tokio::test]
async fn any_byte_chunking_gives_the_same_answer_and_usage() {
    let events = stream_events("msg_1", "claude-x", REPLY, 3, "end_turn", 21, 17);
    let bytes = encode(&events);
    for size in [1, 2, 5, 7, 13, 64, bytes.len()] {
        let frames = bytes.chunks(size).map(Bytes::copy_from_slice).collect();
        let (out, tap, _) = run(frames).await;
        assert_eq!(text_of(&out), expected(), "chunk size {size}");
        assert_eq!(
            tap.outcome(),
            Some((
                Usage {
                    input_tokens: 21,
                    output_tokens: 17,
                    ..Usage::default()
                },
                true
            ))
        );
    }
}

#[tokio::test]
async fn a_stream_without_message_stop_ends_with_an_error_event() {
    let mut events = stream_events("msg_1", "claude-x", REPLY, 4, "end_turn", 21, 17);
    events.pop();
    let (out, tap, _) = run(vec![Bytes::from(encode(&events))]).await;
    let last = out.last().unwrap();
    assert_eq!(last.event(), Some("error"));
    let v: Value = serde_json::from_str(last.data()).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(
        text_of(&out),
        expected(),
        "held text is still flushed, redacted"
    );
    assert!(!tap.outcome().unwrap().1);
}

#[tokio::test]
async fn an_upstream_error_event_is_forwarded() {
    let mut events = stream_events("msg_1", "claude-x", REPLY, 4, "end_turn", 21, 17);
    events.truncate(5);
    events.push(SseEvent::new(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ));
    let (out, tap, _) = run(vec![Bytes::from(encode(&events))]).await;
    let errors: Vec<_> = out.iter().filter(|e| e.event() == Some("error")).collect();
    assert_eq!(errors.len(), 1, "forwarded once, no second gateway error");
    assert!(errors[0].data().contains("overloaded_error"));
    assert!(!tap.outcome().unwrap().1);
}
