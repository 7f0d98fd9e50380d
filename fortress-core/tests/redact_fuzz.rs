//! The fuzz target's properties, as a proptest CI runs: on arbitrary text the redactor
//! never panics, redacting twice equals redacting once, streaming equals one-shot, and
//! JSON stays JSON. (The cargo-fuzz target in `fortress-core/fuzz` checks the same.)

use fortress_core::redact::{DefaultRedactor, RedactionConfig, RedactionScope, Redactor, TokenKey};
use fortress_core::subject::WorkspaceId;
use proptest::prelude::*;

fn scope() -> RedactionScope {
    RedactionScope::new(WorkspaceId::new("fuzz"))
}

/// Every built-in type replaced by a keyed token (`[EMAIL_3f9a…]`), in workspace `token`.
fn tokenising() -> DefaultRedactor {
    let config: RedactionConfig = toml::from_str(
        r#"
        [workspaces.token.rules.actions]
        EMAIL = "token"
        PHONE = "token"
        SSN = "token"
        CARD = "token"
        IBAN = "token"
        IP = "token"
        SECRET = "token"
        "#,
    )
    .unwrap();
    DefaultRedactor::builder()
        .config(config)
        .default_token_key(TokenKey::new(vec![9; 32]).unwrap())
        .build()
        .unwrap()
}

/// Prose with PII planted in it, glued to its neighbours or set apart, next to the
/// context words that change what a number is (`order #`, `version`, `SSN`, `Bearer`).
fn planted() -> impl Strategy<Value = String> {
    let pii = prop::sample::select(vec![
        "4111111111111111",
        "4111 1111 1111 1111",
        "123-45-6789",
        "123456789",
        "bob@example.com",
        "(415) 555-0132",
        "+44 20 7946 0958",
        "10.1.2.3",
        "2001:db8::7",
        "DE89 3704 0044 0532 0130 00",
        "1985-03-12",
        "sk-ant-api03-Zx81Lq0PmW3nV7bT5rY2",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "Zx81Lq0PmW3nV7bT5rY2",
    ]);
    let words = prop::sample::select(vec![
        "",
        "",
        " ",
        " ",
        "\n",
        ", ",
        "order #",
        "order",
        "version ",
        "id=",
        "SSN ",
        "DOB ",
        "phone ",
        "Bearer ",
        "api_key=",
        "token: ",
        "MRN ",
        "[",
        "]",
        "*",
        "#",
        "@",
        "-",
        ".",
        "x",
        "9",
        "the ",
        "total 42 ",
    ]);
    prop::collection::vec((words.clone(), pii, words), 1..8).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(before, value, after)| format!("{before}{value}{after}"))
            .collect()
    })
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

    #[test]
    fn planted_pii_is_redacted_once_and_for_all(text in planted()) {
        for (redactor, scope) in [
            (DefaultRedactor::new(), scope()),
            (tokenising(), RedactionScope::new(WorkspaceId::new("token"))),
        ] {
            let (once, _) = redactor.redact_text(&scope, &text).unwrap();
            let (twice, report) = redactor.redact_text(&scope, &once).unwrap();
            prop_assert_eq!(twice.as_ref(), once.as_ref(), "input {:?}", text);
            prop_assert!(report.is_empty(), "second pass found {:?} in {:?}", report, once);
        }
    }

}

#[test]
fn a_token_that_swallowed_an_id_word_redacts_idempotently() {
    // Found by the fuzz replay: the bearer token swallows `order`, which kept the card an
    // identifier on the first pass; without `order` the second pass masked it.
    let text = "Bearer 123-45-6789order #4111111111111111";
    for (redactor, scope) in [
        (DefaultRedactor::new(), scope()),
        (tokenising(), RedactionScope::new(WorkspaceId::new("token"))),
    ] {
        let (once, _) = redactor.redact_text(&scope, text).unwrap();
        assert!(once.starts_with("Bearer [SECRET"), "{once}");
        let (twice, report) = redactor.redact_text(&scope, &once).unwrap();
        assert_eq!(twice, once);
        assert!(report.is_empty(), "{report:?}");
    }
}

#[test]
fn the_quote_closing_a_quoted_replacement_opens_no_key() {
    // Found by the fuzzer: quoting the replaced number added a closing quote that made
    // ` mrn"` a key on the second pass, which then redacted the second `123`.
    let text = "\"mrn\": 123 mrn\": 123";
    for (redactor, scope) in [
        (DefaultRedactor::new(), scope()),
        (tokenising(), RedactionScope::new(WorkspaceId::new("token"))),
    ] {
        let (once, _) = redactor.redact_text(&scope, text).unwrap();
        assert!(once.starts_with("\"mrn\": \"[MRN"), "{once}");
        let (twice, report) = redactor.redact_text(&scope, &once).unwrap();
        assert_eq!(twice, once);
        assert!(report.is_empty(), "{report:?}");
    }
}
