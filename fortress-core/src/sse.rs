//! Server-Sent Events: one incremental decoder over byte chunks, and the writer.
//!
//! A body frame is never assumed to be one event: bytes accumulate until a blank line ends
//! an event, and an event larger than the decoder's bound is an error rather than unbounded
//! memory. Lines may end in `\n`, `\r\n` or `\r` (also split across chunks), `data:` lines
//! join with `\n`, comment lines (`:`) are skipped, and `event`, `id` and `retry` are read.
//!
//! A decoded event keeps the exact bytes it came from ([`SseEvent::raw`]) as a view of the
//! received chunks, and its single `data:` line as a view of those bytes: passing an event
//! through copies nothing, and only multi-line data is joined into a new string.
//!
//! ```
//! use fortress_core::sse::{SseDecoder, SseEvent, encode};
//!
//! let mut decoder = SseDecoder::new(1024);
//! assert!(decoder.push(b"event: ping\nda").unwrap().is_empty());
//! let events = decoder.push(b"ta: {\"type\":\"ping\"}\r\n\r\n").unwrap();
//! assert_eq!(events[0].event(), Some("ping"));
//! assert_eq!(events[0].data(), "{\"type\":\"ping\"}");
//! assert_eq!(&events[0].raw()[..], b"event: ping\ndata: {\"type\":\"ping\"}\r\n\r\n");
//! assert_eq!(&SseEvent::new("ping", "{}").encode()[..], b"event: ping\ndata: {}\n\n");
//! assert_eq!(&encode(None, "a\nb")[..], b"data: a\ndata: b\n\n");
//! ```

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// One server-sent event: its wire bytes and where its fields sit in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The event in wire form; valid UTF-8 (checked when decoded, or built from text).
    raw: Bytes,
    event: Option<Range<usize>>,
    id: Option<Range<usize>>,
    retry: Option<u64>,
    data: Data,
}

/// The `data:` lines of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Data {
    /// No `data:` line.
    #[default]
    Absent,
    /// One line: a range of the wire bytes.
    Line(Range<usize>),
    /// Several lines, joined with `\n`.
    Joined(String),
}

impl SseEvent {
    /// An event named `event` carrying `data` (several lines if it holds line breaks).
    pub fn new(event: &str, data: impl AsRef<str>) -> Self {
        Self::build(Some(event), data.as_ref())
    }

    /// An unnamed event (type `message`) carrying `data`.
    pub fn message(data: impl AsRef<str>) -> Self {
        Self::build(None, data.as_ref())
    }

    fn build(event: Option<&str>, data: &str) -> Self {
        let mut out = String::with_capacity(data.len() + event.map_or(0, str::len) + 16);
        let written = write(&mut out, event, data);
        Self {
            raw: Bytes::from(out),
            event: written.event,
            id: None,
            retry: None,
            data: written.data,
        }
    }

    /// The `event:` field; `None` when absent or empty (the type is then `message`).
    pub fn event(&self) -> Option<&str> {
        self.event
            .as_ref()
            .map(|r| self.text(r))
            .filter(|e| !e.is_empty())
    }

    /// The `data:` lines joined with `\n` (empty when there are none).
    pub fn data(&self) -> &str {
        match &self.data {
            Data::Absent => "",
            Data::Line(range) => self.text(range),
            Data::Joined(text) => text,
        }
    }

    /// Whether the event has a `data:` line (only such events are dispatched by browsers).
    pub fn has_data(&self) -> bool {
        !matches!(self.data, Data::Absent)
    }

