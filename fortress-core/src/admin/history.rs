//! History over the durable audit store: the Traffic Feed's paged history and drill-in,
//! the Change Log (admin events only, newest first, append-only: there is no endpoint
//! that edits or deletes), and the active users that billing counts.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Admin, AdminState, ApiError, mask_secrets};
use super::rbac::Permission;
use super::sources::{ActivitySource, SourceError};
use crate::audit::query::{AuditFilter, AuditPage, AuditQuery, Cursor};
use crate::audit::row::StoredEvent;
use crate::audit::{AuditStore, EventKind, Outcome};
use crate::decision::Effect;
use crate::subject::SubjectKind;

/// The largest page the dashboard asks for.
const MAX_PAGE: u32 = 500;

/// Query parameters of `GET /api/traffic` and `GET /api/changes`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    /// Only this subject (for the Change Log: this admin).
    pub user: Option<String>,
    /// Only this connector.
    pub connector: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// `success`, `denied`, `upstream_error`, `error` or `client_closed`.
    pub outcome: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this workspace.
    pub workspace: Option<String>,
    /// At or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size (1 to 500, default 50).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

fn parse_enum<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, ApiError> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| ApiError::bad_request(format!("unknown {name} {text:?}")))
}

impl HistoryParams {
    /// The store query these parameters describe, for events of `kind`.
    pub fn query(&self, kind: EventKind) -> Result<AuditQuery, ApiError> {
        let decision = match self.decision.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => Some(parse_enum::<Effect>("decision", d)?),
            None => None,
        };
        let outcome = match self.outcome.as_deref().filter(|o| !o.is_empty()) {
            Some(o) => Some(parse_enum::<Outcome>("outcome", o)?),
            None => None,
        };
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let filter = AuditFilter {
            from: self.from,
            until: self.until,
            workspace: text(&self.workspace),
            subject: text(&self.user),
            action: text(&self.action),
            connector: text(&self.connector),
            model: text(&self.model),
            decision,
            outcome,
            kind: Some(kind),
        };
        let mut query = AuditQuery::newest_first(self.limit.unwrap_or(50).clamp(1, MAX_PAGE))
            .with_filter(filter);
        if let Some(cursor) = self.cursor.as_deref().filter(|c| !c.is_empty()) {
            query = query.after(
                cursor
                    .parse::<Cursor>()
                    .map_err(|_| ApiError::bad_request("invalid cursor"))?,
            );
        }
        Ok(query)
    }
}

pub(super) fn store(state: &AdminState) -> Result<&Arc<dyn AuditStore>, ApiError> {
    state
        .store
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("audit store"))
}

fn store_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "audit store query failed");
    ApiError::internal()
}

/// One stored event as the dashboard shows it: its place in the trail and the event.
fn entry(row: &StoredEvent) -> Result<Value, ApiError> {
    let mut event = serde_json::to_value(row.event().map_err(store_failed)?)
        .map_err(|_| ApiError::internal())?;
    // Before/after summaries were masked when recorded; mask again in case an older
    // writer did not.
    if let Some(detail) = event.get_mut("detail") {
        *detail = mask_secrets(detail.take());
    }
    Ok(json!({
        "seq": row.seq,
        "recorded_at": row.recorded_at(),
        "hash": hex::encode(row.hash),
        "event": event,
    }))
}

fn page_json(page: &AuditPage) -> Result<Value, ApiError> {
    let events = page
        .events
        .iter()
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "events": events,
        "next": page.next.map(|c| c.to_string()),
    }))
}

/// `GET /api/traffic`: governed calls, newest first, filtered and paged.
pub(super) async fn traffic_history(
    State(state): State<AdminState>,
    admin: Admin,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let query = params.query(EventKind::Access)?;
    let page = store(&state)?.query(&query).await.map_err(store_failed)?;
    Ok(Json(page_json(&page)?).into_response())
}

/// `GET /api/events/{seq}`: one recorded event, to drill into.
pub(super) async fn event_detail(
    State(state): State<AdminState>,
    admin: Admin,
    Path(seq): Path<u64>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let rows = store(&state)?
        .events_after(seq.saturating_sub(1), 1)
        .await
        .map_err(store_failed)?;
    match rows.first().filter(|r| r.seq == seq && seq > 0) {
        Some(row) => Ok(Json(entry(row)?).into_response()),
        None => Err(ApiError::not_found(format!("no audit event {seq}"))),
    }
}

/// `GET /api/changes`: the Change Log — admin changes, newest first.
pub(super) async fn change_log(
    State(state): State<AdminState>,
    admin: Admin,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let query = params.query(EventKind::Admin)?;
    let page = store(&state)?.query(&query).await.map_err(store_failed)?;
    Ok(Json(page_json(&page)?).into_response())
}

/// The users with at least one governed call in a period, read from the audit store.
pub struct AuditActivity {
    store: Arc<dyn AuditStore>,
}

impl AuditActivity {
    /// Reads activity from `store`.
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ActivitySource for AuditActivity {
    async fn active_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, SourceError> {
        let filter = AuditFilter {
            from: Some(from),
            until: Some(until),
            kind: Some(EventKind::Access),
            ..AuditFilter::default()
        };
        let mut query = AuditQuery::oldest_first(AuditQuery::MAX_LIMIT).with_filter(filter);
        let mut users = BTreeSet::new();
        loop {
            let page = self
                .store
                .query(&query)
                .await
                .map_err(|e| SourceError(Box::new(e)))?;
            users.extend(
                page.events
                    .iter()
                    .filter(|e| e.columns.subject_kind == SubjectKind::User.as_str())
                    .map(|e| e.columns.subject_id.clone()),
            );
            match page.next {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(users),
            }
        }
    }
}
