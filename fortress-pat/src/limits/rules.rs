//! What the ledger enforces: budgets per scope and window, per-minute rates, and who a
//! call counts against.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use fortress_core::call::Call;
use serde::{Deserialize, Serialize};

use super::prices::PriceTable;

/// Whose consumption a limit counts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Per gateway key.
    #[default]
    Key,
    /// Per user (subject).
    User,
    /// Per team.
    Team,
    /// Per workspace.
    Workspace,
}

impl Scope {
    /// The name used in configuration and shared-store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::User => "user",
            Self::Team => "team",
            Self::Workspace => "workspace",
        }
    }
}

/// A budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl Window {
    /// The name used in shared-store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The period containing `now`: `YYYY-MM-DD` or `YYYY-MM`.
    pub fn period(self, now: DateTime<Utc>) -> String {
        match self {
            Self::Day => now.format("%Y-%m-%d").to_string(),
            Self::Month => now.format("%Y-%m").to_string(),
        }
    }

    /// Whether a metering day (`YYYY-MM-DD`) falls in `period`.
    pub(crate) fn contains(self, period: &str, day: &str) -> bool {
        match self {
            Self::Day => day == period,
            Self::Month => day.starts_with(period),
        }
    }

    /// Time left until the period containing `now` ends.
    pub fn until_reset(self, now: DateTime<Utc>) -> Duration {
        let date = now.date_naive();
        let next = match self {
            Self::Day => date.succ_opt(),
            Self::Month => {
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
            }
        };
        next.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Utc.from_utc_datetime(&t) - now)
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(60))
    }
}

/// A token and/or USD budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetRule {
    /// Whose.
    pub scope: Scope,
    /// Which period.
    pub window: Window,
    /// Token cap (input of all kinds + output).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// USD cap.
    #[serde(default)]
    pub max_usd: Option<f64>,
}

impl BudgetRule {
    /// The USD cap in micro-USD.
    pub fn max_micros(&self) -> Option<u64> {
        self.max_usd.map(|usd| (usd * 1e6).floor() as u64)
    }
}

/// Per-minute rate limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateRule {
    /// Whose.
    pub scope: Scope,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute.
    #[serde(default)]
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    #[serde(default)]
    pub output_tokens_per_minute: Option<u64>,
}

/// Everything the ledger enforces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// Budgets.
    #[serde(default)]
    pub budgets: Vec<BudgetRule>,
    /// Rate limits.
    #[serde(default)]
    pub rates: Vec<RateRule>,
    /// Prices.
    #[serde(default)]
    pub prices: PriceTable,
    /// Request bytes per input token in the admission estimate (1 bounds any text).
    #[serde(default = "one")]
    pub input_bytes_per_token: u64,
}

fn one() -> u64 {
    1
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            budgets: Vec::new(),
            rates: Vec::new(),
            prices: PriceTable::default(),
            input_bytes_per_token: 1,
        }
    }
}

/// The gateway key id attribute the PAT service sets on each call.
pub const KEY_ATTRIBUTE: &str = "key_id";
/// The team attribute.
pub const TEAM_ATTRIBUTE: &str = "team";
/// The requests of a batch being created: `[{"model", "max_tokens"}, …]`.
pub const BATCH_REQUESTS_ATTRIBUTE: &str = "batch_requests";
/// The request-size attribute (bytes) the input estimate is made from.
pub const BODY_BYTES_ATTRIBUTE: &str = "body_bytes";

/// Who a call counts against, in every scope (empty: unknown, e.g. a user without team).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// Workspace.
    pub workspace: String,
    /// Gateway key id.
    pub key: String,
    /// User (subject id).
    pub user: String,
    /// Team.
    pub team: String,
}

impl Principal {
    /// The principal of a described call.
    pub fn of(call: &Call) -> Self {
        let attribute = |name: &str| {
            call.attributes
                .extra
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            workspace: call.subject.workspace.as_str().to_owned(),
            key: attribute(KEY_ATTRIBUTE),
            user: call.subject.id.clone(),
            team: attribute(TEAM_ATTRIBUTE),
        }
    }

    /// The id counted in `scope`, if known.
    pub fn id(&self, scope: Scope) -> Option<&str> {
        let id = match scope {
            Scope::Key => &self.key,
            Scope::User => &self.user,
            Scope::Team => &self.team,
            Scope::Workspace => &self.workspace,
        };
        Some(id.as_str()).filter(|id| !id.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_resets_follow_the_utc_calendar() {
        let now = Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(Window::Day.period(now), "2026-12-31");
        assert_eq!(Window::Month.period(now), "2026-12");
        assert_eq!(Window::Day.until_reset(now), Duration::from_secs(3600));
        assert_eq!(Window::Month.until_reset(now), Duration::from_secs(3600));
        assert!(Window::Month.contains("2026-12", "2026-12-01"));
        assert!(!Window::Day.contains("2026-12-31", "2026-12-30"));
    }
}
