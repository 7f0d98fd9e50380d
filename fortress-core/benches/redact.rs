//! Redaction throughput: clean text, PII-dense text and JSON, and streaming in 64-byte
//! chunks, each beside baselines measured on the same input in the same run (a plain
//! byte scan, and the three-regex `PatternRedactor`).
//!
//! `cargo bench -p fortress-core --bench redact -- --warm-up-time 1 --measurement-time 3`
//!
//! With `REDACT_PROFILE=<input>[-stream]` set (`prose`, `clean`, `dense`), the binary
//! instead redacts that input a few times and exits: a small, repeatable driver for
//! `valgrind --tool=callgrind` (instruction counts do not depend on the machine's load).
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

#[path = "../tests/redact_support/mod.rs"]
mod redact_support;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use fortress_core::redact::{DefaultRedactor, PatternRedactor, RedactionScope, Redactor};
use fortress_core::subject::WorkspaceId;
use redact_support::{ENTITIES, clean_line, rng, sample};

const SIZE: usize = 1 << 20;

fn clean_text() -> String {
    let mut r = rng(1);
    let mut text = String::with_capacity(SIZE + 256);
    while text.len() < SIZE {
        text.push_str(&clean_line(&mut r));
        text.push('\n');
    }
    text
}

/// English prose with the occasional number: the common case for chat text.
fn prose_text() -> String {
    const PARAGRAPH: &str = "The quarterly review covered the migration plan in detail. Most teams \
        finished their part ahead of schedule, and the remaining work is tracked in the shared \
        board. We agreed to revisit the rollout order next week, after the load tests on the \
        new cluster (about 12 nodes) have run for 3 days. Please read the design notes before \
        the meeting and bring questions; the goal is a decision, not another round of options.\n";
    PARAGRAPH.repeat(SIZE / PARAGRAPH.len() + 1)
}

fn dense_text() -> String {
    let mut r = rng(2);
    let mut text = String::with_capacity(SIZE + 256);
    'fill: loop {
        for entity in ENTITIES {
            text.push_str(&sample(&mut r, entity).text);
            text.push('\n');
            if text.len() >= SIZE {
                break 'fill;
            }
        }
    }
    text
}

fn dense_json() -> serde_json::Value {
    let mut r = rng(3);
    let records: Vec<serde_json::Value> = (0..4000)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "patient_name": redact_support::name(&mut r),
                "email": redact_support::email(&mut r),
                "phone": redact_support::phone(&mut r),
                "note": sample(&mut r, ENTITIES[i % ENTITIES.len()]).text,
                "status": "open",
                "visits": [i * 3, i * 7],
            })
        })
        .collect();
    serde_json::json!({ "content": [{"type": "text", "text": "results"}], "structuredContent": { "records": records } })
}

/// The baseline every figure is compared with: one pass over the bytes.
fn byte_scan(text: &str) -> usize {
    text.bytes()
        .filter(|b| b.is_ascii_digit() || *b == b'@')
        .count()
}

fn stream_64(redactor: &dyn Redactor, scope: &RedactionScope, text: &str) -> usize {
    let mut stream = redactor.stream(scope).unwrap();
    let mut out = String::with_capacity(256);
    let mut total = 0;
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let mut end = (at + 64).min(bytes.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        stream.push(&text[at..end], &mut out);
        total += out.len();
        out.clear();
        at = end;
    }
    stream.flush(&mut out);
    total + out.len()
}

fn bench(c: &mut Criterion) {
    let redactor = DefaultRedactor::new();
    let pattern = PatternRedactor::basic();
    let scope = RedactionScope::new(WorkspaceId::new("bench"));

    for (name, text) in [
        ("prose", prose_text()),
        ("clean", clean_text()),
        ("dense", dense_text()),
    ] {
        let mut group = c.benchmark_group(format!("redact_text/{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("baseline_byte_scan", |b| {
            b.iter(|| byte_scan(black_box(&text)))
        });
        group.bench_function("baseline_pattern_redactor", |b| {
            b.iter(|| {
                pattern
                    .redact_text(&scope, black_box(&text))
                    .unwrap()
                    .0
                    .len()
            })
        });
        group.bench_function("default_redactor", |b| {
            b.iter(|| {
                redactor
                    .redact_text(&scope, black_box(&text))
                    .unwrap()
                    .0
                    .len()
            })
        });
        group.bench_function("default_stream_64b", |b| {
            b.iter(|| stream_64(&redactor, &scope, black_box(&text)))
        });
        group.bench_function("baseline_pattern_stream_64b", |b| {
            b.iter(|| stream_64(&pattern, &scope, black_box(&text)))
        });
        group.finish();
    }

    let json = dense_json();
    let size = serde_json::to_string(&json).unwrap().len();
    let mut group = c.benchmark_group("redact_json/dense");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("baseline_clone", |b| b.iter(|| black_box(json.clone())));
    group.bench_function("default_redactor", |b| {
        b.iter_batched(
            || json.clone(),
            |mut v| redactor.redact_json(&scope, &mut v).unwrap().total(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Redacts one input `REDACT_PROFILE_ROUNDS` times (default 3) and prints a checksum; the
/// cost of one round is the difference between two round counts, without the set-up.
fn profile(which: &str) {
    let redactor = DefaultRedactor::new();
    let scope = RedactionScope::new(WorkspaceId::new("bench"));
    let (name, streaming) = match which.strip_suffix("-stream") {
        Some(name) => (name, true),
        None => (which, false),
    };
    let text = match name {
        // The byte scan over the clean text, for the instruction-count baseline.
        "prose" => prose_text(),
        "clean" | "baseline" => clean_text(),
        "dense" => dense_text(),
        other => panic!("REDACT_PROFILE: unknown input {other:?}"),
    };
    let rounds: usize = std::env::var("REDACT_PROFILE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut total = 0;
    for _ in 0..rounds {
        total += if name == "baseline" {
            byte_scan(black_box(&text))
        } else if streaming {
            stream_64(&redactor, &scope, black_box(&text))
        } else {
            redactor
                .redact_text(&scope, black_box(&text))
                .unwrap()
                .0
                .len()
        };
    }
    println!("{total}");
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var("REDACT_PROFILE") {
        profile(&which);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
