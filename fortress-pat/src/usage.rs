//! The usage tap: how the response path tells admission what a call really consumed.
//!
//! The PAT service puts a [`UsageTap`] in the request; the upstream client copies it to the
//! response; the body processing ([`crate::redaction::ClaudeBodyRedaction`]) reports the
//! usage it counted (from `message_start` and the cumulative `message_delta`, or from a
//! whole message) and whether the answer completed. Budgets reconcile from it.
//!
//! ```
//! use fortress_pat::api::Usage;
//! use fortress_pat::usage::UsageTap;
//!
//! let tap = UsageTap::new();
//! tap.report(Usage { input_tokens: 3, output_tokens: 5, ..Usage::default() }, true);
//! assert_eq!(tap.outcome().unwrap().0.output_tokens, 5);
//! ```

use std::sync::{Arc, Mutex};

use crate::api::Usage;

/// A shared slot for one call's final usage.
#[derive(Clone, Debug, Default)]
pub struct UsageTap(Arc<Mutex<Option<(Usage, bool)>>>);

impl UsageTap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the usage counted and whether the answer completed successfully.
    pub fn report(&self, usage: Usage, complete: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((usage, complete));
    }

    /// What was reported, if anything.
    pub fn outcome(&self) -> Option<(Usage, bool)> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
