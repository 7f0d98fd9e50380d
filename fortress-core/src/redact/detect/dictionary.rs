//! Names from a workspace dictionary (patients, customers, staff), matched as whole
//! words, ignoring ASCII case, with one Aho-Corasick automaton.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

use super::{Detector, Hit, left_ok, right_ok};

/// Finds dictionary names.
pub(crate) struct DictionaryDetector {
    ac: AhoCorasick,
    max_len: usize,
    entity: Arc<str>,
}

impl DictionaryDetector {
    /// Builds the automaton; empty names are skipped.
    pub(crate) fn new(
        names: &[String],
        entity: Arc<str>,
    ) -> Result<Self, aho_corasick::BuildError> {
        let names: Vec<&str> = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        let max_len = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&names)?;
        Ok(Self {
            ac,
            max_len,
            entity,
        })
    }
}

impl Detector for DictionaryDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut pos = at;
        while pos < bytes.len() {
            let m = self.ac.find(Input::new(bytes).span(pos..bytes.len()))?;
            if left_ok(bytes, m.start()) && right_ok(bytes, m.end()) {
                return Some(Hit {
                    start: m.start(),
                    end: m.end(),
                    entity: self.entity.clone(),
                });
            }
            pos = m.start() + 1;
        }
        None
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}
