//! The rate-limit configuration: `limits.toml`, loaded with the policy document set.
//!
//! Each `[[limit]]` table is one GCRA limit: `rate` calls `per` period, with an optional
//! `burst`, counted per `scope` key, optionally narrowed to some actions, connectors,
//! tools, models, groups or workspaces.
//!
//! ```
//! use fortress_core::guard::limits::{LimitScope, LimitsConfig};
//!
//! let config = LimitsConfig::from_toml(r#"
//!     [[limit]]
//!     id = "tool-calls-per-user"
//!     scope = "subject_tool"
//!     rate = 30
//!     per = "1m"
//!     burst = 5
//!     actions = ["tools/call"]
//! "#).unwrap();
//! assert_eq!(config.limits[0].scope, LimitScope::SubjectTool);
//! ```

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use crate::call::Call;

/// What a limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitScope {
    /// One bucket per subject (workspace + subject id).
    Subject,
    /// One bucket per subject and connector.
    SubjectConnector,
    /// One bucket per subject and tool (connector + resource id).
    SubjectTool,
    /// One bucket per workspace.
    Workspace,
}

/// Why a limits document was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// The TOML does not parse or does not have the expected shape.
    #[error("{message}")]
    Syntax {
        /// Byte offset of the problem in the document, when known.
        offset: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A limit is semantically wrong (zero rate, bad period, duplicate id).
    #[error("limit `{id}`: {message}")]
    Rule {
        /// The limit's id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// One configured limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// Unique id, used in denials, audit records and counter keys.
    pub id: String,
    /// What the limit counts by.
    pub scope: LimitScope,
    /// Calls allowed per `per`.
    pub rate: u32,
    /// The period: `"1s"`, `"30s"`, `"1m"`, `"1h"`, `"1d"`.
    pub per: String,
    /// Calls allowed at once after a quiet period (defaults to `rate`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Only calls with one of these action names (empty: all).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Only calls through one of these connectors (empty: all).
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Only calls on one of these tools, as `connector/tool` (empty: all).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Only calls for one of these models (empty: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Only subjects in one of these groups (empty: all).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only subjects of one of these workspaces (empty: all).
    #[serde(default)]
    pub workspaces: Vec<String>,
}

impl LimitRule {
    /// The time between two replenished cells.
    pub fn period(&self) -> Result<Duration, LimitsError> {
        let total = parse_period(&self.per)
            .ok_or_else(|| self.error("`per` must look like 30s, 1m, 1h or 1d"))?;
        if self.rate == 0 {
            return Err(self.error("`rate` must be at least 1"));
        }
        let each = total / self.rate;
        if each.is_zero() {
            return Err(self.error("`rate` is too high for `per`"));
        }
        Ok(each)
    }

    /// The burst size.
    pub fn burst(&self) -> Result<NonZeroU32, LimitsError> {
        NonZeroU32::new(self.burst.unwrap_or(self.rate))
            .ok_or_else(|| self.error("`burst` must be at least 1"))
    }

    /// Whether the limit applies to `call`.
    pub fn applies_to(&self, call: &Call) -> bool {
        fn any_or(list: &[String], value: Option<&str>) -> bool {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        }
        let tool = match (call.resource.kind, call.connector()) {
            (crate::call::ResourceKind::Tool, Some(connector)) => {
                Some(format!("{connector}/{}", call.resource.id))
            }
            _ => None,
        };
        let model = call
            .attributes
            .model
            .as_deref()
            .or((call.resource.kind == crate::call::ResourceKind::Model)
                .then_some(call.resource.id.as_str()));
        any_or(&self.actions, Some(call.action.as_str()))
            && any_or(&self.connectors, call.connector())
            && any_or(&self.tools, tool.as_deref())
            && any_or(&self.models, model)
            && any_or(&self.workspaces, Some(call.subject.workspace.as_str()))
            && (self.groups.is_empty() || self.groups.iter().any(|g| call.subject.in_group(g)))
    }

    /// The counter key of `call` under this limit, or `None` when the scope does not apply
    /// (for example a per-connector limit on a call without a connector).
    pub fn key_for(&self, call: &Call) -> Option<String> {
        let mut key = String::with_capacity(64);
        // Fields are separated by a byte that cannot appear in the ids we join.
        let _ = write!(key, "{}\u{1f}{}", self.id, call.subject.workspace);
        match self.scope {
            LimitScope::Workspace => {}
            LimitScope::Subject => {
                let _ = write!(key, "\u{1f}{}", call.subject.id);
            }
            LimitScope::SubjectConnector => {
                let _ = write!(key, "\u{1f}{}\u{1f}{}", call.subject.id, call.connector()?);
            }
            LimitScope::SubjectTool => {
                let _ = write!(
                    key,
                    "\u{1f}{}\u{1f}{}\u{1f}{}",
                    call.subject.id,
                    call.connector()?,
                    call.resource.id
                );
            }
        }
        Some(key)
    }

    fn error(&self, message: &str) -> LimitsError {
        LimitsError::Rule {
            id: self.id.clone(),
            message: message.to_owned(),
        }
    }
}

fn parse_period(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = if number.is_empty() {
        1
    } else {
        number.parse().ok()?
    };
    let seconds = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)).filter(|d| !d.is_zero()),
        "s" | "sec" | "second" | "seconds" => n,
        "m" | "min" | "minute" | "minutes" => n.checked_mul(60)?,
        "h" | "hour" | "hours" => n.checked_mul(3600)?,
        "d" | "day" | "days" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// The limits of a policy document set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The limits, each checked independently; a call must pass all that apply.
    #[serde(default, rename = "limit")]
    pub limits: Vec<LimitRule>,
}

