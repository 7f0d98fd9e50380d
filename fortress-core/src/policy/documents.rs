//! A policy document set: the `.cedar` policy files, optional `.cedarschema` fragments and an
//! optional `limits.toml`, read as one unit and versioned by a content hash.
//!
//! ```
//! use fortress_core::policy::documents::PolicyDocuments;
//!
//! let docs = PolicyDocuments::new()
//!     .with_policies("main.cedar", "permit(principal, action, resource);");
//! assert_eq!(docs.version().len(), 16);
//! ```

use std::path::Path;

use sha2::{Digest, Sha256};

use super::PolicyError;

/// What a document holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DocumentKind {
    /// Cedar policies (`*.cedar`).
    Policies,
    /// A Cedar schema fragment extending the Fortress schema (`*.cedarschema`).
    Schema,
    /// Rate-limit configuration (`limits.toml`).
    Limits,
}

/// One document of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// File name, used in policy ids and error messages.
    pub name: String,
    /// What it holds.
    pub kind: DocumentKind,
    /// Its text.
    pub text: String,
}

/// The documents that make one policy set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDocuments {
    documents: Vec<Document>,
}

/// The file name of the limits document in a policy directory.
pub const LIMITS_FILE: &str = "limits.toml";

impl PolicyDocuments {
    /// An empty set (which denies everything once compiled).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a document.
    #[must_use]
    pub fn with(
        mut self,
        kind: DocumentKind,
        name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        self.documents.push(Document {
            name: name.into(),
            kind,
            text: text.into(),
        });
        self.documents
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        self
    }

    /// Adds a Cedar policy file.
    #[must_use]
    pub fn with_policies(self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.with(DocumentKind::Policies, name, text)
    }

    /// Adds a schema fragment.
    #[must_use]
    pub fn with_schema(self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.with(DocumentKind::Schema, name, text)
    }

    /// Adds the limits document.
    #[must_use]
    pub fn with_limits(self, text: impl Into<String>) -> Self {
        self.with(DocumentKind::Limits, LIMITS_FILE, text)
    }

    /// Reads `*.cedar`, `*.cedarschema` and `limits.toml` from a directory (not recursive).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::Backend(Box::new(e)))?;
        let mut docs = Self::new();
        for entry in entries {
            let entry = entry.map_err(|e| PolicyError::Backend(Box::new(e)))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let kind = if name == LIMITS_FILE {
                DocumentKind::Limits
            } else if name.ends_with(".cedarschema") {
                DocumentKind::Schema
            } else if name.ends_with(".cedar") {
                DocumentKind::Policies
            } else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| PolicyError::Backend(Box::new(e)))?;
            docs = docs.with(kind, name, text);
        }
        Ok(docs)
    }

    /// The documents, sorted by kind and name.
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// The documents of one kind.
    pub fn of_kind(&self, kind: DocumentKind) -> impl Iterator<Item = &Document> {
        self.documents.iter().filter(move |d| d.kind == kind)
    }

    /// The content hash of the set: the first 8 bytes of a SHA-256 over every document's
    /// kind, name and text, in hex. Equal sets have equal versions whatever their origin.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for doc in &self.documents {
            hasher.update([doc.kind as u8]);
            hasher.update((doc.name.len() as u64).to_le_bytes());
            hasher.update(doc.name.as_bytes());
            hasher.update((doc.text.len() as u64).to_le_bytes());
            hasher.update(doc.text.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    }
}

/// The 1-based line and column of a byte offset in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// An `Invalid` error located at `offset` in document `name`.
pub(crate) fn invalid_at(
    name: &str,
    text: &str,
    offset: Option<usize>,
    message: impl std::fmt::Display,
) -> PolicyError {
    let (line, column) = offset.map_or((1, 1), |o| line_column(text, o));
    PolicyError::Invalid {
        line,
        column,
        message: format!("{name}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
    }

    #[test]
    fn version_depends_on_content_not_order() {
        let a = PolicyDocuments::new()
            .with_policies("a.cedar", "x")
            .with_policies("b.cedar", "y");
        let b = PolicyDocuments::new()
            .with_policies("b.cedar", "y")
            .with_policies("a.cedar", "x");
        let c = PolicyDocuments::new()
            .with_policies("a.cedar", "x")
            .with_policies("b.cedar", "z");
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
    }

    #[test]
    fn reads_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit(principal, action, resource);",
        )
        .unwrap();
        std::fs::write(dir.path().join("limits.toml"), "").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let docs = PolicyDocuments::from_dir(dir.path()).unwrap();
        let kinds: Vec<_> = docs.documents().iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [DocumentKind::Policies, DocumentKind::Limits]);
    }
}
