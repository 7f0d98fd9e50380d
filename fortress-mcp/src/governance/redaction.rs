//! Redaction of MCP results as they cross the seam.
//!
//! The seam's body is NDJSON: one JSON-RPC message per line. Redacting it as plain text
//! (the core default for unknown content types) would scan ids, method names and JSON
//! escapes, and could break the framing. [`McpResultRedaction`] instead parses each line
//! and redacts only the content a client reads:
//!
//! - tool results: `content[]` (`text` items, embedded `resource.text`) and
//!   `structuredContent` (every string, key rules applied);
//! - `resources/read`: `contents[].text`;
//! - `prompts/get`: `messages[].content` (text and embedded resources);
//! - `notifications/message` (logging): `data`.
//!
//! Lists (`tools`, `resources`, `prompts`), ids, protocol fields and binary `blob`s pass
//! unchanged. A line that is not JSON fails closed (the body ends with an error). Counts go
//! to the audit event; content is never stored.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fortress_core::body::{Body, BoxError};
use fortress_core::layer::redaction::{BodyRedaction, RedactionSession};
use fortress_core::redact::RedactError;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

/// Redacts MCP results inside seam bodies, line by line.
#[derive(Clone, Copy, Debug)]
pub struct McpResultRedaction {
    max_line: usize,
}

impl McpResultRedaction {
    /// Refuses (fails closed on) messages over `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self { max_line }
    }
}

impl Default for McpResultRedaction {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl BodyRedaction for McpResultRedaction {
    fn redact(
        &self,
        _head: &mut http::response::Parts,
        body: Body,
        session: RedactionSession,
    ) -> Result<Body, RedactError> {
        let state = Lines {
            body: Some(body),
            buffer: BytesMut::new(),
            max_line: self.max_line,
            session: Arc::new(session),
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let out = state.next_chunk().await?;
            Some((out, state))
        });
        Ok(
            http_body_util::StreamBody::new(stream.map(|r| r.map(http_body::Frame::data)))
                .boxed_unsync(),
        )
    }
}

struct Lines {
    body: Option<Body>,
    buffer: BytesMut,
    max_line: usize,
    session: Arc<RedactionSession>,
}

impl Lines {
    /// The redacted complete lines available next; `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            if let Some(end) = self.buffer.iter().rposition(|b| *b == b'\n') {
                let complete = self.buffer.split_to(end + 1);
                return Some(self.redact_lines(&complete));
            }
            let body = self.body.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                        if self.buffer.len() > self.max_line && !self.buffer.contains(&b'\n') {
                            self.body = None;
                            return Some(Err("relayed message too large to redact".into()));
                        }
                    }
                }
                Some(Err(error)) => {
                    self.body = None;
                    return Some(Err(error));
                }
                None => {
                    self.body = None;
                    if self.buffer.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let mut rest = std::mem::take(&mut self.buffer);
                    rest.extend_from_slice(b"\n");
                    return Some(self.redact_lines(&rest));
                }
            }
        }
    }

    fn redact_lines(&self, lines: &[u8]) -> Result<Bytes, BoxError> {
        let mut out = Vec::with_capacity(lines.len());
        for line in lines.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut message: Value = serde_json::from_slice(line).map_err(|_| {
                Box::new(RedactError::Content("relayed message is not JSON".into()))
            })?;
            if redact_message(&mut message, &self.session)? {
                serde_json::to_writer(&mut out, &message)?;
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
        Ok(Bytes::from(out))
    }
}

