//! The `anthropic-ratelimit-*` headers of one response, from whichever store admitted it.

use chrono::{DateTime, Utc};

use super::store::{Dimension, RateState};

/// Rate-limit state for the `anthropic-ratelimit-*` headers of one response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateSnapshot {
    /// `(dimension header name, limit, remaining, reset)`, the tightest rule per dimension.
    pub entries: Vec<(&'static str, u64, u64, DateTime<Utc>)>,
}

impl RateSnapshot {
    /// Notes one bucket; per dimension the one with the least room left is kept.
    pub fn record(
        &mut self,
        dimension: Dimension,
        limit: u64,
        state: RateState,
        now: DateTime<Utc>,
    ) {
        let dim = dimension.header();
        let reset = now + chrono::Duration::from_std(state.reset_after).unwrap_or_default();
        let entry = (dim, limit, state.remaining, reset);
        match self.entries.iter_mut().find(|e| e.0 == dim) {
            Some(current) if current.2 <= state.remaining => {}
            Some(current) => *current = entry,
            None => self.entries.push(entry),
        }
    }

    /// Writes the `anthropic-ratelimit-*` headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (dim, limit, remaining, reset) in &self.entries {
            let mut put = |suffix: &str, value: String| {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(
                        format!("anthropic-ratelimit-{dim}-{suffix}").as_bytes(),
                    ),
                    http::HeaderValue::from_str(&value),
                ) {
                    headers.insert(name, value);
                }
            };
            put("limit", limit.to_string());
            put("remaining", remaining.to_string());
            put(
                "reset",
                reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
}