    /// The `id:` field.
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(|r| self.text(r))
    }

    /// The `retry:` field, when it is a number of milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The exact wire bytes the event was decoded from (or built as).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The event in wire form, without copying it.
    pub fn encode(&self) -> Bytes {
        self.raw.clone()
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut String) {
        out.push_str(self.text(&(0..self.raw.len())));
    }

    /// A range of the wire bytes as text. The bytes were checked as UTF-8 when the event was
    /// made, so this cannot fail; the check is repeated because the crate has no `unsafe`.
    fn text(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(&self.raw[range.clone()]).unwrap_or_default()
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
    /// An event is not UTF-8.
    #[error("server-sent event is not valid UTF-8")]
    Utf8,
    /// The stream ended in the middle of an event.
    #[error("stream ended inside an event")]
    Truncated,
}

/// The fields of the event being read, as ranges of the decoder's buffer (which starts at
/// the event's first byte until the event ends).
#[derive(Debug, Default)]
struct Pending {
    event: Option<Range<usize>>,
    id: Option<Range<usize>>,
    retry: Option<u64>,
    data: Data,
    /// A field line (not only comments) has been read.
    any_field: bool,
}

/// Decodes events from chunks of any size, holding at most one event's bytes.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Start of the first line not yet read, in `buf`.
    line_start: usize,
    /// Where to resume looking for a line end (bytes before it hold none).
    search_from: usize,
    pending: Pending,
    /// The first line is read (a byte-order mark may only precede it).
    past_first_line: bool,
    limit: usize,
}

impl SseDecoder {
    /// A decoder that refuses events larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            line_start: 0,
            search_from: 0,
            pending: Pending::default(),
            past_first_line: false,
            limit,
        }
    }

    /// Adds a chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        self.push_into(chunk, &mut events)?;
        Ok(events)
    }

    /// Adds a chunk; appends every event it completes to `out` (events completed before an
    /// error are appended too).
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
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
            let mut line_start = self.line_start;
            if !self.past_first_line {
                self.past_first_line = true;
                if self.buf[line_start..line_end].starts_with(BYTE_ORDER_MARK) {
                    line_start += BYTE_ORDER_MARK.len();
                }
            }
            self.line_start = next;
            self.search_from = next;
            if line_start == line_end {
                self.dispatch(next, out)?;
            } else {
                self.field(line_start..line_end);
                if next > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
            }
        }
    }

    /// Ends the stream, appending an event completed by a final lone `\r`. An unfinished
    /// final event is an error; trailing blank space or comments are not.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.buf.last() == Some(&b'\r') {
            // A final `\r` ends a line; it was only waiting for a possible `\n`.
            self.push_into(b"\n", out)?;
        }
        let unfinished_line = &self.buf[self.line_start..];
        let truncated = self.pending.any_field
            || (unfinished_line.first() != Some(&b':')
                && unfinished_line.iter().any(|b| !b.is_ascii_whitespace()));
        self.buf.clear();
        self.line_start = 0;
        self.search_from = 0;
        self.pending = Pending::default();
        if truncated {
            return Err(SseError::Truncated);
        }
        Ok(())
    }

    /// A blank line ends the event at `end`: hand it out if it had any field.
    fn dispatch(&mut self, end: usize, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let raw = self.buf.split_to(end).freeze();
        self.line_start = 0;
        self.search_from = 0;
        let pending = std::mem::take(&mut self.pending);
        if !pending.any_field {
            return Ok(()); // only comments or blank lines
        }
        std::str::from_utf8(&raw).map_err(|_| SseError::Utf8)?;
        out.push(SseEvent {
            raw,
            event: pending.event,
            id: pending.id,
            retry: pending.retry,
            data: pending.data,
        });
        Ok(())
    }

    /// Reads one non-blank line, `buf[line]`.
    fn field(&mut self, line: Range<usize>) {
        let bytes = &self.buf[line.clone()];
        if bytes[0] == b':' {
            return; // a comment
        }
        let (name, value) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut value = line.start + colon + 1;
                if self.buf.get(value) == Some(&b' ') && value < line.end {
                    value += 1;
                }
                (line.start..line.start + colon, value..line.end)
            }
            None => (line.clone(), line.end..line.end),
        };
        let pending = &mut self.pending;
        match &self.buf[name] {
            b"event" => pending.event = Some(value),
            b"data" => {
                pending.data = match std::mem::take(&mut pending.data) {
                    Data::Absent => Data::Line(value),
                    Data::Line(first) => {
                        let mut joined = lossy(&self.buf[first]).into_owned();
                        joined.push('\n');
                        joined.push_str(&lossy(&self.buf[value]));
                        Data::Joined(joined)
                    }
                    Data::Joined(mut joined) => {
                        joined.push('\n');
                        joined.push_str(&lossy(&self.buf[value]));
                        Data::Joined(joined)
                    }
                }
            }
            // An id holding NUL is ignored, as the specification says.
            b"id" if !self.buf[value.clone()].contains(&0) => pending.id = Some(value),
            b"retry" => {
                let digits = &self.buf[value];
                if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                    pending.retry = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse().ok());
                }
            }
            _ => {}
        }
        pending.any_field = true;
    }
}

