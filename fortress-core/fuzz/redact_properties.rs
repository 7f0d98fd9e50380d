//! The properties the `redact` fuzz target checks, in one file that both the cargo-fuzz
//! target (`fuzz_targets/redact.rs`) and the stable replay test
//! (`fortress-core/tests/redact_fuzz_replay.rs`) compile, so CI runs exactly the code the
//! fuzzer runs.
//!
//! For any input: the redactor never panics; redacting twice equals redacting once (and
//! the second pass reports nothing); streaming the text in fuzzer-chosen chunks gives the
//! one-shot output and report byte for byte; `detect` agrees with the report; a JSON
//! object written as text still parses after text redaction; and JSON redaction keeps the
//! JSON valid and is idempotent too.
//!
//! (Idempotence is not required of the `partial` action: see docs/redaction.md.)
//!
//! Input layout: byte 0 picks one of the [`REDACTORS`] configurations; byte 1 (mod 8) is
//! how many chunk lengths follow; each following byte is a chunk length (1 to 256 bytes,
//! used in turn until the text ends; none means one character per chunk); the rest is the
//! text (invalid UTF-8 is replaced, so every input exercises the redactor).
#![allow(dead_code)]

use std::sync::OnceLock;

use fortress_core::redact::{
    DefaultRedactor, RedactionConfig, RedactionReport, RedactionScope, Redactor, TokenKey,
};
use fortress_core::subject::WorkspaceId;

/// How many redactor configurations the first input byte chooses between.
pub(crate) const REDACTORS: usize = 4;

/// The configurations, by workspace: every built-in type masked (`fuzz`); tokens with a
/// dictionary, a workspace pattern, an MRN format and a key rule (`token`); drop and allow
/// (`drop`); partial masking (`partial`).
fn redactors() -> &'static [DefaultRedactor; REDACTORS] {
    static BUILT: OnceLock<[DefaultRedactor; REDACTORS]> = OnceLock::new();
    BUILT.get_or_init(|| {
        let config: RedactionConfig = serde_json::from_value(serde_json::json!({
            "workspaces": {
                "token": { "rules": {
                    "actions": { "EMAIL": "token", "NAME": "token", "MRN": "token", "CARD": "token" },
                    "names": ["Jane Roe", "Johan Eriksson", "Ana"],
                    "mrn_formats": ["PT\\d{5}"],
                    "keys": [{ "key": "guardian", "entity": "NAME" }],
                    "patterns": [{ "entity": "EMPLOYEE_ID", "regex": "EMP-\\d{6}" }]
                }},
                "drop": { "rules": {
                    "actions": { "EMAIL": "drop", "NAME": "drop", "IP": "allow", "DOB": "allow" }
                }},
                "partial": { "rules": {
                    "actions": { "CARD": "partial", "SSN": "partial", "PHONE": "partial", "IBAN": "partial" }
                }}
            }
        }))
        .expect("the fuzz configuration parses");
        let key = TokenKey::new(vec![7; 32]).expect("a 32-byte key is accepted");
        let configured = DefaultRedactor::builder()
            .config(config)
            .default_token_key(key)
            .build()
            .expect("the fuzz configuration compiles");
        [
            DefaultRedactor::new(),
            configured.clone(),
            configured.clone(),
            configured,
        ]
    })
}

fn scope(which: usize) -> RedactionScope {
    RedactionScope::new(WorkspaceId::new(
        ["fuzz", "token", "drop", "partial"][which % REDACTORS],
    ))
}

/// Runs every property on one fuzzer input; panics on a violation.
pub(crate) fn check(data: &[u8]) {
    let (&which, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&count, rest) = rest.split_first().unwrap_or((&0, &[]));
    let count = usize::from(count % 8).min(rest.len());
    let (lengths, text) = rest.split_at(count);
    let text = String::from_utf8_lossy(text);
    let which = usize::from(which) % REDACTORS;
    let redactor = &redactors()[which];
    let scope = scope(which);
    // `partial` keeps the last four characters, which a second pass can see as part of a
    // new match (a documented limit), so idempotence is not required of it.
    let idempotent = which != 3;
    check_text(redactor, &scope, &text, lengths, idempotent);
    check_json(redactor, &scope, &text, idempotent);
}

/// Idempotence, agreement with `detect`, and streaming equals one-shot.
fn check_text(
    redactor: &DefaultRedactor,
    scope: &RedactionScope,
    text: &str,
    lengths: &[u8],
    idempotent: bool,
) {
    let (once, report) = redactor.redact_text(scope, text).expect("small input");
    let (twice, again) = redactor.redact_text(scope, &once).expect("small input");
    if idempotent {
        assert_eq!(twice, once, "redacting twice changed the text");
        assert!(again.is_empty(), "the second pass redacted {again:?}");
    }

    let found = redactor.detect(scope, text).expect("small input");
    assert_eq!(found.len() as u64, report.total(), "detect disagrees");
    let mut end = 0;
    for d in &found {
        assert!(
            d.start >= end && d.end > d.start,
            "overlapping or empty span"
        );
        assert!(text.is_char_boundary(d.start) && text.is_char_boundary(d.end));
        end = d.end;
    }
    assert_eq!(
        found.is_empty(),
        matches!(once, std::borrow::Cow::Borrowed(_))
    );

    // JSON written as text stays JSON (numbers in arrays excepted: see docs/redaction.md).
    if !text.contains('[')
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
    {
        assert!(
            serde_json::from_str::<serde_json::Value>(&once).is_ok(),
            "JSON redacted as text no longer parses"
        );
    }

    let (streamed, stream_report) = stream(redactor, scope, text, lengths);
    assert_eq!(streamed, once, "streaming differs from one-shot");
    assert_eq!(stream_report, report, "streaming reported differently");
}

/// Streams `text` in chunks of the given lengths (one character each if none).
fn stream(
    redactor: &DefaultRedactor,
    scope: &RedactionScope,
    text: &str,
    lengths: &[u8],
) -> (String, RedactionReport) {
    let mut stream = redactor.stream(scope).expect("a stream");
    let mut out = String::new();
    let mut at = 0;
    let mut turn = 0;
    while at < text.len() {
        let step = lengths
            .get(turn % lengths.len().max(1))
            .map_or(1, |&b| usize::from(b) + 1);
        turn += 1;
        let mut end = (at + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        stream.push(&text[at..end], &mut out);
        at = end;
    }
    stream.flush(&mut out);
    (out, stream.report().clone())
}

/// JSON stays valid JSON and redacting it twice equals redacting it once, for the text
/// placed under plain and sensitive keys, and for the text itself when it is JSON.
fn check_json(redactor: &DefaultRedactor, scope: &RedactionScope, text: &str, idempotent: bool) {
    let mut values = vec![serde_json::json!({
        "text": text,
        "patient_name": text,
        "guardian": text,
        "ssn": text,
        "items": [text, { "email": text, "note": text, "mrn": 12345678 }],
        "n": 7,
        "ok": true
    })];
    if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text) {
        values.push(parsed);
    }
    for mut value in values {
        redactor
            .redact_json(scope, &mut value)
            .expect("small input");
        let reparsed: serde_json::Value =
            serde_json::from_str(&value.to_string()).expect("redacted JSON parses");
        assert_eq!(reparsed, value, "redacted JSON does not round-trip");
        let mut again = value.clone();
        let report = redactor
            .redact_json(scope, &mut again)
            .expect("small input");
        if idempotent {
            assert_eq!(again, value, "redacting JSON twice changed it");
            assert!(
                report.is_empty(),
                "the second JSON pass redacted {report:?}"
            );
        }
    }
}
