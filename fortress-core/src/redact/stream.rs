//! The redaction machinery every redactor shares: find spans, replace them, and stream with
//! a hold-back window.
//!
//! A redactor only has to implement [`MatchFinder`]: given a haystack and a starting
//! offset, report the leftmost non-overlapping spans to replace. [`redact_with`] applies a
//! finder to a whole text; [`HoldBackRedactor`] applies it to a stream and guarantees the
//! same output for any chunking, provided the finder is *local*: whether a span is found
//! at `p` depends only on text within `context_len` bytes before `p` and `max_match_len +
//! context_len` bytes after it.

use std::borrow::Cow;
use std::sync::Arc;

use super::{RedactionReport, StreamRedactor};

/// One span of text to replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Entity type, for the report.
    pub entity: Arc<str>,
    /// What replaces the span.
    pub replacement: String,
}

/// Finds the spans a redactor replaces.
pub trait MatchFinder: Send + Sync + 'static {
    /// Appends to `spans` the leftmost, non-overlapping spans starting at or after `from`,
    /// in order. Text before `from` is context only.
    fn find(&self, haystack: &str, from: usize, spans: &mut Vec<Span>);

    /// The longest span this finder can report, in bytes.
    fn max_match_len(&self) -> usize;

    /// How many bytes of context either side of a span can change whether it matches.
    fn context_len(&self) -> usize;

    /// Where the settled part of `haystack` ends: for every position before the returned
    /// offset, whether a span starts there (and where it ends) no longer depends on text
    /// appended later. The default holds back the longest span and its context; a finder
    /// that can tell no long span may start near the end returns more, so a stream holds
    /// back less.
    fn settled(&self, haystack: &str) -> usize {
        haystack
            .len()
            .saturating_sub(self.max_match_len() + self.context_len())
    }
}

impl<F: MatchFinder + ?Sized> MatchFinder for Arc<F> {
    fn find(&self, haystack: &str, from: usize, spans: &mut Vec<Span>) {
        (**self).find(haystack, from, spans)
    }
    fn max_match_len(&self) -> usize {
        (**self).max_match_len()
    }
    fn context_len(&self) -> usize {
        (**self).context_len()
    }
    fn settled(&self, haystack: &str) -> usize {
        (**self).settled(haystack)
    }
}

/// Redacts a whole text with a finder. Borrows when nothing matches.
pub fn redact_with<'a, F: MatchFinder + ?Sized>(
    finder: &F,
    text: &'a str,
) -> (Cow<'a, str>, RedactionReport) {
    let mut spans = Vec::new();
    finder.find(text, 0, &mut spans);
    let mut report = RedactionReport::new();
    if spans.is_empty() {
        return (Cow::Borrowed(text), report);
    }
    let mut out = String::with_capacity(text.len());
    let end = apply(text, 0, text.len(), &spans, &mut out, &mut report);
    out.push_str(&text[end..]);
    (Cow::Owned(out), report)
}

/// Writes `text[from..]` with spans replaced, stopping at the first span that ends after
/// `limit`; returns where it stopped (a span start or `limit`).
fn apply(
    text: &str,
    from: usize,
    limit: usize,
    spans: &[Span],
    out: &mut String,
    report: &mut RedactionReport,
) -> usize {
    let mut at = from;
    for span in spans {
        if span.end > limit {
            let stop = span.start.min(limit);
            out.push_str(&text[at..stop.max(at)]);
            return stop.max(at);
        }
        out.push_str(&text[at..span.start]);
        out.push_str(&span.replacement);
        report.add(&span.entity);
        at = span.end;
    }
    if limit > at {
        out.push_str(&text[at..limit]);
        at = limit;
    }
    at
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The least pending text a stream scans at once, so that short chunks cost O(1) each and
/// the held-back tail is rescanned rarely.
const SCAN_BATCH: usize = 8 << 10;

/// A streaming redactor over any local [`MatchFinder`].
pub struct HoldBackRedactor<F> {
    finder: F,
    /// Pending bytes at which the next scan runs: at least [`SCAN_BATCH`], and twice what
    /// the last scan held back, so each byte is scanned a bounded number of times.
    next_scan: usize,
    /// Already-emitted text kept as left context, followed by pending text.
    buf: String,
    /// Bytes at the start of `buf` that were already emitted.
    emitted: usize,
    spans: Vec<Span>,
    report: RedactionReport,
}

impl<F: MatchFinder> HoldBackRedactor<F> {
    /// Streams with `finder`.
    pub fn new(finder: F) -> Self {
        Self {
            finder,
            next_scan: SCAN_BATCH,
            buf: String::new(),
            emitted: 0,
            spans: Vec::new(),
            report: RedactionReport::new(),
        }
    }
}

impl<F: MatchFinder> StreamRedactor for HoldBackRedactor<F> {
    fn push(&mut self, chunk: &str, out: &mut String) {
        self.buf.push_str(chunk);
        let pending = self.buf.len() - self.emitted;
        if pending < self.next_scan {
            return;
        }
        let cutoff = floor_boundary(&self.buf, self.finder.settled(&self.buf));
        if cutoff <= self.emitted {
            // Nothing is settled yet (a long span may be starting): wait for more text.
            self.next_scan = pending.saturating_mul(2);
            return;
        }
        self.spans.clear();
        self.finder.find(&self.buf, self.emitted, &mut self.spans);
        let stop = apply(
            &self.buf,
            self.emitted,
            cutoff,
            &self.spans,
            out,
            &mut self.report,
        );
        // Keep the left context the finder needs in front of the pending text.
        let keep_from = floor_boundary(&self.buf, stop.saturating_sub(self.finder.context_len()));
        self.buf.drain(..keep_from);
        self.emitted = stop - keep_from;
        self.next_scan = (self.buf.len() - self.emitted)
            .saturating_mul(2)
            .max(SCAN_BATCH);
    }

    fn flush(&mut self, out: &mut String) {
        self.spans.clear();
        self.finder.find(&self.buf, self.emitted, &mut self.spans);
        let end = self.buf.len();
        apply(
            &self.buf,
            self.emitted,
            end,
            &self.spans,
            out,
            &mut self.report,
        );
        self.buf.clear();
        self.emitted = 0;
        self.next_scan = SCAN_BATCH;
    }

    fn report(&self) -> &RedactionReport {
        &self.report
    }
}