const BYTE_ORDER_MARK: &[u8] = "\u{feff}".as_bytes();

/// Text of bytes the event's final UTF-8 check will judge: borrowed when valid.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
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

/// Where a written event's fields sit in the output.
struct Written {
    event: Option<Range<usize>>,
    data: Data,
}

/// Appends one event in wire form to `out`. Line breaks in `data` (`\n`, `\r\n`, `\r`)
/// become separate `data:` lines, so a decoder gives back the lines joined with `\n`;
/// an event name stops at its first line break, so it cannot add fields.
pub fn write_event(out: &mut String, event: Option<&str>, data: &str) {
    write(out, event, data);
}

/// One event in wire form.
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + event.map_or(0, str::len) + 16);
    write(&mut out, event, data);
    Bytes::from(out)
}

fn write(out: &mut String, event: Option<&str>, data: &str) -> Written {
    let base = out.len();
    let event = event.map(|name| {
        let name = name.split(['\r', '\n']).next().unwrap_or_default();
        out.push_str("event: ");
        let start = out.len() - base;
        out.push_str(name);
        out.push('\n');
        start..start + name.len()
    });
    let mut lines = 0;
    let mut first = 0..0;
    for line in data_lines(data) {
        out.push_str("data: ");
        let start = out.len() - base;
        out.push_str(line);
        out.push('\n');
        if lines == 0 {
            first = start..start + line.len();
        }
        lines += 1;
    }
    out.push('\n');
    let data = if lines == 1 {
        Data::Line(first)
    } else {
        Data::Joined(data_lines(data).collect::<Vec<_>>().join("\n"))
    };
    Written { event, data }
}

