//! Values under sensitive keys written as JSON text (`"patient_name": "…"`, also with
//! escaped quotes), found from each `"`: the key up to the next quote is normalised and
//! looked up, so `patientName`, `patient-name` and `PATIENT_NAME` all count.

use std::collections::HashMap;
use std::sync::Arc;

use super::keyword::{MAX_KEY_LEN, json_value};
use super::{CONTEXT_LEN, Detector, Hit, better};
use crate::redact::config::normalise_key;

/// Key rules by normalised key (case-folded, without `_`, `-`, `.` and spaces). ASCII keys,
/// which is nearly all of them, are normalised on the stack: a lookup never allocates.
#[derive(Clone, Default)]
pub(crate) struct KeyRules {
    by_key: HashMap<String, Arc<str>>,
}

impl KeyRules {
    /// Adds a rule.
    pub(crate) fn insert(&mut self, key: &str, entity: Arc<str>) {
        self.by_key.insert(normalise_key(key), entity);
    }

    /// Whether there are no rules.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The entity of a key, if a rule names it.
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<str>> {
        if key.is_ascii() {
            if let Some(found) = self.get_ascii(key.as_bytes()) {
                return found;
            }
        }
        self.by_key.get(&normalise_key(key))
    }

    /// The entity of an ASCII key; `None` if the key is too long to normalise on the
    /// stack (the caller then normalises it the slow way).
    fn get_ascii(&self, key: &[u8]) -> Option<Option<&Arc<str>>> {
        let mut buf = [0u8; 128];
        let mut n = 0;
        for &b in key {
            if matches!(b, b'_' | b'-' | b' ' | b'.') {
                continue;
            }
            *buf.get_mut(n)? = b.to_ascii_lowercase();
            n += 1;
        }
        let key = std::str::from_utf8(&buf[..n]).ok()?;
        Some(self.by_key.get(key))
    }
}

/// Finds values under sensitive keys in JSON text.
pub(crate) struct JsonKeyDetector {
    pub(crate) keys: KeyRules,
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ' | b'.')
}

/// Whether a `"` after this byte closes a string rather than opening a key: a key's quote
/// follows `{`, `,`, a space or an escape, never a value's last character. This also keeps
/// the closing quote of a quoted replacement (`"[MRN]"`) from opening a key over the text
/// after it, which would make a second pass redact what the first left alone.
fn closes_a_string(before: u8) -> bool {
    before.is_ascii_alphanumeric() || before == b']'
}

impl Detector for JsonKeyDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut pos = at.saturating_sub(CONTEXT_LEN);
        let mut best: Option<Hit> = None;
        while let Some(off) = memchr::memchr(b'"', &bytes[pos..]) {
            let quote = pos + off;
            pos = quote + 1;
            if best.as_ref().is_some_and(|b| quote >= b.start) {
                break;
            }
            if quote > 0 && closes_a_string(bytes[quote - 1]) {
                continue;
            }
            let k = quote + 1;
            let len = bytes[k..]
                .iter()
                .take(MAX_KEY_LEN + 1)
                .take_while(|&&b| key_char(b))
                .count();
            if len == 0 || len > MAX_KEY_LEN {
                continue;
            }
            // Key characters are ASCII, so the key fits the stack buffer.
            let Some(Some(entity)) = self.keys.get_ascii(&bytes[k..k + len]) else {
                continue;
            };
            if let Some((v, end)) = json_value(bytes, k, k + len) {
                if v >= at && end > v {
                    best = better(
                        best,
                        Hit {
                            start: v,
                            end,
                            entity: entity.clone(),
                        },
                    );
                }
            }
        }
        best
    }

    fn max_len(&self) -> usize {
        256
    }
}
