//! Values under sensitive keys written as JSON text (`"patient_name": "…"`, also with
//! escaped quotes), found from each `"`: the key up to the next quote is normalised and
//! looked up, so `patientName`, `patient-name` and `PATIENT_NAME` all count.

use std::collections::HashMap;
use std::sync::Arc;

use super::keyword::{MAX_KEY_LEN, json_value};
use super::{CONTEXT_LEN, Detector, Hit, better};

/// Finds values under sensitive keys in JSON text.
pub(crate) struct JsonKeyDetector {
    /// Normalised key → entity.
    pub(crate) keys: HashMap<String, Arc<str>>,
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ' | b'.')
}

impl Detector for JsonKeyDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut pos = at.saturating_sub(CONTEXT_LEN);
        let mut best: Option<Hit> = None;
        let mut key = String::with_capacity(MAX_KEY_LEN);
        while let Some(off) = memchr::memchr(b'"', &bytes[pos..]) {
            let quote = pos + off;
            pos = quote + 1;
            if best.as_ref().is_some_and(|b| quote >= b.start) {
                break;
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
            key.clear();
            key.extend(
                bytes[k..k + len]
                    .iter()
                    .filter(|b| !matches!(b, b'_' | b'-' | b' ' | b'.'))
                    .map(|b| char::from(b.to_ascii_lowercase())),
            );
            let Some(entity) = self.keys.get(&key) else {
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
