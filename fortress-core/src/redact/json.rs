//! JSON-aware redaction: walks a value, applies key rules to whole values, redacts inside
//! every other string, and drops fields whose entity's action is `drop`. Keys are never
//! changed and the result is always valid JSON.
//!
//! That covers MCP tool results (`content[].text`, `structuredContent`, embedded
//! `resource.text`) and Claude request and response bodies alike: they are JSON
//! documents whose sensitive parts are strings or values under sensitive keys.

use serde_json::Value;

use super::profile::Profile;
use super::stream::redact_with;
use super::{Action, RedactionReport};

/// What to do with a value after redacting it.
enum Fate {
    Keep,
    Drop,
}

/// Redacts `value` in place with `profile`.
pub(crate) fn redact_value(profile: &Profile, value: &mut Value, report: &mut RedactionReport) {
    if let Fate::Drop = walk(profile, value, report) {
        // A top-level value cannot be removed; empty it instead.
        *value = Value::Null;
    }
}

fn walk(profile: &Profile, value: &mut Value, report: &mut RedactionReport) -> Fate {
    match value {
        Value::String(s) => redact_string(profile, s, report),
        Value::Array(items) => {
            let mut drop = Vec::new();
            for (i, item) in items.iter_mut().enumerate() {
                if let Fate::Drop = walk(profile, item, report) {
                    drop.push(i);
                }
            }
            for i in drop.into_iter().rev() {
                items.remove(i);
            }
            Fate::Keep
        }
        Value::Object(map) => {
            let mut drop = Vec::new();
            for (key, item) in map.iter_mut() {
                let fate = match profile.key_entity(key) {
                    Some(entity) => apply_key_rule(profile, entity, item, report),
                    None => walk(profile, item, report),
                };
                if let Fate::Drop = fate {
                    drop.push(key.clone());
                }
            }
            for key in drop {
                map.remove(&key);
            }
            Fate::Keep
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Fate::Keep,
    }
}

fn redact_string(profile: &Profile, s: &mut String, report: &mut RedactionReport) -> Fate {
    let (out, found) = redact_with(&*profile.finder, s);
    if found.is_empty() {
        return Fate::Keep;
    }
    report.merge(&found);
    if found
        .counts()
        .keys()
        .any(|e| profile.finder.action(e) == Action::Drop)
    {
        return Fate::Drop;
    }
    *s = out.into_owned();
    Fate::Keep
}

/// The whole value under a sensitive key is the entity (strings and numbers); objects
/// and arrays under it are walked as usual.
fn apply_key_rule(
    profile: &Profile,
    entity: &str,
    item: &mut Value,
    report: &mut RedactionReport,
) -> Fate {
    let text = match item {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => return walk(profile, item, report),
        _ => return Fate::Keep,
    };
    // Already redacted (`[NAME]`, a token, stars): leave it, so redacting twice is a no-op.
    // A value without letters or digits identifies nobody (and `partial` would leave it
    // as it is, so a second pass could not tell it was handled): leave it too.
    if is_redacted(&text) || !text.chars().any(char::is_alphanumeric) {
        return Fate::Keep;
    }
    report.add(entity);
    let action = profile.finder.action(entity);
    if action == Action::Drop {
        return Fate::Drop;
    }
    *item = Value::String(action.replace(entity, &text, profile.finder.key()));
    Fate::Keep
}

/// Whether a value is already a replacement: `[ENTITY]`, `[ENTITY_hex]`, or starred.
fn is_redacted(text: &str) -> bool {
    let bracketed = text.len() >= 3
        && text.starts_with('[')
        && text.ends_with(']')
        && text[1..text.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let starred = text.contains('*') && text.chars().filter(|c| c.is_alphanumeric()).count() <= 4;
    bracketed || starred
}
