//! Redaction: the [`Redactor`] trait, its report, the streaming machinery every redactor
//! shares, and a simple pattern-based redactor for tests and examples.
//!
//! A redactor masks PII and secrets in text and JSON. Each redaction returns a
//! [`RedactionReport`] — counts per entity type, never the values — for the audit event.
//! Streaming redaction ([`StreamRedactor`]) emits only text that no future chunk can turn
//! into a match, so any chunking gives byte-identical output to redacting the whole text.
//!
//! ```
//! use fortress_core::redact::{PatternRedactor, RedactionScope, Redactor};
//! use fortress_core::subject::WorkspaceId;
//!
//! let redactor = PatternRedactor::builder()
//!     .pattern("EMAIL", r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
//!     .unwrap()
//!     .build();
//! let scope = RedactionScope::new(WorkspaceId::new("acme"));
//! let (text, report) = redactor.redact_text(&scope, "mail bob@example.com now").unwrap();
//! assert_eq!(text, "mail [EMAIL] now");
//! assert_eq!(report.count("EMAIL"), 1);
//! ```

mod action;
mod config;
mod default;
pub(crate) mod detect;
pub mod entity;
mod json;
mod pattern;
mod profile;
mod stream;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::subject::WorkspaceId;

pub use action::{Action, TokenKey};
pub use config::{KeyRule, PatternRule, RedactionConfig, RuleSet, WorkspaceRules};
pub use default::{DefaultRedactor, DefaultRedactorBuilder, Detection};
pub use pattern::{PatternRedactor, PatternRedactorBuilder};
pub use stream::{HoldBackRedactor, MatchFinder, Span, redact_with};

/// Whose rules apply: redaction is configurable per workspace and per connector or model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RedactionScope {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The connector the content came from or goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The Claude model involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl RedactionScope {
    /// Workspace-wide rules.
    pub fn new(workspace: WorkspaceId) -> Self {
        Self {
            workspace,
            connector: None,
            model: None,
        }
    }

    /// The scope of a governed call.
    pub fn of_call(call: &crate::call::Call) -> Self {
        Self {
            workspace: call.subject.workspace.clone(),
            connector: call.resource.connector.clone(),
            model: call.attributes.model.clone(),
        }
    }
}

/// How many values of each entity type were redacted. Never holds the values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedactionReport {
    counts: BTreeMap<String, u64>,
}

impl RedactionReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one redaction of `entity`.
    pub fn add(&mut self, entity: &str) {
        self.add_n(entity, 1);
    }

    /// Counts `n` redactions of `entity`.
    pub fn add_n(&mut self, entity: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.counts.get_mut(entity) {
            Some(count) => *count += n,
            None => {
                self.counts.insert(entity.to_owned(), n);
            }
        }
    }

    /// Adds another report's counts.
    pub fn merge(&mut self, other: &RedactionReport) {
        for (entity, n) in &other.counts {
            self.add_n(entity, *n);
        }
    }

    /// How many values of `entity` were redacted.
    pub fn count(&self, entity: &str) -> u64 {
        self.counts.get(entity).copied().unwrap_or(0)
    }

    /// Total redactions.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Counts by entity type.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }
}

/// Why redaction could not run. Callers fail closed: content is not passed unredacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedactError {
    /// A pattern or rule is invalid.
    #[error("invalid redaction rule {name:?}: {message}")]
    InvalidRule {
        /// The rule's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The content cannot be redacted (for example a JSON body that does not parse when
    /// JSON was required).
    #[error("content cannot be redacted: {0}")]
    Content(String),
    /// The content is larger than the redactor accepts.
    #[error("content of {size} bytes exceeds the redaction limit of {limit} bytes")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// Limit.
        limit: usize,
    },
}

/// Masks PII and secrets.
pub trait Redactor: Send + Sync + 'static {
    /// Redacts a whole text. Borrows when nothing changes.
    fn redact_text<'a>(
        &self,
        scope: &RedactionScope,
        text: &'a str,
    ) -> Result<(Cow<'a, str>, RedactionReport), RedactError>;

    /// Redacts inside a JSON value in place, never breaking its structure.
    ///
    /// The default redacts every string (keys are left alone); redactors with key-based
    /// rules override it.
    fn redact_json(
        &self,
        scope: &RedactionScope,
        value: &mut serde_json::Value,
    ) -> Result<RedactionReport, RedactError> {
        let mut report = RedactionReport::new();
        redact_json_strings(self, scope, value, &mut report)?;
        Ok(report)
    }

    /// Starts a streaming redaction of one text stream.
    fn stream(&self, scope: &RedactionScope) -> Result<Box<dyn StreamRedactor>, RedactError>;
}

/// Redacts a text that arrives in chunks.
///
/// Invariant: for any split of a text into chunks, the concatenation of everything
/// emitted by `push` and `flush` equals the one-shot [`Redactor::redact_text`] output.
pub trait StreamRedactor: Send {
    /// Adds a chunk; appends to `out` only text that no later chunk can change.
    fn push(&mut self, chunk: &str, out: &mut String);

    /// Ends the current text (at end of stream or before a non-text event): appends
    /// everything held back. Text pushed afterwards is a new, independent text.
    fn flush(&mut self, out: &mut String);

    /// What has been redacted so far.
    fn report(&self) -> &RedactionReport;
}

impl<R: Redactor + ?Sized> Redactor for Arc<R> {
    fn redact_text<'a>(
        &self,
        scope: &RedactionScope,
        text: &'a str,
    ) -> Result<(Cow<'a, str>, RedactionReport), RedactError> {
        (**self).redact_text(scope, text)
    }

    fn redact_json(
        &self,
        scope: &RedactionScope,
        value: &mut serde_json::Value,
    ) -> Result<RedactionReport, RedactError> {
        (**self).redact_json(scope, value)
    }

    fn stream(&self, scope: &RedactionScope) -> Result<Box<dyn StreamRedactor>, RedactError> {
        (**self).stream(scope)
    }
}

/// Walks a JSON value and redacts every string in it with `redact_text`.
pub fn redact_json_strings<R: Redactor + ?Sized>(
    redactor: &R,
    scope: &RedactionScope,
    value: &mut serde_json::Value,
    report: &mut RedactionReport,
) -> Result<(), RedactError> {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let (redacted, found) = redactor.redact_text(scope, s)?;
            if let Cow::Owned(new) = redacted {
                *s = new;
            }
            report.merge(&found);
        }
        Value::Array(items) => {
            for item in items {
                redact_json_strings(redactor, scope, item, report)?;
            }
        }
        Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                redact_json_strings(redactor, scope, item, report)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}
