//! Policy editor endpoints: read the live documents, explain how the live set decides one
//! call, validate a candidate (line and column errors), dry-run it against recently audited
//! calls, apply it atomically.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Admin, AdminState, ApiError, record_change};
use super::history::store;
use super::policy_editor::{DocumentEdit, EditorError, PolicyEditor, ValidationError};
use super::rbac::Permission;
use crate::audit::EventKind;
use crate::audit::query::{AuditFilter, AuditQuery};
use crate::policy::PolicyDocuments;
use crate::policy::cli::CallSpec;

/// How many recent calls a dry run replays by default, and at most.
const DRY_RUN_DEFAULT: u32 = 500;
const DRY_RUN_MAX: u32 = 5_000;

fn editor(state: &AdminState) -> Result<&std::sync::Arc<PolicyEditor>, ApiError> {
    state
        .policy
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("policy editor"))
}

fn documents_json(docs: &PolicyDocuments) -> Value {
    Value::Array(
        docs.documents()
            .iter()
            .map(|d| json!({ "name": d.name, "text": d.text }))
            .collect(),
    )
}

fn invalid(error: &ValidationError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "valid": false,
            "errors": [error],
            "error": {"code": "invalid_policy", "message": format!(
                "line {}, column {}: {}", error.line, error.column, error.message)},
        })),
    )
        .into_response()
}

/// A candidate: the documents to replace or add.
#[derive(Debug, Deserialize)]
pub(super) struct Candidate {
    documents: Vec<DocumentEdit>,
    /// Dry run only: how many recent calls to replay.
    #[serde(default)]
    limit: Option<u32>,
}

fn candidate_docs(
    editor: &PolicyEditor,
    candidate: &Candidate,
) -> Result<PolicyDocuments, ApiError> {
    if candidate.documents.is_empty() {
        return Err(ApiError::bad_request("the candidate has no documents"));
    }
    editor
        .candidate(&candidate.documents)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /api/policy`.
pub(super) async fn get_policy(
    State(state): State<AdminState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = editor(&state)?;
    Ok(Json(json!({
        "version": editor.version(),
        "documents": documents_json(&editor.documents()),
    }))
    .into_response())
}

/// A call to explain.
#[derive(Debug, Deserialize)]
pub(super) struct ExplainRequest {
    call: CallSpec,
}

/// `POST /api/policy/explain`: would this call be allowed by the live set, and why.
pub(super) async fn explain_call(
    State(state): State<AdminState>,
    admin: Admin,
    Json(request): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = editor(&state)?;
    let call = request.call.into_call();
    let explanation = editor
        .engine()
        .explain(&call)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({
        "version": editor.version(),
        "explanation": explanation,
    }))
    .into_response())
}

/// `POST /api/policy/validate`.
pub(super) async fn validate_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = editor(&state)?;
    let docs = candidate_docs(editor, &candidate)?;
    Ok(match editor.validate(&docs) {
        Ok(set) => Json(json!({ "valid": true, "version": set.version() })).into_response(),
        Err(error) => invalid(&error),
    })
}

/// `POST /api/policy/dry-run`: the decisions of recent calls that the candidate changes.
pub(super) async fn dry_run_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = editor(&state)?;
    let docs = candidate_docs(editor, &candidate)?;
    let set = match editor.validate(&docs) {
        Ok(set) => set,
        Err(error) => return Ok(invalid(&error)),
    };
    let limit = candidate
        .limit
        .unwrap_or(DRY_RUN_DEFAULT)
        .clamp(1, DRY_RUN_MAX);
    let query = AuditQuery::newest_first(limit).with_filter(AuditFilter {
        kind: Some(EventKind::Access),
        ..AuditFilter::default()
    });
    let page = store(&state)?.query(&query).await.map_err(|e| {
        tracing::error!(error = %e, "dry run could not read the audit store");
        ApiError::internal()
    })?;
    let events: Vec<_> = page.events.iter().filter_map(|r| r.event().ok()).collect();
    let (report, skipped) = editor.dry_run(&set, &events);
    Ok(Json(json!({
        "valid": true,
        "live_version": editor.version(),
        "candidate_version": set.version(),
        "report": report,
        "skipped": skipped,
    }))
    .into_response())
}

/// `PUT /api/policy`: validate, record in the Change Log, make live in one swap.
pub(super) async fn apply_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::EditPolicy)?;
    let editor = editor(&state)?;
    let docs = candidate_docs(editor, &candidate)?;
    if let Err(error) = editor.validate(&docs) {
        return Ok(invalid(&error));
    }
    let before = json!({
        "version": editor.version(),
        "documents": documents_json(&editor.documents()),
    });
    let after = json!({ "version": docs.version(), "documents": documents_json(&docs) });
    // Recorded first: a policy change that cannot be audited is not made.
    record_change(&state, &admin, "policy.update", "policy:set", before, after).await?;
    match editor.apply(docs).await {
        Ok((previous, version)) => Ok(Json(json!({
            "previous_version": previous,
            "version": version,
        }))
        .into_response()),
        Err(EditorError::Invalid(error)) => Ok(invalid(&error)),
        Err(other) => {
            tracing::error!(error = %other, "policy could not be applied");
            Err(ApiError::internal())
        }
    }
}
