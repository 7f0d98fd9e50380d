//! Who is calling: a user or an application, its groups and its workspace.
//!
//! ```
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let alice = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["support"]);
//! assert!(alice.in_group("support"));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// The tenant a subject, credential or event belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    /// Wraps a workspace identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkspaceId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// Whether a subject is a person or a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A human user (an employee using an AI assistant).
    User,
    /// An application or service account.
    App,
}

impl SubjectKind {
    /// The name used in policies and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::App => "app",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// Stable identifier, unique within the workspace.
    pub id: String,
    /// User or app.
    pub kind: SubjectKind,
    /// The workspace (tenant) the subject belongs to.
    pub workspace: WorkspaceId,
    /// Group memberships (teams, roles) that policies refer to.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Subject {
    /// A human user with no groups.
    pub fn user(id: impl Into<String>, workspace: WorkspaceId) -> Self {
        Self {
            id: id.into(),
            kind: SubjectKind::User,
            workspace,
            groups: Vec::new(),
        }
    }

    /// An application with no groups.
    pub fn app(id: impl Into<String>, workspace: WorkspaceId) -> Self {
        Self {
            id: id.into(),
            kind: SubjectKind::App,
            workspace,
            groups: Vec::new(),
        }
    }

    /// Replaces the subject's groups.
    #[must_use]
    pub fn with_groups<I, G>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the subject is a member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
