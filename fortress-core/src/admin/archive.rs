//! Reading an archived call back: `GET /api/archive/{request_id}` returns the decrypted
//! request and response of one call of the dashboard's workspace. Auditors and above only;
//! every read is recorded in the audit trail before anything is returned, so no archived
//! content leaves without a trace.
//!
//! The archive itself belongs to the product (PAT Fortress implements [`ArchiveReader`]
//! over its encrypted object store); this module is only the admin side.

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

use super::api::{Admin, AdminState, ApiError};
use super::rbac::Permission;
use crate::audit::{AuditEvent, EventKind};
use crate::subject::WorkspaceId;

/// The longest request id accepted.
const MAX_REQUEST_ID: usize = 128;

/// One archived call, decrypted.
pub struct ArchivedCall {
    /// The object key prefix (`<workspace>/<YYYY-MM-DD>/<request id>`).
    pub prefix: String,
    /// The request body exactly as received.
    pub request: Vec<u8>,
    /// The response body exactly as sent (the assembled stream).
    pub response: Vec<u8>,
}

/// Why an archived call could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveReadError {
    /// The request names no readable call (bad id or date).
    #[error("{0}")]
    Invalid(String),
    /// Storage, keys or decryption failed (details are logged by the implementation).
    #[error("the archive could not be read")]
    Failed,
}

/// A product's archive of calls, as the admin API reads it.
#[async_trait]
pub trait ArchiveReader: Send + Sync + 'static {
    /// The call `request_id` of `workspace`, or `None` when nothing is archived under it.
    /// `date` (UTC) is needed only when it cannot be derived from the id.
    async fn read(
        &self,
        workspace: &WorkspaceId,
        request_id: &str,
        date: Option<NaiveDate>,
    ) -> Result<Option<ArchivedCall>, ArchiveReadError>;

    /// Prometheus exposition lines about the archive (written, failed, spooled, purged).
    fn render_metrics(&self) -> String {
        String::new()
    }
}

/// Query parameters of the read.
#[derive(Debug, Deserialize)]
pub(super) struct ReadQuery {
    /// The UTC day of the call (`YYYY-MM-DD`), for ids that carry no timestamp.
    #[serde(default)]
    date: Option<NaiveDate>,
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn body_json(bytes: &[u8]) -> serde_json::Value {
    json!({
        "base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        "text": std::str::from_utf8(bytes).ok(),
        "bytes": bytes.len(),
    })
}

/// `GET /api/archive/{request_id}`: the decrypted request and response (auditor and up).
pub(super) async fn read_archived_call(
    State(state): State<AdminState>,
    admin: Admin,
    Path(request_id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ExportAudit)?;
    let archive = state
        .archive
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("archive"))?;
    if !valid_request_id(&request_id) {
        return Err(ApiError::bad_request(
            "a request id is 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    let found = archive
        .read(&state.workspace, &request_id, query.date)
        .await
        .map_err(|e| match e {
            ArchiveReadError::Invalid(message) => ApiError::bad_request(message),
            ArchiveReadError::Failed => ApiError::internal(),
        })?;
    let Some(call) = found else {
        return Err(ApiError::not_found(format!(
            "no archived call {request_id} in this workspace"
        )));
    };
    // Audited before anything is returned: an unaudited read returns nothing.
    let mut event = AuditEvent::activity(
        EventKind::Admin,
        state.workspace.clone(),
        admin.actor(),
        "archive.read",
        &call.prefix,
    );
    event
        .detail
        .insert("request_id".into(), json!(request_id.clone()));
    event.detail.insert(
        "bytes".into(),
        json!(call.request.len() + call.response.len()),
    );
    state.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "archive read could not be audited; refused");
        ApiError::internal()
    })?;
    Ok(Json(json!({
        "request_id": request_id,
        "workspace": state.workspace.as_str(),
        "object": call.prefix,
        "request": body_json(&call.request),
        "response": body_json(&call.response),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_cannot_name_other_objects() {
        assert!(valid_request_id("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!valid_request_id("../other/2026-01-01/x"));
        assert!(!valid_request_id("a/b"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
