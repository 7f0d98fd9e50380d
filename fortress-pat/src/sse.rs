//! Server-sent events: decode whole events from arbitrary byte chunks with a bounded
//! buffer, and encode them again.
//!
//! A body frame is never assumed to be one event: bytes accumulate until a blank line ends
//! an event, and an event larger than the bound is an error rather than unbounded memory.
//!
//! ```
//! use fortress_pat::sse::{SseDecoder, SseEvent};
//!
//! let mut decoder = SseDecoder::new(1024);
//! let mut events = Vec::new();
//! decoder.push(b"event: ping\nda", &mut events).unwrap();
//! assert!(events.is_empty());
//! decoder.push(b"ta: {\"type\":\"ping\"}\n\n", &mut events).unwrap();
//! assert_eq!(events[0].event.as_deref(), Some("ping"));
//! assert_eq!(events[0].data, "{\"type\":\"ping\"}");
//! assert_eq!(SseEvent::new("ping", "{}").encode(), "event: ping\ndata: {}\n\n");
//! ```

use bytes::{Bytes, BytesMut};

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field.
    pub id: Option<String>,
    /// The exact bytes the event was decoded from (empty for built events).
    pub raw: Bytes,
}

impl SseEvent {
    /// An event with a name and data.
    pub fn new(event: &str, data: impl Into<String>) -> Self {
        Self {
            event: Some(event.to_owned()),
            data: data.into(),
            id: None,
            raw: Bytes::new(),
        }
    }

    /// The event in wire form.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 32);
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut String) {
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// An event grew past the decoder's bound.
    #[error("server-sent event larger than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("server-sent event is not valid UTF-8")]
    Utf8,
    /// The stream ended in the middle of an event.
    #[error("stream ended inside an event")]
    Truncated,
}

/// Decodes events from chunks of any size.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Start of the first line not yet read, in `buf`.
    line_start: usize,
    /// Where to resume looking for a line end (bytes before it hold none).
    search_from: usize,
    current: SseEvent,
    has_field: bool,
    data_seen: bool,
    limit: usize,
}

impl SseDecoder {
    /// A decoder that refuses events larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            line_start: 0,
            search_from: 0,
            current: SseEvent::default(),
            has_field: false,
            data_seen: false,
            limit,
        }
    }

    /// Adds a chunk; appends every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        loop {
            let Some((line_end, next)) = find_line_end(&self.buf, self.search_from) else {
                // Keep a possible `\r` of a split `\r\n` for the next look.
                self.search_from = self.buf.len().saturating_sub(1).max(self.line_start);
                if self.buf.len() > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
                return Ok(());
            };
            let line = std::str::from_utf8(&self.buf[self.line_start..line_end])
                .map_err(|_| SseError::Utf8)?
                .to_owned();
            self.line_start = next;
            self.search_from = next;
            if line.is_empty() {
                let raw = self.buf.split_to(next).freeze();
                self.line_start = 0;
                self.search_from = 0;
                if self.has_field {
                    let mut event = std::mem::take(&mut self.current);
                    event.raw = raw;
                    out.push(event);
                }
                self.has_field = false;
                self.data_seen = false;
            } else {
                self.field(&line);
                if self.line_start > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
            }
        }
    }

    /// Ends the stream, appending an event completed by a final lone `\r`: an
    /// unterminated final event is an error, trailing blank space is not.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.buf.last() == Some(&b'\r') {
            // A final `\r` ends a line; `\r\n` is the same line end.
            self.push(b"\n", out)?;
        }
        let rest = std::mem::take(&mut self.buf);
        let pending = self.has_field || rest.iter().any(|b| !b.is_ascii_whitespace());
        self.line_start = 0;
        self.search_from = 0;
        self.has_field = false;
        self.data_seen = false;
        if pending {
            return Err(SseError::Truncated);
        }
        Ok(())
    }

    fn field(&mut self, line: &str) {
        if line.starts_with(':') {
            return; // a comment
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "event" => self.current.event = Some(value.to_owned()),
            "data" => {
                if self.data_seen {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.data_seen = true;
            }
            "id" => self.current.id = Some(value.to_owned()),
            _ => {}
        }
        self.has_field = true;
    }
}

/// Finds the next line end at or after `from`: `(end of line, start of next line)`. A
/// lone `\r` at the very end may be the first half of `\r\n`, so it waits for more bytes.
fn find_line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rel = buf[from..].iter().position(|&b| b == b'\n' || b == b'\r')?;
    let at = from + rel;
    if buf[at] == b'\n' {
        return Some((at, at + 1));
    }
    match buf.get(at + 1) {
        Some(b'\n') => Some((at, at + 2)),
        Some(_) => Some((at, at + 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\n\nevent: ping\ndata: x\ndata: y\n\nevent: e\rdata: z\r\r";

    fn decode_in_chunks(bytes: &[u8], size: usize) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new(1024);
        let mut out = Vec::new();
        for chunk in bytes.chunks(size) {
            decoder.push(chunk, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn any_chunking_decodes_the_same_events() {
        let whole = decode_in_chunks(STREAM.as_bytes(), STREAM.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event.as_deref(), Some("message_start"));
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].event.as_deref(), Some("e"));
        assert_eq!(whole[2].data, "z");
        assert_eq!(
            &whole[0].raw[..],
            b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
        );
        for size in 1..STREAM.len() {
            let events = decode_in_chunks(STREAM.as_bytes(), size);
            let strip = |v: &[SseEvent]| {
                v.iter()
                    .map(|e| (e.event.clone(), e.data.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&events), strip(&whole), "chunk size {size}");
        }
    }

    #[test]
    fn oversized_and_truncated_events_are_errors() {
        let mut decoder = SseDecoder::new(16);
        let mut out = Vec::new();
        let err = decoder.push(&[b'a'; 40], &mut out).unwrap_err();
        assert_eq!(err, SseError::TooLarge { limit: 16 });
        let mut decoder = SseDecoder::new(1024);
        decoder.push(b"event: x\ndata: 1\n", &mut out).unwrap();
        assert_eq!(decoder.finish(&mut out), Err(SseError::Truncated));
    }

    #[test]
    fn encoding_round_trips() {
        let event = SseEvent::new("content_block_delta", "line1\nline2");
        let mut decoder = SseDecoder::new(1024);
        let mut out = Vec::new();
        decoder.push(event.encode().as_bytes(), &mut out).unwrap();
        assert_eq!(out[0].event, event.event);
        assert_eq!(out[0].data, event.data);
    }
}
