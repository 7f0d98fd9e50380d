//! Filters and cursor pagination over stored events (what the dashboard's Traffic Feed reads).
//!
//! Pages are keyed by sequence number, not by offset, so a page stays correct while new
//! events arrive: the cursor of a page is "continue after (or before) this sequence number".
//!
//! ```
//! use fortress_core::audit::query::{AuditFilter, AuditQuery, Cursor};
//! use fortress_core::audit::Outcome;
//!
//! let query = AuditQuery::newest_first(50)
//!     .with_filter(AuditFilter { subject: Some("alice".into()), outcome: Some(Outcome::Denied), ..Default::default() });
//! let cursor: Cursor = "s1042".parse().unwrap();
//! assert_eq!(query.after(cursor).cursor.unwrap().to_string(), "s1042");
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::row::StoredEvent;
use super::{EventKind, Outcome};
use crate::decision::Effect;

/// Which events a query returns. Every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
    /// The workspace.
    pub workspace: Option<String>,
    /// The subject id.
    pub subject: Option<String>,
    /// The action name.
    pub action: Option<String>,
    /// The connector.
    pub connector: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The decision's effect.
    pub decision: Option<Effect>,
    /// The outcome.
    pub outcome: Option<Outcome>,
    /// The event kind (access, admin, credential, system).
    pub kind: Option<EventKind>,
}

/// The order of a page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Most recent first (a live feed).
    #[default]
    NewestFirst,
    /// Oldest first (an export).
    OldestFirst,
}

/// Where the next page starts: an opaque token (`s<seq>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(pub(crate) u64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// A cursor that is not one this module produced.
#[derive(Debug, thiserror::Error)]
#[error("invalid audit cursor")]
pub struct InvalidCursor;

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Cursor)
            .ok_or(InvalidCursor)
    }
}

/// One page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Which events.
    pub filter: AuditFilter,
    /// In which order.
    pub order: Order,
    /// At most this many (clamped to 1..=10 000).
    pub limit: u32,
    /// Continue from a previous page.
    pub cursor: Option<Cursor>,
}

impl AuditQuery {
    /// The largest page a store returns.
    pub const MAX_LIMIT: u32 = 10_000;

    /// The newest `limit` events, unfiltered.
    pub fn newest_first(limit: u32) -> Self {
        Self {
            filter: AuditFilter::default(),
            order: Order::NewestFirst,
            limit,
            cursor: None,
        }
    }

    /// The oldest `limit` events, unfiltered.
    pub fn oldest_first(limit: u32) -> Self {
        Self {
            order: Order::OldestFirst,
            ..Self::newest_first(limit)
        }
    }

    /// Sets the filter.
    #[must_use]
    pub fn with_filter(mut self, filter: AuditFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Continues after a previous page's cursor.
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// The events, in the query's order.
    pub events: Vec<StoredEvent>,
    /// The cursor of the next page, if there may be one.
    pub next: Option<Cursor>,
}

impl AuditPage {
    /// Builds a page from rows fetched with one extra row to learn whether more exist.
    pub(crate) fn from_rows(mut events: Vec<StoredEvent>, limit: u32) -> Self {
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next = if more {
            events.last().map(|e| Cursor(e.seq))
        } else {
            None
        };
        Self { events, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!("s7".parse::<Cursor>().unwrap(), Cursor(7));
        assert_eq!(Cursor(7).to_string(), "s7");
        for bad in ["", "7", "s", "s-1", "sx", "s99999999999999999999"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
        assert_eq!(AuditQuery::newest_first(0).effective_limit(), 1);
        assert_eq!(AuditQuery::newest_first(u32::MAX).effective_limit(), 10_000);
    }
}