impl LimitsConfig {
    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses and checks a `limits.toml` document.
    pub fn from_toml(text: &str) -> Result<Self, LimitsError> {
        let config: Self = toml::from_str(text).map_err(|e| LimitsError::Syntax {
            offset: e.span().map(|s| s.start),
            message: e.message().to_owned(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks every rule (periods, bursts, unique ids).
    pub fn check(&self) -> Result<(), LimitsError> {
        let mut seen = std::collections::HashSet::new();
        for rule in &self.limits {
            rule.period()?;
            rule.burst()?;
            if !seen.insert(rule.id.as_str()) {
                return Err(rule.error("duplicate limit id"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Action, Resource};
    use crate::subject::{Subject, WorkspaceId};

    #[test]
    fn periods_parse() {
        assert_eq!(parse_period("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_period("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_period("h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_period("0s"), None);
        assert_eq!(parse_period("5 fortnights"), None);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            LimitsConfig::from_toml("[[limit]]\nid = 1"),
            Err(LimitsError::Syntax {
                offset: Some(_),
                ..
            })
        ));
        let zero = "[[limit]]\nid='a'\nscope='subject'\nrate=0\nper='1s'";
        assert!(matches!(
            LimitsConfig::from_toml(zero),
            Err(LimitsError::Rule { .. })
        ));
        let dup = "[[limit]]\nid='a'\nscope='subject'\nrate=1\nper='1s'\n[[limit]]\nid='a'\nscope='workspace'\nrate=1\nper='1s'";
        assert!(matches!(
            LimitsConfig::from_toml(dup),
            Err(LimitsError::Rule { .. })
        ));
    }

    #[test]
    fn keys_and_filters() {
        let config = LimitsConfig::from_toml(
            "[[limit]]\nid='t'\nscope='subject_tool'\nrate=2\nper='1m'\nactions=['tools/call']\ngroups=['interns']",
        )
        .unwrap();
        let rule = &config.limits[0];
        let intern = Subject::user("bob", WorkspaceId::new("acme")).with_groups(["interns"]);
        let call = Call::new(
            intern,
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        );
        assert!(rule.applies_to(&call));
        assert_eq!(
            rule.key_for(&call).unwrap(),
            "t\u{1f}acme\u{1f}bob\u{1f}zendesk\u{1f}search"
        );
        let other = Call::new(
            Subject::user("eve", WorkspaceId::new("acme")),
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        );
        assert!(!rule.applies_to(&other));
        let model = Call::new(
            Subject::user("bob", WorkspaceId::new("acme")),
            Action::CreateMessage,
            Resource::model("m"),
        );
        assert!(rule.key_for(&model).is_none());
    }
}
