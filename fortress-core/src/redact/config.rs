//! Redaction configuration: defaults, per-workspace rules, and per-connector and per-model
//! overrides, deserialisable from TOML or JSON.
//!
//! Rules layer: built-in defaults, then `defaults`, then the workspace's `rules`, then the
//! connector's, then the model's. A later layer overrides actions entity by entity and
//! adds patterns, key rules, dictionary names and MRN formats.
//!
//! ```
//! use fortress_core::redact::{Action, RedactionConfig};
//!
//! let config: RedactionConfig = toml::from_str(r#"
//!     [defaults.actions]
//!     CARD = "partial"
//!
//!     [workspaces.clinic.rules]
//!     actions = { NAME = "token", IP = "allow" }
//!     names = ["Jane Roe"]
//!     mrn_formats = ['[A-Z]{2}\d{6}']
//!     keys = [{ key = "guardian", entity = "NAME" }]
//!     patterns = [{ entity = "EMPLOYEE_ID", regex = 'EMP-\d{6}' }]
//!
//!     [workspaces.clinic.connectors.zendesk.actions]
//!     EMAIL = "drop"
//! "#).unwrap();
//! assert_eq!(config.defaults.actions["CARD"], Action::Partial);
//! assert!(config.workspaces["clinic"].connectors.contains_key("zendesk"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Action;

/// The whole redaction configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Rules for every workspace (and the only rules of workspaces not listed).
    pub defaults: RuleSet,
    /// Rules by workspace id.
    pub workspaces: BTreeMap<String, WorkspaceRules>,
}

/// One workspace's rules and its overrides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceRules {
    /// Rules for the whole workspace.
    pub rules: RuleSet,
    /// Overrides for content from or to a connector, by connector name.
    pub connectors: BTreeMap<String, RuleSet>,
    /// Overrides for calls involving a Claude model, by model name.
    pub models: BTreeMap<String, RuleSet>,
}

/// A layer of rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSet {
    /// Action per entity type (`EMAIL`, `CARD`, … or a custom entity). Unlisted entities
    /// are masked; `allow` turns detection of that entity off.
    pub actions: BTreeMap<String, Action>,
    /// Workspace patterns: extra entity types found by regular expression.
    pub patterns: Vec<PatternRule>,
    /// Key rules: the whole value under a JSON key is an entity.
    pub keys: Vec<KeyRule>,
    /// Dictionary names (patients, customers), found as whole words ignoring ASCII case.
    pub names: Vec<String>,
    /// Extra medical-record-number formats (regular expressions for the value after
    /// "MRN"/"medical record"), in addition to the built-in `[A-Z]{0,3}-?\d{6,10}`.
    pub mrn_formats: Vec<String>,
}

/// A workspace pattern.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    /// The entity type it finds (`A-Z`, `0-9`, `_`).
    pub entity: String,
    /// A regular expression with a bounded match length (at most 1024 bytes).
    pub regex: String,
}

/// A key rule: values under `key` (compared ignoring case, `_`, `-` and spaces, so
/// `patient_name` also covers `patientName`) are `entity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRule {
    /// The JSON key.
    pub key: String,
    /// The entity type of its value.
    pub entity: String,
}

impl RuleSet {
    /// Lays `over` on top of `self`.
    pub fn layer(&mut self, over: &RuleSet) {
        for (entity, action) in &over.actions {
            self.actions.insert(entity.clone(), *action);
        }
        self.patterns.extend(over.patterns.iter().cloned());
        self.keys.extend(over.keys.iter().cloned());
        self.names.extend(over.names.iter().cloned());
        self.mrn_formats.extend(over.mrn_formats.iter().cloned());
    }
}

/// Normalises a JSON key for key rules: lowercase, without `_`, `-`, `.` and spaces.
pub(crate) fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}
