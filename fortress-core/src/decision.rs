//! The outcome of a policy evaluation, with the reasons the audit trail needs.
//!
//! ```
//! use fortress_core::decision::Decision;
//!
//! let d = Decision::deny("v1").with_reason("no policy permits this call");
//! assert!(!d.is_allowed());
//! ```

use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The call may proceed.
    Allow,
    /// The call is refused.
    Deny,
}

/// A policy decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Human-readable reasons (safe for operators; may be withheld from callers).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Identifiers of the policies that determined the decision.
    #[serde(default)]
    pub policy_ids: Vec<String>,
    /// The version (content hash) of the policy set that decided.
    pub policy_version: String,
}

impl Decision {
    /// An allow decision by the given policy-set version.
    pub fn allow(policy_version: impl Into<String>) -> Self {
        Self {
            effect: Effect::Allow,
            reasons: Vec::new(),
            policy_ids: Vec::new(),
            policy_version: policy_version.into(),
        }
    }

    /// A deny decision by the given policy-set version.
    pub fn deny(policy_version: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            reasons: Vec::new(),
            policy_ids: Vec::new(),
            policy_version: policy_version.into(),
        }
    }

    /// Adds a reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }

    /// Adds the id of a determining policy.
    #[must_use]
    pub fn with_policy(mut self, id: impl Into<String>) -> Self {
        self.policy_ids.push(id.into());
        self
    }

    /// Whether the call may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}
