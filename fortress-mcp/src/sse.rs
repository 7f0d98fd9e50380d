//! Server-Sent Events: encoding, and a bounded incremental decoder.
//!
//! Body frames are not events: the decoder buffers bytes until a blank line ends an event,
//! refuses events larger than its limit, and accepts `\n`, `\r\n` and `\r` line ends as the
//! SSE specification allows.
//!
//! ```
//! use fortress_mcp::sse::{encode, SseDecoder};
//! let mut d = SseDecoder::new(1024);
//! let bytes = encode(Some("message"), "{\"a\":1}");
//! let (first, rest) = bytes.split_at(5);
//! assert!(d.push(first).unwrap().is_empty());
//! let events = d.push(rest).unwrap();
//! assert_eq!(events[0].data, "{\"a\":1}");
//! ```

use bytes::Bytes;

/// One decoded event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`None` means the default, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field.
    pub id: Option<String>,
}

/// An event larger than the decoder's limit.
#[derive(Debug, thiserror::Error)]
#[error("an SSE event exceeds {limit} bytes")]
pub struct EventTooLarge {
    /// The limit.
    pub limit: usize,
}

/// Encodes one event. Data containing newlines is split over several `data:` lines.
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// Decodes events from arbitrarily split chunks.
#[derive(Debug)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    limit: usize,
    current: SseEvent,
    has_data: bool,
    pending_cr: bool,
}

impl SseDecoder {
    /// A decoder refusing events over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buffer: Vec::new(),
            limit,
            current: SseEvent::default(),
            has_data: false,
            pending_cr: false,
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        for &byte in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.pending_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.buffer);
                    if let Some(event) = self.line(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    self.buffer.push(byte);
                    if self.buffer.len() + self.current.data.len() > self.limit {
                        return Err(EventTooLarge { limit: self.limit });
                    }
                }
            }
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            let had = std::mem::replace(&mut self.has_data, false);
            return had.then_some(event);
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with(':') {
            return None;
        }
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
            None => (text.into_owned(), String::new()),
        };
        match field.as_str() {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value),
            "id" => self.current.id = Some(value),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_the_same_events() {
        let mut all = Vec::new();
        all.extend_from_slice(&encode(Some("message"), "{\"x\":\"a\nb\"}"));
        all.extend_from_slice(b": keep-alive\r\n\r\n");
        all.extend_from_slice(b"event: endpoint\r\ndata: /messages?s=1\r\n\r\n");
        for split in 0..all.len() {
            let mut d = SseDecoder::new(4096);
            let mut events = d.push(&all[..split]).unwrap();
            events.extend(d.push(&all[split..]).unwrap());
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(events[0].data, "{\"x\":\"a\nb\"}");
            assert_eq!(events[1].event.as_deref(), Some("endpoint"));
            assert_eq!(events[1].data, "/messages?s=1");
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut d = SseDecoder::new(16);
        assert!(d.push(&[b'a'; 64]).is_err());
    }
}