/// The lines of `text`, split at `\r\n`, `\r` or `\n` (one empty line for empty text).
fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\n\n\
        event: ping\ndata: x\ndata: y\nid: 7\nretry: 1500\n\nevent: e\rdata: z\r\r";

    /// What a consumer sees of an event.
    type Seen = (Option<String>, String, Option<String>, Option<u64>);

    fn seen(events: &[SseEvent]) -> Vec<Seen> {
        events
            .iter()
            .map(|e| {
                let name = e.event().map(str::to_owned);
                (
                    name,
                    e.data().to_owned(),
                    e.id().map(str::to_owned),
                    e.retry(),
                )
            })
            .collect()
    }

    fn decode_in_chunks(bytes: &[u8], cuts: &[usize]) -> Result<Vec<SseEvent>, SseError> {
        let mut decoder = SseDecoder::new(1024);
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&bytes.len()]) {
            let cut = cut.clamp(from, bytes.len());
            decoder.push_into(&bytes[from..cut], &mut out)?;
            from = cut;
        }
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn fields_comments_and_every_line_end_are_read() {
        let events = decode_in_chunks(STREAM.as_bytes(), &[]).unwrap();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            seen(&events),
            vec![
                (some("message_start"), "{\"a\":1}".into(), None, None),
                (some("ping"), "x\ny".into(), some("7"), Some(1500)),
                (some("e"), "z".into(), None, None),
            ]
        );
        assert_eq!(
            &events[0].raw()[..],
            b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
        );
    }

    #[test]
    fn a_byte_order_mark_and_field_edge_cases_are_handled() {
        let stream = "\u{feff}data\ndata:  two spaces\nretry: 12x\nid: a\0b\n\n";
        let events = decode_in_chunks(stream.as_bytes(), &[1, 2]).unwrap();
        assert_eq!(events[0].data(), "\n two spaces");
        assert_eq!(events[0].retry(), None);
        assert_eq!(events[0].id(), None);
        assert!(events[0].has_data());
        let no_data = decode_in_chunks(b"event: x\n\n", &[]).unwrap();
        assert!(!no_data[0].has_data());
    }

    #[test]
    fn oversized_invalid_and_truncated_events_are_errors() {
        let mut decoder = SseDecoder::new(16);
        assert_eq!(
            decoder.push(&[b'a'; 40]).unwrap_err(),
            SseError::TooLarge { limit: 16 }
        );
        let mut decoder = SseDecoder::new(16);
        assert_eq!(
            decoder.push(b"data: 0123456789abcdef\n").unwrap_err(),
            SseError::TooLarge { limit: 16 }
        );
        assert_eq!(
            decode_in_chunks(b"data: \xff\n\n", &[]).unwrap_err(),
            SseError::Utf8
        );
        assert_eq!(
            decode_in_chunks(b"event: x\ndata: 1\n", &[]).unwrap_err(),
            SseError::Truncated
        );
        assert_eq!(
            decode_in_chunks(b"data: 1\n\n: keep-alive\n", &[])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn written_events_decode_to_what_was_written() {
        let built = SseEvent::new("content_block_delta", "line1\r\nline2\rline3\n");
        assert_eq!(built.data(), "line1\nline2\nline3\n");
        assert_eq!(built.event(), Some("content_block_delta"));
        let mut decoder = SseDecoder::new(1024);
        let decoded = decoder.push(&built.encode()).unwrap();
        assert_eq!(seen(&decoded), seen(std::slice::from_ref(&built)));
        assert_eq!(decoded[0].raw(), built.raw());
        let single = SseEvent::message("{}");
        assert_eq!((single.event(), single.data()), (None, "{}"));
        let mut out = String::from("x");
        write_event(&mut out, Some("a\nid: 1"), "");
        assert_eq!(out, "xevent: a\ndata: \n\n");
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_decodes_the_same_events(
            cuts in proptest::collection::vec(0..STREAM.len(), 0..12),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let whole = decode_in_chunks(STREAM.as_bytes(), &[]).unwrap();
            let chunked = decode_in_chunks(STREAM.as_bytes(), &cuts).unwrap();
            proptest::prop_assert_eq!(seen(&chunked), seen(&whole));
            let raw = |v: &[SseEvent]| v.iter().map(|e| e.raw().clone()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(raw(&chunked), raw(&whole));
        }

        #[test]
        fn any_written_stream_decodes_the_same_in_any_chunks(
            events in proptest::collection::vec(
                (proptest::option::of("[a-z_]{1,8}"), "[ -~\r\n\u{e9}]{0,24}"),
                1..5,
            ),
            cuts in proptest::collection::vec(0..400usize, 0..10),
        ) {
            let mut wire = Vec::new();
            let mut written = Vec::new();
            for (name, data) in &events {
                let event = match name {
                    Some(name) => SseEvent::new(name, data),
                    None => SseEvent::message(data),
                };
                wire.extend_from_slice(event.raw());
                written.push(event);
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            let decoded = decode_in_chunks(&wire, &cuts).unwrap();
            proptest::prop_assert_eq!(seen(&decoded), seen(&written));
        }
    }
}
