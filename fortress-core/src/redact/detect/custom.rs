//! Workspace patterns: named regular expressions with a bounded match length.

use std::sync::Arc;

use regex::Regex;

use super::{Detector, Hit};

/// Finds one workspace pattern.
pub(crate) struct CustomDetector {
    pub(crate) regex: Regex,
    pub(crate) max_len: usize,
    pub(crate) entity: Arc<str>,
}

impl Detector for CustomDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let mut pos = at;
        while pos <= hay.len() {
            let m = self.regex.find_at(hay, pos)?;
            if m.end() > m.start() {
                return Some(Hit {
                    start: m.start(),
                    end: m.end(),
                    entity: self.entity.clone(),
                });
            }
            pos = m.end() + hay[m.end()..].chars().next().map_or(1, char::len_utf8);
        }
        None
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}
