//! JSON-aware redaction, actions and per-scope configuration of the default redactor.

use fortress_core::redact::{
    Action, DefaultRedactor, RedactError, RedactionConfig, RedactionScope, Redactor, TokenKey,
};
use fortress_core::subject::WorkspaceId;
use serde_json::json;

fn config(toml_text: &str) -> RedactionConfig {
    toml::from_str(toml_text).unwrap()
}

fn scope(ws: &str) -> RedactionScope {
    RedactionScope::new(WorkspaceId::new(ws))
}

#[test]
fn mcp_tool_result_is_redacted_in_text_structured_content_and_resources() {
    let redactor = DefaultRedactor::new();
    let mut result = json!({
        "content": [
            {"type": "text", "text": "{\"patient_name\": \"Ana Lima\", \"dob\": \"1984-02-29\", \"email\": \"ana@example.org\"}"},
            {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain",
                "text": "SSN 123-45-6789, card 4111 1111 1111 1111"}}
        ],
        "structuredContent": {"patient": {"firstName": "Ana", "lastName": "Lima", "mrn": 123456789,
            "contact": {"phone": "(415) 555-0132"}}, "count": 4111111111111111u64},
        "isError": false
    });
    let report = redactor.redact_json(&scope("w"), &mut result).unwrap();
    assert_eq!(
        result,
        json!({
            "content": [
                {"type": "text", "text": "{\"patient_name\": \"[NAME]\", \"dob\": \"[DOB]\", \"email\": \"[EMAIL]\"}"},
                {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain",
                    "text": "SSN [SSN], card [CARD]"}}
            ],
            "structuredContent": {"patient": {"firstName": "[NAME]", "lastName": "[NAME]", "mrn": "[MRN]",
                "contact": {"phone": "[PHONE]"}}, "count": 4111111111111111u64},
            "isError": false
        })
    );
    assert_eq!(report.count("NAME"), 3);
    assert_eq!(report.count("DOB"), 1);
    assert_eq!(report.count("MRN"), 1);
    assert_eq!(report.total(), 9);
}

#[test]
fn claude_request_and_response_bodies_keep_their_shape() {
    let redactor = DefaultRedactor::new();
    let mut request = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": "You help agents. Escalations: ops@example.com",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "My IBAN is DE89 3704 0044 0532 0130 00"}]},
                     {"role": "assistant", "content": "Noted."}]
    });
    let report = redactor.redact_json(&scope("w"), &mut request).unwrap();
    assert_eq!(request["system"], "You help agents. Escalations: [EMAIL]");
    assert_eq!(
        request["messages"][0]["content"][0]["text"],
        "My IBAN is [IBAN]"
    );
    assert_eq!(request["max_tokens"], 1024);
    assert_eq!(report.total(), 2);

    let mut clean = json!({"id": "msg_01", "content": [{"type": "text", "text": "All 3 checks passed in 12.5 s."}]});
    let before = clean.clone();
    assert!(
        redactor
            .redact_json(&scope("w"), &mut clean)
            .unwrap()
            .is_empty()
    );
    assert_eq!(clean, before);
}

#[test]
fn actions_and_key_rules_follow_workspace_connector_and_model() {
    let cfg = config(
        r#"
        [defaults.actions]
        CARD = "partial"

        [workspaces.clinic.rules]
        actions = { EMAIL = "token", IP = "allow" }
        names = ["Jane Roe"]
        keys = [{ key = "guardian", entity = "NAME" }]
        patterns = [{ entity = "EMPLOYEE_ID", regex = 'EMP-\d{6}' }]
        mrn_formats = ['PT\d{5}']

        [workspaces.clinic.connectors.zendesk.actions]
        EMAIL = "drop"

        [workspaces.clinic.models."claude-haiku"]
        actions = { CARD = "mask" }
        "#,
    );
    let redactor = DefaultRedactor::builder()
        .config(cfg)
        .token_key("clinic", TokenKey::new(vec![9; 32]).unwrap())
        .build()
        .unwrap();
    let clinic = scope("clinic");
    let text = "Jane Roe (EMP-123456) paid 4111 1111 1111 1111 from 10.1.2.3, mail jane@example.org, MRN PT12345";
    let (out, report) = redactor.redact_text(&clinic, text).unwrap();
    assert!(
        out.starts_with(
            "[NAME] ([EMPLOYEE_ID]) paid **** **** **** 1111 from 10.1.2.3, mail [EMAIL_"
        ),
        "{out}"
    );
    assert!(out.ends_with(", MRN [MRN]"), "{out}");
    assert_eq!(report.count("EMPLOYEE_ID"), 1);
    assert_eq!(report.count("IP"), 0);
    // The same email gives the same token; another workspace gives no token at all.
    let (again, _) = redactor.redact_text(&clinic, "JANE@example.org").unwrap();
    assert!(out.contains(again.as_ref()), "{again} not in {out}");
    let (other, _) = redactor.redact_text(&scope("else"), text).unwrap();
    assert!(
        other.contains("[EMAIL]") && other.contains("[IP]") && other.contains("Jane Roe"),
        "{other}"
    );

    // Connector override: emails drop the JSON field that holds them.
    let mut zendesk = clinic.clone();
    zendesk.connector = Some("zendesk".into());
    let mut ticket = json!({"requester": "jane@example.org", "cc": ["a@example.com", "ok"], "guardian": "Tom Roe", "body": "hi"});
    let report = redactor.redact_json(&zendesk, &mut ticket).unwrap();
    assert_eq!(
        ticket,
        json!({"cc": ["ok"], "guardian": "[NAME]", "body": "hi"})
    );
    assert_eq!(report.count("EMAIL"), 2);
    // Model override.
    let mut haiku = clinic.clone();
    haiku.model = Some("claude-haiku".into());
    let (out, _) = redactor
        .redact_text(&haiku, "card 4111 1111 1111 1111")
        .unwrap();
    assert_eq!(out, "card [CARD]");
}

