//! A redactor made of named regular expressions, each replaced by `[NAME]`.
//!
//! Every pattern must have a bounded match length, so streaming can hold back a bounded
//! window. It is the simple redactor for tests and examples; the default redactor with
//! validated detectors builds on the same [`MatchFinder`] machinery.

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;

use super::stream::{HoldBackRedactor, MatchFinder, Span, redact_with};
use super::{RedactError, RedactionReport, RedactionScope, Redactor, StreamRedactor};

struct Pattern {
    entity: Arc<str>,
    regex: Regex,
    replacement: String,
    max_len: usize,
}

/// Finds the leftmost match among all patterns (ties: longest, then first declared).
struct PatternFinder {
    patterns: Vec<Pattern>,
    max_len: usize,
}

impl MatchFinder for PatternFinder {
    fn find(&self, haystack: &str, from: usize, spans: &mut Vec<Span>) {
        // Next match of each pattern at or after the scan position, recomputed only when
        // the scan has moved past its start.
        let mut next: Vec<Option<(usize, usize)>> = self
            .patterns
            .iter()
            .map(|p| {
                p.regex
                    .find_at(haystack, from)
                    .map(|m| (m.start(), m.end()))
            })
            .collect();
        let mut at = from;
        loop {
            let mut best: Option<(usize, usize, usize)> = None;
            for (i, candidate) in next.iter_mut().enumerate() {
                if let Some((start, _)) = *candidate
                    && start < at
                {
                    *candidate = self.patterns[i]
                        .regex
                        .find_at(haystack, at)
                        .map(|m| (m.start(), m.end()));
                }
                if let Some((start, end)) = *candidate {
                    let better = match best {
                        None => true,
                        Some((bs, be, _)) => start < bs || (start == bs && end > be),
                    };
                    if better {
                        best = Some((start, end, i));
                    }
                }
            }
            let Some((start, end, i)) = best else { return };
            let pattern = &self.patterns[i];
            spans.push(Span {
                start,
                end,
                entity: pattern.entity.clone(),
                replacement: pattern.replacement.clone(),
            });
            // An empty match cannot advance the scan; step over one char instead.
            at = if end > start {
                end
            } else {
                end + haystack[end..].chars().next().map_or(1, char::len_utf8)
            };
            if at > haystack.len() {
                return;
            }
        }
    }

    fn max_match_len(&self) -> usize {
        self.max_len
    }

    fn context_len(&self) -> usize {
        // Word boundaries look at most one char either side.
        4
    }
}

/// A redactor of named, bounded regular expressions.
#[derive(Clone)]
pub struct PatternRedactor {
    finder: Arc<PatternFinder>,
}

/// Builds a [`PatternRedactor`].
#[derive(Default)]
#[must_use]
pub struct PatternRedactorBuilder {
    patterns: Vec<Pattern>,
}

impl PatternRedactorBuilder {
    /// Adds a pattern whose matches become `[ENTITY]`.
    ///
    /// Fails when the pattern does not compile or can match unboundedly long text.
    pub fn pattern(mut self, entity: &str, regex: &str) -> Result<Self, RedactError> {
        let invalid = |message: String| RedactError::InvalidRule {
            name: entity.to_owned(),
            message,
        };
        let hir = regex_syntax::parse(regex).map_err(|e| invalid(e.to_string()))?;
        let max_len = hir
            .properties()
            .maximum_len()
            .ok_or_else(|| invalid("pattern can match unboundedly long text".into()))?;
        if hir.properties().minimum_len() == Some(0) {
            return Err(invalid("pattern can match empty text".into()));
        }
        let regex = Regex::new(regex).map_err(|e| invalid(e.to_string()))?;
        self.patterns.push(Pattern {
            entity: Arc::from(entity),
            regex,
            replacement: format!("[{entity}]"),
            max_len,
        });
        Ok(self)
    }

