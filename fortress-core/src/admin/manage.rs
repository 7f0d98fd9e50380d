//! Management endpoints: kill switches, credentials, gateway keys and connectors.
//!
//! Each checks the admin's role, needs the CSRF token when made from a browser session
//! (enforced by the [`Admin`] extractor), and lands in the Change Log with what it was
//! before and after. Credential values are write-only: they are accepted, put in the vault
//! and never returned, logged or recorded.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Admin, AdminState, ApiError, record_change};
use super::directory::{ConnectorSummary, DirectoryError, KeyRequest};
use super::rbac::Permission;
use super::switches::{BoardError, KillSwitchBoard};
use crate::guard::kill_switch::KillTarget;
use crate::secret::Secret;
use crate::subject::WorkspaceId;
use crate::vault::{CredentialInfo, CredentialSlot, VaultError};

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::internal())
}

// ---- kill switches ----

fn board(state: &AdminState) -> Result<&KillSwitchBoard, ApiError> {
    state
        .kill_switches
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("kill switch"))
}

fn board_failed(e: BoardError) -> ApiError {
    tracing::error!(error = %e, "kill switch change failed");
    ApiError::internal()
}

/// `GET /api/kill-switches`.
pub(super) async fn list_switches(
    State(state): State<AdminState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    Ok(Json(board(&state)?.list()).into_response())
}

/// A switch to flip: the target (`{"kind":"model","model":"…"}` and so on) and why.
#[derive(Debug, Deserialize)]
pub(super) struct SwitchChange {
    target: KillTarget,
    #[serde(default)]
    reason: String,
}

fn check_target(target: &KillTarget) -> Result<(), ApiError> {
    let names: Vec<&str> = match target {
        KillTarget::Workspace { workspace } => vec![workspace.as_str()],
        KillTarget::Connector { connector } => vec![connector],
        KillTarget::Tool { connector, tool } => vec![connector, tool],
        KillTarget::Model { model } => vec![model],
        KillTarget::User { workspace, subject } => vec![workspace.as_str(), subject],
    };
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err(ApiError::bad_request("the kill switch target needs a name"));
    }
    Ok(())
}

/// `POST /api/kill-switches`: engage.
pub(super) async fn engage_switch(
    State(state): State<AdminState>,
    admin: Admin,
    Json(change): Json<SwitchChange>,
) -> Result<Response, ApiError> {
    admin.require(Permission::KillSwitch)?;
    check_target(&change.target)?;
    let board = board(&state)?;
    board
        .engage(
            change.target.clone(),
            &admin.subject(&state.workspace),
            &change.reason,
        )
        .await
        .map_err(board_failed)?;
    Ok((StatusCode::CREATED, Json(board.list())).into_response())
}

/// `POST /api/kill-switches/release`: release.
pub(super) async fn release_switch(
    State(state): State<AdminState>,
    admin: Admin,
    Json(change): Json<SwitchChange>,
) -> Result<Response, ApiError> {
    admin.require(Permission::KillSwitch)?;
    let board = board(&state)?;
    let released = board
        .release(
            &change.target,
            &admin.subject(&state.workspace),
            &change.reason,
        )
        .await
        .map_err(board_failed)?;
    if !released {
        return Err(ApiError::not_found(format!(
            "{} is not engaged",
            change.target
        )));
    }
    Ok(Json(board.list()).into_response())
}

// ---- credentials ----

fn vault(state: &AdminState) -> Result<&std::sync::Arc<dyn crate::vault::Vault>, ApiError> {
    state
        .vault
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("vault"))
}

fn vault_failed(e: VaultError) -> ApiError {
    match e {
        VaultError::NotFound(slot) => ApiError::not_found(format!("no credential for {slot}")),
        VaultError::Revoked(slot) => ApiError::bad_request(format!("{slot} is revoked")),
        other => {
            tracing::error!(error = %other, "vault operation failed");
            ApiError::internal()
        }
    }
}

/// Which workspace and user a credential request is about.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SlotParams {
    /// The workspace (default: the dashboard's).
    workspace: Option<String>,
    /// A user's personal credential rather than the workspace's shared one.
    user: Option<String>,
}

impl SlotParams {
    fn workspace(&self, state: &AdminState) -> WorkspaceId {
        self.workspace
            .clone()
            .filter(|w| !w.is_empty())
            .map_or_else(|| state.workspace.clone(), WorkspaceId::new)
    }

    fn slot(&self, state: &AdminState, connector: &str) -> Result<CredentialSlot, ApiError> {
        if connector.trim().is_empty() {
            return Err(ApiError::bad_request("a credential needs a connector name"));
        }
        let workspace = self.workspace(state);
        Ok(match self.user.clone().filter(|u| !u.is_empty()) {
            Some(user) => CredentialSlot::user(workspace, connector, user),
            None => CredentialSlot::workspace(workspace, connector),
        })
    }
}

async fn credential_info(
    state: &AdminState,
    slot: &CredentialSlot,
) -> Result<Option<CredentialInfo>, ApiError> {
    let all = vault(state)?
        .list(&slot.workspace)
        .await
        .map_err(vault_failed)?;
    Ok(all.into_iter().find(|c| &c.slot == slot))
}