#[test]
fn bad_configuration_is_refused_at_build() {
    let needs_key = config("[defaults.actions]\nEMAIL = \"token\"");
    assert!(matches!(
        DefaultRedactor::builder().config(needs_key).build(),
        Err(RedactError::InvalidRule { .. })
    ));
    let unbounded = config("[[defaults.patterns]]\nentity = \"X\"\nregex = 'a+'");
    assert!(
        DefaultRedactor::builder()
            .config(unbounded)
            .build()
            .is_err()
    );
    let bad_name = config("[defaults.actions]\nlower = \"mask\"");
    assert!(DefaultRedactor::builder().config(bad_name).build().is_err());
    assert!(toml::from_str::<RedactionConfig>("[defaults]\nunknown = 1").is_err());
    assert_eq!(
        config("[defaults.actions]\nSSN = \"drop\"")
            .defaults
            .actions["SSN"],
        Action::Drop
    );
}

#[test]
fn reports_and_errors_never_hold_values() {
    let redactor = DefaultRedactor::new();
    let (out, report) = redactor
        .redact_text(&scope("w"), "ssn 123-45-6789 key AKIAIOSFODNN7EXAMPLE")
        .unwrap();
    assert_eq!(out, "ssn [SSN] key [SECRET]");
    let shown = format!("{report:?} {}", serde_json::to_string(&report).unwrap());
    assert!(
        !shown.contains("6789") && !shown.contains("AKIA"),
        "{shown}"
    );
    let small = DefaultRedactor::builder().max_input(8).build().unwrap();
    let err = small
        .redact_text(&scope("w"), "123-45-6789 and more")
        .unwrap_err();
    assert!(!err.to_string().contains("6789"));
}

#[test]
fn redacting_json_twice_changes_nothing_more() {
    let redactor = DefaultRedactor::builder()
        .config(config(
            "[defaults.actions]\nSSN = \"partial\"\nNAME = \"token\"",
        ))
        .default_token_key(TokenKey::new(vec![3; 32]).unwrap())
        .build()
        .unwrap();
    let mut v = json!({"ssn": 123456789, "full_name": "Ana Lima", "notes": ["SSN 123-45-6789", {"dob": "1990-01-01"}]});
    redactor.redact_json(&scope("w"), &mut v).unwrap();
    let once = v.clone();
    let report = redactor.redact_json(&scope("w"), &mut v).unwrap();
    assert_eq!(v, once);
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(once["ssn"], "*****6789");
    assert!(once["full_name"].as_str().unwrap().starts_with("[NAME_"));
}

/// JSON written as text (a tool result's text block, JSON streamed as text deltas) is
/// redacted as text; the result must still parse, whatever the values end or start with.
#[test]
fn json_redacted_as_plain_text_stays_json() {
    let redactor = DefaultRedactor::new();
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
    let values = json!({
        // PEM blocks without an END line: the body runs up to the end of the string, and
        // ends in an escaped quote, an escaped backslash, or both.
        "quoted": format!("{pem}\" and more"),
        "backslash": format!("{pem}\\"),
        "both": format!("{pem}\\\""),
        "unicode": format!("{pem}\u{1}"),
        // Addresses right after an escape (`\n`, `\u0001`).
        "note": "Call\nbob@example.com",
        "control": "\u{1}jane.doe@example.org",
        // Values and keywords right after an escape's letter (`\n4111…`, `\nDOB`).
        "lines": "Paid with\n4111 1111 1111 1111\nDOB: 1985-03-12\tSSN 123-45-6789",
        // Numbers under sensitive keys.
        "ssn": 123456789,
        "mrn": 12345678,
        "inner": "{\"ssn\": 123456789}",
    });
    let text = values.to_string();
    let (redacted, report) = redactor.redact_text(&scope("w"), &text).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&redacted)
        .unwrap_or_else(|e| panic!("redacted JSON text does not parse ({e}): {redacted}"));
    for secret in [
        "MIIEvQ",
        "bob@example.com",
        "jane.doe",
        "123456789",
        "12345678",
        "4111",
        "1985",
        "6789",
    ] {
        assert!(!redacted.contains(secret), "{secret} survived: {redacted}");
    }
    assert_eq!(parsed["note"], "Call\n[EMAIL]");
    assert_eq!(parsed["control"], "\u{1}[EMAIL]");
    assert_eq!(parsed["lines"], "Paid with\n[CARD]\nDOB: [DOB]\tSSN [SSN]");
    assert_eq!(parsed["ssn"], "[SSN]");
    assert_eq!(parsed["mrn"], "[MRN]");
    assert_eq!(parsed["inner"], "{\"ssn\": \"[SSN]\"}");
    assert_eq!(parsed["quoted"], "[SECRET] and more");
    assert_eq!(report.count("SECRET"), 4);
    // And a second pass changes nothing.
    let (again, report) = redactor.redact_text(&scope("w"), &redacted).unwrap();
    assert_eq!(again, redacted);
    assert!(report.is_empty(), "{report:?}");
}
