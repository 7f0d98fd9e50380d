//! Message Batches metering: the usage of every request inside a batch, read from the
//! batch's results as they stream past.
//!
//! A batch is billed when its requests run, long after creation, so the gateway meters it
//! from `GET /v1/messages/batches/{id}/results`: each JSONL line of a `succeeded` result
//! carries the message's model and usage. [`BatchResultsBody`] passes the bytes through
//! unchanged, one line held at a time, and reports the whole list to a [`BatchTap`] only
//! when the results were read to the end, so a broken read meters nothing and the next
//! complete one meters all. The ledger meters each batch once
//! ([`Ledger::meter_batch`](crate::limits::Ledger::meter_batch)).
//!
//! ```
//! use fortress_pat::batch_usage::results_batch_id;
//!
//! assert_eq!(results_batch_id("/v1/messages/batches/msgbatch_1/results"), Some("msgbatch_1"));
//! assert_eq!(results_batch_id("/v1/messages/batches/msgbatch_1"), None);
//! ```

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use fortress_core::body::{Body, BoxError};
use http_body::Frame;
use serde::Deserialize;

use crate::api::Usage;

/// The longest results line held while looking for its usage.
pub const MAX_RESULT_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The batch id of a results path, if `path` is one.
pub fn results_batch_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/v1/messages/batches/")?
        .strip_suffix("/results")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Points every `results_url` of a batch object (or of a listing's `data`) at the
/// gateway: the API answers with an absolute URL of its own host, which a client would
/// fetch directly, past the gateway (and its metering) and with a key the API rejects.
/// A path resolves against whatever base URL the client was given.
pub fn localize_results_urls(value: &mut serde_json::Value) -> bool {
    let mut changed = false;
    let mut fix = |object: &mut serde_json::Value| {
        if let Some(url) = object.get_mut("results_url")
            && let Some(text) = url.as_str()
            && let Some(path) = path_of(text)
            && path != text
        {
            *url = serde_json::Value::String(path.to_owned());
            changed = true;
        }
    };
    fix(value);
    if let Some(items) = value.get_mut("data").and_then(|d| d.as_array_mut()) {
        items.iter_mut().for_each(&mut fix);
    }
    changed
}

/// The path (and query) of an absolute URL.
fn path_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    rest.find('/').map(|i| &rest[i..])
}

/// Where the answer to a batch creation reports the new batch's id.
#[derive(Clone, Debug, Default)]
pub struct BatchCreated(Arc<Mutex<Option<String>>>);

impl BatchCreated {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the id of a created batch.
    pub fn report(&self, id: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.to_owned());
    }

    /// The id, once the batch was created.
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// `(model, usage)` of each succeeded request of a batch.
pub type BatchResults = Vec<(String, Usage)>;

/// Where a results body reports what it read in full.
#[derive(Clone, Debug, Default)]
pub struct BatchTap(Arc<Mutex<Option<BatchResults>>>);

impl BatchTap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    fn report(&self, results: BatchResults) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(results);
    }

    /// The results, when the whole body was read.
    pub fn take(&self) -> Option<BatchResults> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[derive(Deserialize)]
struct ResultLine {
    result: ResultBody,
}

#[derive(Deserialize)]
struct ResultBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<ResultMessage>,
}

#[derive(Deserialize)]
struct ResultMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Usage,
}

/// A results body that collects usage as it passes.
pub struct BatchResultsBody {
    inner: Body,
    line: BytesMut,
    results: BatchResults,
    unreadable: usize,
    tap: Option<BatchTap>,
}

impl BatchResultsBody {
    /// Wraps `inner`, reporting to `tap` at its end.
    pub fn new(inner: Body, tap: BatchTap) -> Self {
        Self {
            inner,
            line: BytesMut::new(),
            results: Vec::new(),
            unreadable: 0,
            tap: Some(tap),
        }
    }

    fn scan(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match memchr(data) {
                Some(end) => {
                    self.push(&data[..end]);
                    self.finish_line();
                    data.advance(end + 1);
                }
                None => {
                    self.push(data);
                    return;
                }
            }
        }
    }

    fn push(&mut self, part: &[u8]) {
        if self.line.len() + part.len() <= MAX_RESULT_LINE_BYTES {
            self.line.extend_from_slice(part);
        } else {
            // Too long to hold: counted as unreadable when the line ends.
            self.line.clear();
            self.line.extend_from_slice(b"\x00");
        }
    }

    fn finish_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<ResultLine>(&line) {
            Ok(parsed) if parsed.result.kind == "succeeded" => match parsed.result.message {
                Some(m) => self.results.push((m.model, m.usage)),
                None => self.unreadable += 1,
            },
            // Errored, canceled and expired requests are not billed.
            Ok(_) => {}
            Err(_) => self.unreadable += 1,
        }
    }

    fn end(&mut self) {
        self.finish_line();
        if self.unreadable > 0 {
            tracing::error!(
                lines = self.unreadable,
                "batch results lines without readable usage were not metered"
            );
            metrics::counter!("fortress_pat_batch_unmetered_lines_total")
                .increment(self.unreadable as u64);
        }
        if let Some(tap) = self.tap.take() {
            tap.report(std::mem::take(&mut self.results));
        }
    }
}

fn memchr(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

impl http_body::Body for BatchResultsBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.scan(data);
                }
            }
            // A broken read reports nothing: the next complete read meters the batch.
            Some(Err(_)) => this.tap = None,
            None => this.end(),
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn results_urls_point_at_the_gateway() {
        let mut batch = serde_json::json!({"id": "b1",
            "results_url": "https://api.anthropic.com/v1/messages/batches/b1/results"});
        assert!(localize_results_urls(&mut batch));
        assert_eq!(batch["results_url"], "/v1/messages/batches/b1/results");
        let mut listing = serde_json::json!({"data": [
            {"results_url": null},
            {"results_url": "http://10.0.0.1:9/v1/messages/batches/b2/results"}]});
        assert!(localize_results_urls(&mut listing));
        assert_eq!(
            listing["data"][1]["results_url"],
            "/v1/messages/batches/b2/results"
        );
        assert!(!localize_results_urls(&mut batch));
    }

    #[tokio::test]
    async fn usage_is_collected_across_chunk_boundaries_and_bytes_pass_unchanged() {
        let text = concat!(
            r#"{"custom_id":"a","result":{"type":"succeeded","message":{"model":"m1","usage":{"input_tokens":10,"output_tokens":5}}}}"#,
            "\n",
            r#"{"custom_id":"b","result":{"type":"errored","error":{"type":"invalid_request_error"}}}"#,
            "\n",
            r#"{"custom_id":"c","result":{"type":"succeeded","message":{"model":"m2","usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":2}}}}"#,
        );
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = text
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let inner = fortress_core::body::boxed(http_body_util::StreamBody::new(
            futures_util::stream::iter(chunks),
        ));
        let tap = BatchTap::new();
        let body = BatchResultsBody::new(inner, tap.clone());
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, text.as_bytes());
        let results = tap.take().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].0, "m1");
        assert_eq!(results[1].1.cache_read_input_tokens, 2);
    }
}
