//! The audit trail's and the workspace's lifecycle: export (itself audited; viewers may
//! not), retention per tier, and workspace termination (access revoked, credentials
//! deleted, audit kept for the tier's retention, export offered first).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{Admin, AdminState, ApiError, record_change};
use super::history::{HistoryParams, store};
use super::rbac::Permission;
use super::settings::RetentionSettings;
use crate::audit::EventKind;
use crate::audit::export::{ExportError, ExportFormat, export};
use crate::guard::kill_switch::KillTarget;
use crate::subject::WorkspaceId;

/// Query of `GET /api/audit/export`: the format and the history filters.
#[derive(Debug, Deserialize)]
pub(super) struct ExportParams {
    /// `jsonl` (default), `csv` or `ocsf`.
    format: Option<String>,
    /// `access`, `admin`, `credential` or `system` (default: every kind).
    kind: Option<String>,
}

/// `GET /api/audit/export`: the matching events, oldest first, as a download.
pub(super) async fn export_audit(
    State(state): State<AdminState>,
    admin: Admin,
    Query(params): Query<ExportParams>,
    Query(history): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ExportAudit)?;
    let format: ExportFormat = params
        .format
        .as_deref()
        .filter(|f| !f.is_empty())
        .unwrap_or("jsonl")
        .parse()
        .map_err(|e: crate::audit::export::UnknownFormat| ApiError::bad_request(e.to_string()))?;
    let kind = match params.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(
            serde_json::from_value::<EventKind>(serde_json::Value::String(k.to_owned()))
                .map_err(|_| ApiError::bad_request(format!("unknown kind {k:?}")))?,
        ),
        None => None,
    };
    let mut filter = history.query(EventKind::Access)?.filter;
    filter.kind = kind;
    let store = store(&state)?;
    let mut out = Vec::new();
    // The export records itself (who, which format, which filter) before writing a byte.
    let written = export(
        store.as_ref(),
        &filter,
        format,
        &mut out,
        state.audit.as_ref(),
        admin.actor(),
    )
    .await
    .map_err(|e: ExportError| {
        tracing::error!(error = %e, "audit export failed");
        ApiError::internal()
    })?;
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        _ => "application/x-ndjson",
    };
    let disposition = format!(
        "attachment; filename=\"fortress-audit.{}\"",
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| ApiError::internal())?,
            ),
            (
                header::HeaderName::from_static("x-fortress-exported-events"),
                HeaderValue::from(written),
            ),
        ],
        out,
    )
        .into_response())
}

/// `GET /api/retention`: the days kept per tier and the ones in force.
pub(super) async fn get_retention(
    State(state): State<AdminState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let settings = state.settings();
    Ok(Json(json!({
        "tier": settings.tier,
        "in_force_days": settings.retention.days_for(settings.tier),
        "days": settings.retention,
        "default_days": RetentionSettings::default(),
    }))
    .into_response())
}

/// `PUT /api/retention`: set the days kept per tier.
pub(super) async fn put_retention(
    State(state): State<AdminState>,
    admin: Admin,
    Json(new): Json<RetentionSettings>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageSettings)?;
    new.validate().map_err(ApiError::bad_request)?;
    let before = state.settings().retention;
    record_change(
        &state,
        &admin,
        "retention.update",
        "settings:retention",
        serde_json::to_value(before).map_err(|_| ApiError::internal())?,
        serde_json::to_value(new).map_err(|_| ApiError::internal())?,
    )
    .await?;
    state
        .settings
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retention = new;
    Ok(Json(new).into_response())
}

/// The confirmation a termination needs.
#[derive(Debug, Deserialize)]
pub(super) struct Termination {
    /// The workspace to terminate.
    workspace: String,
    /// The workspace's name again, typed by the person confirming.
    confirm: String,
    /// That the audit export was offered (and taken or declined) first.
    #[serde(default)]
    export_offered: bool,
}

/// `POST /api/workspace/terminate`.
pub(super) async fn terminate_workspace(
    State(state): State<AdminState>,
    admin: Admin,
    Json(request): Json<Termination>,
) -> Result<Response, ApiError> {
    admin.require(Permission::TerminateWorkspace)?;
    if request.workspace.trim().is_empty() || request.confirm != request.workspace {
        return Err(ApiError::bad_request(
            "type the workspace's name in `confirm` to terminate it",
        ));
    }
    if !request.export_offered {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "export_first",
            "export the audit trail first (GET /api/audit/export), then confirm with export_offered",
        ));
    }
    let workspace = WorkspaceId::new(request.workspace.clone());
    let settings = state.settings();
    // 1. Access stops at once: a workspace kill switch refuses every call from now on.
    let mut access_stopped = false;
    if let Some(board) = &state.kill_switches {
        board
            .engage(
                KillTarget::Workspace {
                    workspace: workspace.clone(),
                },
                &admin.subject(&state.workspace),
                "workspace terminated",
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "termination could not stop access");
                ApiError::internal()
            })?;
        access_stopped = true;
    }
    // 2. Its gateway keys are revoked.
    let mut keys_revoked = Vec::new();
    if let Some(keys) = &state.keys {
        let failed = |e| {
            tracing::error!(error = %e, "termination could not revoke keys");
            ApiError::internal()
        };
        for key in keys
            .list(Some(workspace.as_str()))
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
        {
            keys.revoke(&key.id).await.map_err(failed)?;
            keys_revoked.push(key.id);
        }
    }
    // 3. Its credentials and their key material are deleted.
    let credentials_deleted = match &state.vault {
        Some(vault) => vault.delete_workspace(&workspace).await.map_err(|e| {
            tracing::error!(error = %e, "termination could not delete credentials");
            ApiError::internal()
        })?,
        None => 0,
    };
    // 4. The audit trail stays for the tier's retention; the retention purge removes it.
    let audit_kept_days = settings.retention.days_for(settings.tier);
    let after = json!({
        "access_stopped": access_stopped,
        "keys_revoked": keys_revoked,
        "credentials_deleted": credentials_deleted,
        "audit_kept_days": audit_kept_days,
    });
    record_change(
        &state,
        &admin,
        "workspace.terminate",
        &format!("workspace:{workspace}"),
        json!({ "active": true }),
        after.clone(),
    )
    .await?;
    Ok(Json(after).into_response())
}