    /// Finishes the redactor.
    pub fn build(self) -> PatternRedactor {
        let max_len = self.patterns.iter().map(|p| p.max_len).max().unwrap_or(0);
        PatternRedactor {
            finder: Arc::new(PatternFinder {
                patterns: self.patterns,
                max_len,
            }),
        }
    }
}

impl PatternRedactor {
    /// Starts building a redactor.
    pub fn builder() -> PatternRedactorBuilder {
        PatternRedactorBuilder::default()
    }

    /// Emails, US SSNs and `sk-ant-` keys: enough for tests and examples.
    pub fn basic() -> Self {
        let build = || -> Result<Self, RedactError> {
            Ok(Self::builder()
                .pattern(
                    "EMAIL",
                    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}",
                )?
                .pattern("SSN", r"\b\d{3}-\d{2}-\d{4}\b")?
                .pattern("SECRET", r"sk-ant-[A-Za-z0-9_-]{8,200}")?
                .build())
        };
        match build() {
            Ok(redactor) => redactor,
            Err(e) => unreachable!("built-in patterns are valid: {e}"),
        }
    }
}

impl Redactor for PatternRedactor {
    fn redact_text<'a>(
        &self,
        _scope: &RedactionScope,
        text: &'a str,
    ) -> Result<(Cow<'a, str>, RedactionReport), RedactError> {
        Ok(redact_with(&*self.finder, text))
    }

    fn stream(&self, _scope: &RedactionScope) -> Result<Box<dyn StreamRedactor>, RedactError> {
        Ok(Box::new(HoldBackRedactor::new(self.finder.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::WorkspaceId;

    fn scope() -> RedactionScope {
        RedactionScope::new(WorkspaceId::new("w"))
    }

    fn streamed(r: &PatternRedactor, chunks: &[&str]) -> String {
        let mut s = r.stream(&scope()).unwrap();
        let mut out = String::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.flush(&mut out);
        out
    }

    #[test]
    fn masks_and_reports_without_values() {
        let r = PatternRedactor::basic();
        let (out, report) = r
            .redact_text(&scope(), "a@b.io 123-45-6789 sk-ant-abcdefgh12 x")
            .unwrap();
        assert_eq!(out, "[EMAIL] [SSN] [SECRET] x");
        assert_eq!(report.total(), 3);
        assert!(!format!("{report:?}").contains("123-45"));
    }

    #[test]
    fn clean_text_is_borrowed() {
        let (out, report) = PatternRedactor::basic()
            .redact_text(&scope(), "nothing here")
            .unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert!(report.is_empty());
    }

    #[test]
    fn unbounded_and_empty_patterns_are_refused() {
        assert!(PatternRedactor::builder().pattern("X", "a+").is_err());
        assert!(PatternRedactor::builder().pattern("X", "a?").is_err());
        assert!(PatternRedactor::builder().pattern("X", "(").is_err());
    }

    #[test]
    fn every_split_streams_like_one_shot() {
        let r = PatternRedactor::basic();
        let text = "Contact jane.doe@example.org or 078-05-1120; key sk-ant-api03-XYZ_abc-123 \
                    end. ünïcødé bob@x.co";
        let (whole, _) = r.redact_text(&scope(), text).unwrap();
        for i in 0..=text.len() {
            if !text.is_char_boundary(i) {
                continue;
            }
            for j in i..=text.len() {
                if !text.is_char_boundary(j) {
                    continue;
                }
                let got = streamed(&r, &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn long_streams_in_tiny_chunks_match_one_shot() {
        let r = PatternRedactor::basic();
        let text = "x".repeat(500) + " a@b.cd " + &"y 123-45-6789 ".repeat(40);
        let (whole, report) = r.redact_text(&scope(), &text).unwrap();
        let chunks: Vec<&str> = text
            .as_bytes()
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let mut s = r.stream(&scope()).unwrap();
        let mut out = String::new();
        for c in &chunks {
            s.push(c, &mut out);
        }
        s.flush(&mut out);
        assert_eq!(out, whole);
        assert_eq!(s.report(), &report);
    }
}
