//! Fuzzes the default redactor: it never panics, redacting twice equals redacting once,
//! streaming in two pieces equals one-shot, and JSON stays JSON.
#![no_main]

use fortress_core::redact::{DefaultRedactor, RedactionScope, Redactor};
use fortress_core::subject::WorkspaceId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let redactor = DefaultRedactor::new();
    let scope = RedactionScope::new(WorkspaceId::new("fuzz"));

    let (once, _) = redactor.redact_text(&scope, text).unwrap();
    let (twice, report) = redactor.redact_text(&scope, &once).unwrap();
    assert_eq!(twice, once, "redacting twice changed the text");
    assert!(report.is_empty());

    let mut c = (usize::from(cut) * text.len()) / 255;
    while !text.is_char_boundary(c) {
        c -= 1;
    }
    let mut stream = redactor.stream(&scope).unwrap();
    let mut out = String::new();
    stream.push(&text[..c], &mut out);
    stream.push(&text[c..], &mut out);
    stream.flush(&mut out);
    assert_eq!(out, once, "streaming differs from one-shot");

    let mut json = serde_json::json!({ "text": text, "items": [{ "patient_name": text }] });
    redactor.redact_json(&scope, &mut json).unwrap();
    let again: serde_json::Value = serde_json::from_str(&json.to_string()).unwrap();
    assert_eq!(again, json);
});
