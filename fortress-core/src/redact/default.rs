//! The default [`Redactor`]: validated detectors, per-scope actions and rules, JSON-aware
//! walking, and streaming through the shared hold-back machinery.
//!
//! ```
//! use fortress_core::redact::{DefaultRedactor, RedactionConfig, RedactionScope, Redactor, TokenKey};
//! use fortress_core::subject::WorkspaceId;
//!
//! let config: RedactionConfig = toml::from_str(r#"
//!     [workspaces.acme.rules.actions]
//!     EMAIL = "token"
//!     CARD = "partial"
//! "#).unwrap();
//! let redactor = DefaultRedactor::builder()
//!     .config(config)
//!     .token_key("acme", TokenKey::new(vec![7; 32]).unwrap())
//!     .build()
//!     .unwrap();
//! let scope = RedactionScope::new(WorkspaceId::new("acme"));
//! let (text, report) = redactor
//!     .redact_text(&scope, "card 4111 1111 1111 1111, SSN 123-45-6789, mail bob@example.com")
//!     .unwrap();
//! assert!(text.starts_with("card **** **** **** 1111, SSN [SSN], mail [EMAIL_"));
//! assert_eq!(report.count("CARD") + report.count("SSN") + report.count("EMAIL"), 3);
//!
//! let mut body = serde_json::json!({"patient_name": "Jane Roe", "note": "MRN: 00123456"});
//! redactor.redact_json(&scope, &mut body).unwrap();
//! assert_eq!(body, serde_json::json!({"patient_name": "[NAME]", "note": "MRN: [MRN]"}));
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::config::{RedactionConfig, RuleSet};
use super::json::redact_value;
use super::profile::Profile;
use super::stream::{HoldBackRedactor, MatchFinder, redact_with};
use super::{RedactError, RedactionReport, RedactionScope, Redactor, StreamRedactor, TokenKey};

/// Which layers apply to a scope: the workspace (if configured), and its connector and
/// model overrides (if configured).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LayerKey {
    workspace: Option<String>,
    connector: Option<String>,
    model: Option<String>,
}

/// Where a value was found: byte offsets and entity type, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// The entity type.
    pub entity: String,
}

/// The default redactor. Cheap to clone.
#[derive(Clone)]
pub struct DefaultRedactor {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedactionConfig,
    keys: BTreeMap<String, TokenKey>,
    default_key: Option<TokenKey>,
    max_input: usize,
    /// Compiled scopes. Bounded: keys come only from configured names.
    profiles: RwLock<HashMap<LayerKey, Arc<Profile>>>,
}

/// Builds a [`DefaultRedactor`].
#[derive(Default)]
#[must_use]
pub struct DefaultRedactorBuilder {
    config: RedactionConfig,
    keys: BTreeMap<String, TokenKey>,
    default_key: Option<TokenKey>,
    max_input: Option<usize>,
}

impl DefaultRedactorBuilder {
    /// Uses this configuration (the default masks every built-in entity).
    pub fn config(mut self, config: RedactionConfig) -> Self {
        self.config = config;
        self
    }

    /// The token key of one workspace.
    pub fn token_key(mut self, workspace: impl Into<String>, key: TokenKey) -> Self {
        self.keys.insert(workspace.into(), key);
        self
    }

    /// The token key of workspaces without their own.
    pub fn default_token_key(mut self, key: TokenKey) -> Self {
        self.default_key = Some(key);
        self
    }

    /// The largest text or JSON string redacted at once (default 64 MiB); larger content
    /// fails closed.
    pub fn max_input(mut self, bytes: usize) -> Self {
        self.max_input = Some(bytes);
        self
    }

    /// Compiles every configured scope, so a bad rule fails here rather than per call.
    pub fn build(self) -> Result<DefaultRedactor, RedactError> {
        let redactor = DefaultRedactor {
            inner: Arc::new(Inner {
                config: self.config,
                keys: self.keys,
                default_key: self.default_key,
                max_input: self.max_input.unwrap_or(64 << 20),
                profiles: RwLock::new(HashMap::new()),
            }),
        };
        let config = &redactor.inner.config;
        redactor.profile_for(LayerKey {
            workspace: None,
            connector: None,
            model: None,
        })?;
        for (workspace, rules) in &config.workspaces {
            let ws = Some(workspace.clone());
            redactor.profile_for(LayerKey {
                workspace: ws.clone(),
                connector: None,
                model: None,
            })?;
            for connector in rules.connectors.keys() {
                redactor.profile_for(LayerKey {
                    workspace: ws.clone(),
                    connector: Some(connector.clone()),
                    model: None,
                })?;
            }
            for model in rules.models.keys() {
                redactor.profile_for(LayerKey {
                    workspace: ws.clone(),
                    connector: None,
                    model: Some(model.clone()),
                })?;
            }
        }
        Ok(redactor)
    }
}