/// What a put or rotation will leave in `slot` (recorded before the vault is written, so
/// the time of the write is not known yet): the next version, active.
fn expected_after(
    slot: &CredentialSlot,
    before: Option<&CredentialInfo>,
) -> Result<Value, ApiError> {
    Ok(json!({
        "slot": to_value(slot)?,
        "version": before.map_or(1, |b| b.version.saturating_add(1)),
        "state": "active",
    }))
}

/// `GET /api/credentials`: metadata of every credential of a workspace, never a value.
pub(super) async fn list_credentials(
    State(state): State<AdminState>,
    admin: Admin,
    Query(params): Query<SlotParams>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let list = vault(&state)?
        .list(&params.workspace(&state))
        .await
        .map_err(vault_failed)?;
    Ok(Json(list).into_response())
}

/// The new value of a credential. Its `Debug` never shows the value.
#[derive(Deserialize)]
pub(super) struct CredentialValue {
    value: String,
}

impl CredentialValue {
    fn secret(self) -> Result<Secret, ApiError> {
        if self.value.is_empty() {
            return Err(ApiError::bad_request("the credential value is empty"));
        }
        Ok(Secret::from_text(self.value))
    }
}

/// `PUT /api/credentials/{connector}`: store (or replace as a new version).
pub(super) async fn put_credential(
    State(state): State<AdminState>,
    admin: Admin,
    Path(connector): Path<String>,
    Query(params): Query<SlotParams>,
    Json(body): Json<CredentialValue>,
) -> Result<Response, ApiError> {
    let change = CredentialChange::Put(body);
    change_credential(&state, &admin, &connector, &params, change).await
}

/// `POST /api/credentials/{connector}/rotate`: a new value; the old one stops resolving.
pub(super) async fn rotate_credential(
    State(state): State<AdminState>,
    admin: Admin,
    Path(connector): Path<String>,
    Query(params): Query<SlotParams>,
    Json(body): Json<CredentialValue>,
) -> Result<Response, ApiError> {
    let change = CredentialChange::Rotate(body);
    change_credential(&state, &admin, &connector, &params, change).await
}

/// `DELETE /api/credentials/{connector}`: delete the credential and its key material.
pub(super) async fn delete_credential(
    State(state): State<AdminState>,
    admin: Admin,
    Path(connector): Path<String>,
    Query(params): Query<SlotParams>,
) -> Result<Response, ApiError> {
    let change = CredentialChange::Delete;
    change_credential(&state, &admin, &connector, &params, change).await
}

/// What a credential request does to its slot, carrying the new value (`V`) if any.
enum CredentialChange<V> {
    /// Store a value, as a new version if there is one already.
    Put(V),
    /// Replace an existing value.
    Rotate(V),
    /// Delete the credential and its key material.
    Delete,
}

impl CredentialChange<CredentialValue> {
    /// The change with its value checked.
    fn checked(self) -> Result<CredentialChange<Secret>, ApiError> {
        Ok(match self {
            Self::Put(value) => CredentialChange::Put(value.secret()?),
            Self::Rotate(value) => CredentialChange::Rotate(value.secret()?),
            Self::Delete => CredentialChange::Delete,
        })
    }
}

impl<V> CredentialChange<V> {
    fn action(&self) -> &'static str {
        match self {
            Self::Put(_) => "credential.put",
            Self::Rotate(_) => "credential.rotate",
            Self::Delete => "credential.delete",
        }
    }
}

/// Every credential change: check the role and the request, record the change in the
/// Change Log, then write the vault. Recorded first: a credential change that cannot be
/// audited is not made.
async fn change_credential(
    state: &AdminState,
    admin: &Admin,
    connector: &str,
    params: &SlotParams,
    change: CredentialChange<CredentialValue>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageCredentials)?;
    let slot = params.slot(state, connector)?;
    let change = change.checked()?;
    let before = credential_info(state, &slot).await?;
    let after = match (&change, &before) {
        (CredentialChange::Put(_), before) => expected_after(&slot, before.as_ref())?,
        (_, None) => return Err(ApiError::not_found(format!("no credential for {slot}"))),
        (CredentialChange::Rotate(_), before) => expected_after(&slot, before.as_ref())?,
        (CredentialChange::Delete, _) => Value::Null,
    };
    record_change(
        state,
        admin,
        change.action(),
        &format!("credential:{slot}"),
        to_value(&before)?,
        after,
    )
    .await?;
    let vault = vault(state)?;
    Ok(match change {
        CredentialChange::Put(secret) => {
            Json(vault.put(&slot, secret).await.map_err(vault_failed)?).into_response()
        }
        CredentialChange::Rotate(secret) => {
            Json(vault.rotate(&slot, secret).await.map_err(vault_failed)?).into_response()
        }
        CredentialChange::Delete => {
            vault.delete(&slot).await.map_err(vault_failed)?;
            StatusCode::NO_CONTENT.into_response()
        }
    })
}

// ---- keys ----

