//! Where the boards get their history: the stores behind billing, implemented by the audit
//! store (active users) and the Claude proxy's metering (usage), or by an integrator's own.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::billing::UsageLine;

/// A history store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("history source failed")]
pub struct SourceError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Who was active: distinct users with at least one governed call in a period.
#[async_trait]
pub trait ActivitySource: Send + Sync + 'static {
    /// Distinct active users in `[from, until)`.
    async fn active_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, SourceError>;
}

/// Claude API usage with its cost.
#[async_trait]
pub trait UsageSource: Send + Sync + 'static {
    /// Usage lines (per user and model) in `[from, until)`.
    async fn usage(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<UsageLine>, SourceError>;
}

/// A month as `[first instant, first instant of the next month)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month containing `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Self> {
        let (y, m) = text.split_once('-')?;
        let month = Self {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }

    /// The first instant of the month.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// The first instant of the next month.
    pub fn end(self) -> DateTime<Utc> {
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.to_string(), "2026-12");
        assert_eq!(m.end(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert!(Month::parse("2026-13").is_none());
        assert!(Month::parse("december").is_none());
    }
}
