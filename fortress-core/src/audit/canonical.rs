//! The canonical encoding of an [`AuditEvent`]: the bytes that are stored and hashed.
//!
//! The encoding is the event's JSON form with every object's keys sorted and no
//! whitespace, so equal events always give equal bytes whatever order a `detail` map was
//! built in. The store keeps exactly these bytes; verification hashes the stored bytes and
//! never re-encodes, so a future change to the event type cannot break old chains.
//!
//! ```
//! use fortress_core::audit::{AuditEvent, EventKind, SubjectRef, canonical};
//! use fortress_core::subject::{SubjectKind, WorkspaceId};
//!
//! let actor = SubjectRef { id: "ops".into(), kind: SubjectKind::User };
//! let event = AuditEvent::activity(EventKind::Admin, WorkspaceId::new("acme"), actor, "policy.update", "policy:main");
//! let bytes = canonical::encode(&event).unwrap();
//! assert_eq!(canonical::decode(&bytes).unwrap(), event);
//! ```

use serde_json::Value;

use super::AuditEvent;

mod writer;

/// Encodes an event canonically (sorted keys, no whitespace).
///
/// The event is serialized straight into the output, sorting each object's members as it
/// closes, with no intermediate [`Value`] tree: encoding runs on every governed call.
pub fn encode(event: &AuditEvent) -> Result<String, serde_json::Error> {
    writer::to_string(event, 512)
}

/// Encodes any JSON value canonically (sorted keys at every level, no whitespace): the same
/// encoding, for other content-addressed records (e.g. pinned tool definitions).
pub fn encode_value(value: &Value) -> Result<String, serde_json::Error> {
    writer::to_string(value, 256)
}

/// Decodes stored canonical bytes back into an event.
pub fn decode(text: &str) -> Result<AuditEvent, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventKind, SubjectRef};
    use crate::subject::{SubjectKind, WorkspaceId};

    fn event() -> AuditEvent {
        AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("w"),
            SubjectRef {
                id: "u".into(),
                kind: SubjectKind::User,
            },
            "a",
            "r",
        )
    }

    #[test]
    fn key_order_of_detail_does_not_change_the_bytes() {
        let mut a = event();
        let mut b = a.clone();
        a.detail.insert(
            "x".into(),
            serde_json::json!({"z": 1, "a": [2, {"k": 1, "b": 2}]}),
        );
        let mut inner = serde_json::Map::new();
        inner.insert("a".into(), serde_json::json!([2, {"b": 2, "k": 1}]));
        inner.insert("z".into(), serde_json::json!(1));
        b.detail.insert("x".into(), Value::Object(inner));
        let (ea, eb) = (encode(&a).unwrap(), encode(&b).unwrap());
        assert_eq!(ea, eb);
        assert!(ea.contains(r#"{"a":[2,{"b":2,"k":1}],"z":1}"#));
        assert_eq!(decode(&ea).unwrap(), a);
    }

    /// The definition of the encoding: the event as a `Value` tree, every object's keys
    /// sorted, printed compactly. The streaming writer must give exactly these bytes, or
    /// bodies written before and after it would differ for equal events.
    fn reference(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    reference(item, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    reference(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    fn reference_encode<T: serde::Serialize>(value: &T) -> String {
        let mut out = String::new();
        reference(&serde_json::to_value(value).unwrap(), &mut out);
        out
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        // Keys and strings with escapes, control characters, non-ASCII and shared prefixes.
        let text = "[a-c\\\"\\\\\\x00-\\x1f\\u{e9}\\u{1F600}]{0,4}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text.prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text, inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn full_events_match_the_reference_encoding() {
        use crate::decision::Effect;
        let mut e = event();
        e.connector = Some("zen\"desk".into());
        e.model = Some("claude-\u{e9}".into());
        e.decision = Some(crate::audit::DecisionRecord {
            effect: Effect::Deny,
            reasons: vec!["a\nb".into(), String::new()],
            policy_ids: vec!["p1".into()],
            policy_version: "v7".into(),
        });
        e.outcome = crate::audit::Outcome::UpstreamError;
        e.denial = Some("forbidden".into());
        e.status = Some(502);
        e.latency_us = u64::MAX;
        e.redactions.insert("EMAIL".into(), 3);
        e.arguments_digest = Some("hmac-sha256:00".into());
        e.arguments = Some(serde_json::json!({"z": [1.5, null, {"y": "\u{1}"}], "a": true}));
        e.client_ip = Some("2001:db8::1".parse().unwrap());
        e.detail.insert("nan".into(), Value::from(f64::NAN));
        e.detail.insert("\u{e9}".into(), Value::from(-1));
        e.detail.insert("E".into(), serde_json::json!({}));
        assert_eq!(encode(&e).unwrap(), reference_encode(&e));
        let plain = event();
        assert_eq!(encode(&plain).unwrap(), reference_encode(&plain));
    }

    proptest::proptest! {
        #[test]
        fn any_value_matches_the_reference_encoding(value in any_value()) {
            let mut e = event();
            e.detail.insert("v".into(), value.clone());
            e.arguments = Some(value.clone());
            proptest::prop_assert_eq!(encode(&e).unwrap(), reference_encode(&e));
            proptest::prop_assert_eq!(encode_value(&value).unwrap(), reference_encode(&value));
        }
    }
}