impl Default for DefaultRedactor {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultRedactor {
    /// Masks every built-in entity type, for every workspace.
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(redactor) => redactor,
            Err(e) => unreachable!("the built-in rules compile: {e}"),
        }
    }

    /// Starts building a redactor.
    pub fn builder() -> DefaultRedactorBuilder {
        DefaultRedactorBuilder::default()
    }

    fn layer_key(&self, scope: &RedactionScope) -> LayerKey {
        let config = &self.inner.config;
        match config.workspaces.get(scope.workspace.as_str()) {
            None => LayerKey {
                workspace: None,
                connector: None,
                model: None,
            },
            Some(rules) => LayerKey {
                workspace: Some(scope.workspace.as_str().to_owned()),
                connector: scope
                    .connector
                    .clone()
                    .filter(|c| rules.connectors.contains_key(c)),
                model: scope.model.clone().filter(|m| rules.models.contains_key(m)),
            },
        }
    }

    fn profile(&self, scope: &RedactionScope) -> Result<Arc<Profile>, RedactError> {
        self.profile_for(self.layer_key(scope))
    }

    fn profile_for(&self, key: LayerKey) -> Result<Arc<Profile>, RedactError> {
        if let Some(profile) = self
            .inner
            .profiles
            .read()
            .ok()
            .and_then(|p| p.get(&key).cloned())
        {
            return Ok(profile);
        }
        let config = &self.inner.config;
        let mut rules = RuleSet::default();
        rules.layer(&config.defaults);
        let mut token_key = self.inner.default_key.clone();
        if let Some(workspace) = &key.workspace {
            if let Some(ws) = config.workspaces.get(workspace) {
                rules.layer(&ws.rules);
                if let Some(connector) = key.connector.as_ref().and_then(|c| ws.connectors.get(c)) {
                    rules.layer(connector);
                }
                if let Some(model) = key.model.as_ref().and_then(|m| ws.models.get(m)) {
                    rules.layer(model);
                }
            }
            if let Some(k) = self.inner.keys.get(workspace) {
                token_key = Some(k.clone());
            }
        }
        let profile = Arc::new(Profile::compile(&rules, token_key)?);
        if let Ok(mut profiles) = self.inner.profiles.write() {
            profiles.entry(key).or_insert_with(|| profile.clone());
        }
        Ok(profile)
    }

    /// Where each value would be redacted in `text`: offsets and entity types, never the
    /// values. For previews and evaluation.
    pub fn detect(
        &self,
        scope: &RedactionScope,
        text: &str,
    ) -> Result<Vec<Detection>, RedactError> {
        self.check_size(text.len())?;
        let profile = self.profile(scope)?;
        let mut spans = Vec::new();
        profile.finder.find(text, 0, &mut spans);
        Ok(spans
            .into_iter()
            .map(|s| Detection {
                start: s.start,
                end: s.end,
                entity: s.entity.to_string(),
            })
            .collect())
    }

    fn check_size(&self, size: usize) -> Result<(), RedactError> {
        if size > self.inner.max_input {
            return Err(RedactError::TooLarge {
                size,
                limit: self.inner.max_input,
            });
        }
        Ok(())
    }
}

impl Redactor for DefaultRedactor {
    fn redact_text<'a>(
        &self,
        scope: &RedactionScope,
        text: &'a str,
    ) -> Result<(Cow<'a, str>, RedactionReport), RedactError> {
        self.check_size(text.len())?;
        let profile = self.profile(scope)?;
        Ok(redact_with(&*profile.finder, text))
    }

    fn redact_json(
        &self,
        scope: &RedactionScope,
        value: &mut serde_json::Value,
    ) -> Result<RedactionReport, RedactError> {
        let profile = self.profile(scope)?;
        let mut report = RedactionReport::new();
        redact_value(&profile, value, &mut report);
        Ok(report)
    }

    fn stream(&self, scope: &RedactionScope) -> Result<Box<dyn StreamRedactor>, RedactError> {
        let profile = self.profile(scope)?;
        Ok(Box::new(HoldBackRedactor::new(profile.finder.clone())))
    }
}