/// Redacts the client-visible content of one JSON-RPC message; whether anything changed.
pub fn redact_message(
    message: &mut Value,
    session: &RedactionSession,
) -> Result<bool, RedactError> {
    // A JSON-RPC error inside a 200 answer is a failed call for the audit trail (its
    // code only; the message may quote content).
    if let Some(code) = message.pointer("/error/code").and_then(Value::as_i64)
        && message.get("id").is_some()
    {
        session.notes.failed(format!("json-rpc error {code}"));
    }
    let mut changed = false;
    let mut redact = |value: &mut Value| -> Result<(), RedactError> {
        let report = session.redactor.redact_json(&session.scope, value)?;
        changed |= !report.is_empty();
        session.notes.redactions(&report);
        Ok(())
    };
    if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
        if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
            for item in content {
                redact_content(item, &mut redact)?;
            }
        }
        if let Some(structured) = result.get_mut("structuredContent") {
            redact(structured)?;
        }
        if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
            for item in contents {
                if let Some(text) = item.get_mut("text") {
                    redact(text)?;
                }
            }
        }
        if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
            for m in messages {
                match m.get_mut("content") {
                    Some(Value::Array(items)) => {
                        for item in items {
                            redact_content(item, &mut redact)?;
                        }
                    }
                    Some(item) => redact_content(item, &mut redact)?,
                    None => {}
                }
            }
        }
    } else if message.get("method").and_then(Value::as_str) == Some("notifications/message")
        && let Some(data) = message.pointer_mut("/params/data")
    {
        redact(data)?;
    }
    Ok(changed)
}

/// One content block: text, or an embedded resource's text.
fn redact_content(
    item: &mut Value,
    redact: &mut impl FnMut(&mut Value) -> Result<(), RedactError>,
) -> Result<(), RedactError> {
    if let Some(text) = item.get_mut("text") {
        redact(text)?;
    }
    if let Some(text) = item.pointer_mut("/resource/text") {
        redact(text)?;
    }
    if let Some(structured) = item.get_mut("structuredContent") {
        redact(structured)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::body;
    use fortress_core::layer::CallNotes;
    use fortress_core::redact::{DefaultRedactor, RedactionScope};
    use fortress_core::subject::WorkspaceId;

    fn session() -> RedactionSession {
        RedactionSession {
            redactor: Arc::new(DefaultRedactor::new()),
            scope: RedactionScope::new(WorkspaceId::new("acme")),
            notes: CallNotes::new(),
        }
    }

    async fn run(input: Vec<&'static str>) -> (String, CallNotes) {
        let session = session();
        let notes = session.notes.clone();
        let frames = futures_util::stream::iter(
            input
                .into_iter()
                .map(|s| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(s)))),
        );
        let body = body::boxed(http_body_util::StreamBody::new(frames));
        let (mut head, _) = http::Response::new(()).into_parts();
        let out = McpResultRedaction::default()
            .redact(&mut head, body, session)
            .unwrap();
        let bytes = body::collect(out).await.unwrap();
        (String::from_utf8(bytes.to_vec()).unwrap(), notes)
    }

    #[tokio::test]
    async fn tool_results_are_masked_and_framing_kept_across_frames() {
        let line = r#"{"jsonrpc":"2.0","id":null,"result":{"content":[{"type":"text","text":"mail jane.roe@example.com"},{"type":"resource","resource":{"uri":"x://1","text":"SSN 078-05-1120"}}],"structuredContent":{"email":"jane.roe@example.com"}}}
"#;
        let (a, b) = line.split_at(40);
        let progress = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n";
        let (out, notes) = run(vec![progress, a, b]).await;
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["method"], "notifications/progress");
        let text = lines[1].to_string();
        assert!(!text.contains("jane.roe"), "{text}");
        assert!(!text.contains("078-05-1120"), "{text}");
        assert_eq!(lines[1]["result"]["content"][1]["resource"]["uri"], "x://1");
        assert!(notes.redaction_report().total() >= 3);
    }

    #[tokio::test]
    async fn lists_pass_unchanged_and_garbage_fails_closed() {
        let list = "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"tools\":[{\"name\":\"mail\",\"description\":\"write to jane.roe@example.com\"}]}}\n";
        let (out, _) = run(vec![list]).await;
        assert_eq!(out, list);
        let session = session();
        let body = body::full("not json\n");
        let (mut head, _) = http::Response::new(()).into_parts();
        let out = McpResultRedaction::default()
            .redact(&mut head, body, session)
            .unwrap();
        assert!(body::collect(out).await.is_err());
    }
}