fn directory_failed(e: DirectoryError) -> ApiError {
    match e {
        DirectoryError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
        DirectoryError::Invalid(message) => ApiError::bad_request(message),
        other => {
            tracing::error!(error = %other, "directory operation failed");
            ApiError::internal()
        }
    }
}

/// Which workspace to list.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WorkspaceParam {
    workspace: Option<String>,
}

fn keys(
    state: &AdminState,
) -> Result<&std::sync::Arc<dyn super::directory::KeyDirectory>, ApiError> {
    state
        .keys
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("key directory"))
}

/// `GET /api/keys`.
pub(super) async fn list_keys(
    State(state): State<AdminState>,
    admin: Admin,
    Query(param): Query<WorkspaceParam>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let list = keys(&state)?
        .list(param.workspace.as_deref().filter(|w| !w.is_empty()))
        .await
        .map_err(directory_failed)?;
    Ok(Json(list).into_response())
}

/// `POST /api/keys`: issue; the key is in this answer only.
pub(super) async fn issue_key(
    State(state): State<AdminState>,
    admin: Admin,
    Json(request): Json<KeyRequest>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageKeys)?;
    if request.workspace.trim().is_empty() || request.subject.trim().is_empty() {
        return Err(ApiError::bad_request(
            "a key needs a workspace and a subject",
        ));
    }
    let (summary, token) = keys(&state)?
        .issue(request)
        .await
        .map_err(directory_failed)?;
    record_change(
        &state,
        &admin,
        "key.issue",
        &format!("key:{}", summary.id),
        Value::Null,
        to_value(&summary)?,
    )
    .await?;
    let body = json!({
        "key": token.expose_str().unwrap_or_default(),
        "info": summary,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/keys/{id}`: revoke.
pub(super) async fn revoke_key(
    State(state): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageKeys)?;
    let directory = keys(&state)?;
    let before = directory
        .list(None)
        .await
        .map_err(directory_failed)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| ApiError::not_found(format!("key {id} not found")))?;
    let after = directory.revoke(&id).await.map_err(directory_failed)?;
    record_change(
        &state,
        &admin,
        "key.revoke",
        &format!("key:{id}"),
        to_value(&before)?,
        to_value(&after)?,
    )
    .await?;
    Ok(Json(after).into_response())
}

// ---- connectors ----

fn connectors(
    state: &AdminState,
) -> Result<&std::sync::Arc<dyn super::directory::ConnectorDirectory>, ApiError> {
    state
        .connectors
        .as_ref()
        .ok_or_else(|| ApiError::not_configured("connector directory"))
}

/// `GET /api/connectors`.
pub(super) async fn list_connectors(
    State(state): State<AdminState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let list = connectors(&state)?.list().await.map_err(directory_failed)?;
    Ok(Json(list).into_response())
}

/// `POST /api/connectors`: add. The directory checks the request first (a clear 400 for
/// an invalid one), then the change is recorded, then made.
pub(super) async fn add_connector(
    State(state): State<AdminState>,
    admin: Admin,
    Json(connector): Json<ConnectorSummary>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageConnectors)?;
    if connector.name.trim().is_empty() {
        return Err(ApiError::bad_request("a connector needs a name"));
    }
    let directory = connectors(&state)?;
    let checked = directory.check(connector).await.map_err(directory_failed)?;
    // Recorded first: a change that cannot be audited is not made.
    record_change(
        &state,
        &admin,
        "connector.add",
        &format!("connector:{}", checked.name),
        Value::Null,
        to_value(&checked)?,
    )
    .await?;
    let added = directory.add(checked).await.map_err(directory_failed)?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

/// `DELETE /api/connectors/{name}`: remove, and delete its vault credentials at once
/// (the shared one and every user's, in the dashboard's workspace). Recorded before it is
/// made, with the credentials it deletes.
pub(super) async fn remove_connector(
    State(state): State<AdminState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageConnectors)?;
    let directory = connectors(&state)?;
    let before = directory
        .list()
        .await
        .map_err(directory_failed)?
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApiError::not_found(format!("connector {name:?} not found")))?;
    let slots = match &state.vault {
        Some(vault) => vault
            .list(&state.workspace)
            .await
            .map_err(vault_failed)?
            .into_iter()
            .filter(|c| c.slot.connector == name)
            .map(|c| c.slot)
            .collect(),
        None => Vec::new(),
    };
    let deleted: Vec<String> = slots.iter().map(ToString::to_string).collect();
    record_change(
        &state,
        &admin,
        "connector.remove",
        &format!("connector:{name}"),
        to_value(&before)?,
        json!({ "removed": true, "credentials_deleted": deleted }),
    )
    .await?;
    let removed = directory.remove(&name).await.map_err(directory_failed)?;
    if let Some(vault) = &state.vault {
        for slot in &slots {
            match vault.delete(slot).await {
                // Already gone (the product's directory may delete them itself).
                Ok(()) | Err(VaultError::NotFound(_)) => {}
                Err(e) => return Err(vault_failed(e)),
            }
        }
    }
    Ok(Json(json!({ "removed": removed, "credentials_deleted": deleted })).into_response())
}
