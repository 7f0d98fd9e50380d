//! Policy editor endpoints: read the live documents, explain how the live set decides one
//! call, validate a candidate (line and column errors), dry-run it against recently audited
//! calls, apply it atomically.
//!
//! A dashboard over several gateways edits each one's policy set: every endpoint takes
//! `?set=NAME` (`pat`, `mcp`, …; default the first set). A candidate is validated against
//! its own set's schema, dry-run over that gateway's audited calls, and applied to that
//! gateway's engine.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Admin, AdminState, ApiError, record_change};
use super::history::store;
use super::policy_editor::{DocumentEdit, EditorError, PolicyEditor, PolicySet, ValidationError};
use super::rbac::Permission;
use crate::audit::EventKind;
use crate::audit::query::{AuditFilter, AuditQuery};
use crate::policy::PolicyDocuments;
use crate::policy::cli::CallSpec;

/// How many recent calls a dry run replays by default, and at most.
const DRY_RUN_DEFAULT: u32 = 500;
const DRY_RUN_MAX: u32 = 5_000;
/// How many audited calls a dry run reads at most to find its gateway's.
const DRY_RUN_SCAN: usize = 20_000;

/// Which policy set a request is about.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SetParam {
    set: Option<String>,
}

fn policy_set<'a>(state: &'a AdminState, param: &SetParam) -> Result<&'a PolicySet, ApiError> {
    let first = state
        .policies
        .first()
        .ok_or_else(|| ApiError::not_configured("policy editor"))?;
    match param.set.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(first),
        Some(name) => state
            .policies
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = state.policies.iter().map(PolicySet::name).collect();
                ApiError::not_found(format!(
                    "no policy set is named {name:?} (sets: {})",
                    names.join(", ")
                ))
            }),
    }
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

/// `GET /api/policy`: the live documents of one set, and the names of every set.
pub(super) async fn get_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Query(param): Query<SetParam>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let set = policy_set(&state, &param)?;
    let editor = set.editor();
    Ok(Json(json!({
        "set": set.name(),
        "sets": state.policies.iter().map(PolicySet::name).collect::<Vec<_>>(),
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
    Query(param): Query<SetParam>,
    Json(request): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = policy_set(&state, &param)?.editor();
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
    Query(param): Query<SetParam>,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let editor = policy_set(&state, &param)?.editor();
    let docs = candidate_docs(editor, &candidate)?;
    Ok(match editor.validate(&docs) {
        Ok(set) => Json(json!({ "valid": true, "version": set.version() })).into_response(),
        Err(error) => invalid(&error),
    })
}

/// The newest `limit` access events that `set` governs, reading at most
/// [`DRY_RUN_SCAN`] events (the other gateways' calls are skipped).
async fn recent_calls(
    state: &AdminState,
    set: &PolicySet,
    limit: u32,
) -> Result<Vec<crate::audit::AuditEvent>, ApiError> {
    let store = store(state)?;
    let mut query = AuditQuery::newest_first(limit.max(100)).with_filter(AuditFilter {
        kind: Some(EventKind::Access),
        ..AuditFilter::default()
    });
    let (mut events, mut scanned) = (Vec::new(), 0usize);
    loop {
        let page = store.query(&query).await.map_err(|e| {
            tracing::error!(error = %e, "dry run could not read the audit store");
            ApiError::internal()
        })?;
        scanned += page.events.len();
        for event in page.events.iter().filter_map(|r| r.event().ok()) {
            if set.governs(&event) && events.len() < limit as usize {
                events.push(event);
            }
        }
        match page.next {
            Some(next) if events.len() < limit as usize && scanned < DRY_RUN_SCAN => {
                query.cursor = Some(next);
            }
            _ => return Ok(events),
        }
    }
}

/// `POST /api/policy/dry-run`: the decisions of the gateway's recent calls that the
/// candidate changes.
pub(super) async fn dry_run_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Query(param): Query<SetParam>,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let policy_set = policy_set(&state, &param)?;
    let editor = policy_set.editor();
    let docs = candidate_docs(editor, &candidate)?;
    let set = match editor.validate(&docs) {
        Ok(set) => set,
        Err(error) => return Ok(invalid(&error)),
    };
    let limit = candidate
        .limit
        .unwrap_or(DRY_RUN_DEFAULT)
        .clamp(1, DRY_RUN_MAX);
    let events = recent_calls(&state, policy_set, limit).await?;
    let (report, skipped) = editor.dry_run(&set, &events);
    Ok(Json(json!({
        "set": policy_set.name(),
        "valid": true,
        "live_version": editor.version(),
        "candidate_version": set.version(),
        "report": report,
        "skipped": skipped,
    }))
    .into_response())
}

/// `PUT /api/policy`: validate, record in the Change Log, make live in one swap (in the
/// engine of the set's gateway).
pub(super) async fn apply_policy(
    State(state): State<AdminState>,
    admin: Admin,
    Query(param): Query<SetParam>,
    Json(candidate): Json<Candidate>,
) -> Result<Response, ApiError> {
    admin.require(Permission::EditPolicy)?;
    let policy_set = policy_set(&state, &param)?;
    let editor = policy_set.editor();
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
    let resource = format!("policy:{}", policy_set.name());
    record_change(&state, &admin, "policy.update", &resource, before, after).await?;
    match editor.apply(docs).await {
        Ok((previous, version)) => Ok(Json(json!({
            "set": policy_set.name(),
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
