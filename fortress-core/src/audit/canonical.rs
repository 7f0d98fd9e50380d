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

/// Encodes an event canonically (sorted keys, no whitespace).
pub fn encode(event: &AuditEvent) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(event)?;
    let mut out = String::with_capacity(512);
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Encodes any JSON value canonically (sorted keys at every level, no whitespace): the same
/// encoding, for other content-addressed records (e.g. pinned tool definitions).
pub fn encode_value(value: &Value) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Decodes stored canonical bytes back into an event.
pub fn decode(text: &str) -> Result<AuditEvent, serde_json::Error> {
    serde_json::from_str(text)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                write_value(item, out)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
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
}
