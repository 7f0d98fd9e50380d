//! The fuzz target's properties, as a proptest CI runs: on arbitrary text the redactor
//! never panics, redacting twice equals redacting once, streaming equals one-shot, and
//! JSON stays JSON. (The cargo-fuzz target in `fortress-core/fuzz` checks the same.)

use fortress_core::redact::{DefaultRedactor, RedactionScope, Redactor};
use fortress_core::subject::WorkspaceId;
use proptest::prelude::*;

fn scope() -> RedactionScope {
    RedactionScope::new(WorkspaceId::new("fuzz"))
}

/// Text biased towards the characters detectors care about.
fn texty() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "0",
        "1",
        "4",
        "5",
        "9",
        "-",
        ".",
        " ",
        "@",
        ":",
        "/",
        "+",
        "(",
        ")",
        "[",
        "]",
        "*",
        "a",
        "Z",
        "x",
        "e",
        "DOB ",
        "MRN ",
        "SSN ",
        "sk-ant-",
        "AKIA",
        "ghp_",
        "xoxb-",
        "eyJ",
        "-----BEGIN PRIVATE KEY-----",
        "Bearer ",
        "api_key=",
        "\"first_name\": \"",
        "\"",
        "\\",
        "\n",
        "é",
        "日",
        "🦀",
        "4111111111111111",
        "123-45-6789",
        "a@b.co",
        "2001:db8::1",
        "10.0.0.1",
        "DE89370400440532013000",
        "(415) 555-0132",
        "1985-03-12",
        "March",
        "-----END PRIVATE KEY-----",
        "Zx81Lq0PmW3nV7bT5rY2",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_is_idempotent(text in prop_oneof![texty(), any::<String>()], cut in any::<usize>()) {
        let redactor = DefaultRedactor::new();
        let (once, _) = redactor.redact_text(&scope(), &text).unwrap();
        let (twice, report) = redactor.redact_text(&scope(), &once).unwrap();
        prop_assert_eq!(twice.as_ref(), once.as_ref());
        prop_assert!(report.is_empty());

        let mut c = cut % (text.len() + 1);
        while !text.is_char_boundary(c) {
            c -= 1;
        }
        let mut stream = redactor.stream(&scope()).unwrap();
        let mut out = String::new();
        stream.push(&text[..c], &mut out);
        stream.push(&text[c..], &mut out);
        stream.flush(&mut out);
        prop_assert_eq!(out, once.into_owned());

        let mut json = serde_json::json!({"text": text, "nested": [{"patient_name": text}], "n": 1});
        redactor.redact_json(&scope(), &mut json).unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&json.to_string()).unwrap();
        prop_assert_eq!(reparsed, json);
    }
}
