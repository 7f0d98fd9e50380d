//! Which workspaces opted in to *redacted* tool arguments in their audit events.
//!
//! By default an event carries tool arguments only as a keyed digest
//! (`arguments_digest`), so equal arguments can be correlated without being revealed. A
//! workspace may opt in to recording them as well, passed through the redactor first (PII
//! and secrets masked) — never raw. The set is shared, live, between the audit layer and
//! the dashboard's settings, and seeded from `[audit] redacted_arguments`.
//!
//! ```
//! use fortress_core::audit::arguments::RedactedArguments;
//!
//! let opt_in = RedactedArguments::new(["acme"]);
//! assert!(opt_in.is_enabled_for("acme"));
//! opt_in.replace(["globex"]);
//! assert!(!opt_in.is_enabled_for("acme"));
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// The live set of workspaces whose events record redacted tool arguments.
#[derive(Clone, Debug, Default)]
pub struct RedactedArguments {
    workspaces: Arc<RwLock<BTreeSet<String>>>,
}

impl RedactedArguments {
    /// Opts the given workspaces in.
    pub fn new<I, S>(workspaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let this = Self::default();
        this.replace(workspaces);
        this
    }

    /// Whether `workspace` opted in.
    pub fn is_enabled_for(&self, workspace: &str) -> bool {
        self.workspaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(workspace)
    }

    /// The workspaces that opted in.
    pub fn workspaces(&self) -> BTreeSet<String> {
        self.workspaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the whole set.
    pub fn replace<I, S>(&self, workspaces: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set = workspaces.into_iter().map(Into::into).collect();
        *self.workspaces.write().unwrap_or_else(|e| e.into_inner()) = set;
    }
}
