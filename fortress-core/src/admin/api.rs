//! The admin API (JSON over HTTP): authentication, accounts and API tokens, health.
//!
//! Browsers authenticate with a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure`
//! under TLS) obtained from `POST /api/login`; every unsafe request made with that cookie
//! must carry the session's CSRF token in `x-csrf-token`. Automation uses API tokens
//! (`Authorization: Bearer fat_…`), which need no CSRF token. Every change is audited.
//!
//! | method and path | permission |
//! | --- | --- |
//! | `POST /api/login`, `POST /api/logout` | — |
//! | `GET /api/me` | any admin |
//! | `GET/POST /api/accounts`, `DELETE /api/accounts/{name}` | manage admins |
//! | `GET/POST /api/tokens`, `DELETE /api/tokens/{id}` | manage admins |
//! | `GET /api/status` (Status Board), `GET /api/traffic/stream` (Traffic Feed, SSE) | read |
//! | `GET /api/settings` / `PUT /api/settings` | read / manage settings |
//! | `GET /api/billing?month=YYYY-MM` / `GET /api/billing/invoice.csv` | read / export |
//! | `GET /healthz`, `GET /readyz` | — |

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::accounts::{AccountError, AccountStore, AdminPrincipal, AuthMethod, SESSION_TTL};
use super::billing::{GroupBy, InvoicePreview, preview, usage_by};
use super::observe::LiveFeed;
use super::rbac::{Permission, Role};
use super::settings::AdminSettings;
use super::sources::{ActivitySource, Month, UsageSource};
use super::telemetry::Telemetry;
use super::uptime::{monthly_uptime, service_credit};
use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome, SubjectRef};
use crate::decision::Effect;
use crate::secret::Secret;
use crate::subject::{SubjectKind, WorkspaceId};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "fortress_session";

/// What the admin API works on.
#[derive(Clone)]
pub struct AdminState {
    /// Accounts, sessions and tokens.
    pub accounts: AccountStore,
    /// Where admin actions are recorded.
    pub audit: Arc<dyn AuditSink>,
    /// The workspace admin events belong to.
    pub workspace: WorkspaceId,
    /// Whether cookies are marked `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// Live traffic figures (fed by an [`ObservingSink`](super::observe::ObservingSink)).
    pub telemetry: Arc<Telemetry>,
    /// The live Traffic Feed (fed the same way).
    pub feed: LiveFeed,
    /// Tier, fee, pack and commitment.
    pub settings: Arc<RwLock<AdminSettings>>,
    /// Who was active (for the user pack); billing answers 503 without it.
    pub activity: Option<Arc<dyn ActivitySource>>,
    /// Claude usage and cost; billing shows no usage without it.
    pub usage: Option<Arc<dyn UsageSource>>,
}

impl AdminState {
    /// State with empty telemetry, a fresh feed and default settings; `secure_cookies` on.
    pub fn new(accounts: AccountStore, audit: Arc<dyn AuditSink>, workspace: WorkspaceId) -> Self {
        Self {
            accounts,
            audit,
            workspace,
            secure_cookies: true,
            telemetry: Arc::new(Telemetry::new()),
            feed: LiveFeed::default(),
            settings: Arc::new(RwLock::new(AdminSettings::default())),
            activity: None,
            usage: None,
        }
    }

    /// Sets the source of active users.
    #[must_use]
    pub fn with_activity(mut self, source: Arc<dyn ActivitySource>) -> Self {
        self.activity = Some(source);
        self
    }

    /// Sets the source of Claude usage.
    #[must_use]
    pub fn with_usage(mut self, source: Arc<dyn UsageSource>) -> Self {
        self.usage = Some(source);
        self
    }

    fn settings(&self) -> AdminSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An admin API error, answered as `{"error":{"code":…,"message":…}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: not logged in.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in or present an API token",
        )
    }

    /// 403: the role does not allow it.
    pub fn forbidden(permission: Permission) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role does not allow {permission:?}"),
        )
    }

    /// 400: bad input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 500: something failed inside (details go to the log, not the caller).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidLogin => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_login", e.to_string())
            }
            AccountError::Exists(_) => Self::new(StatusCode::CONFLICT, "exists", e.to_string()),
            AccountError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            AccountError::Invalid(_) => Self::bad_request(e.to_string()),
            other => {
                tracing::error!(error = %other, "admin account store failed");
                Self::internal()
            }
        }
    }
}

/// An authenticated admin, extracted from the request.
pub struct Admin(pub AdminPrincipal);

impl Admin {
    /// Fails with 403 unless the role grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.0.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(permission))
        }
    }

    fn actor(&self) -> SubjectRef {
        SubjectRef {
            id: self.0.name.clone(),
            kind: SubjectKind::User,
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers) {
            return match state.accounts.token(token).await? {
                Some(principal) => Ok(Admin(principal)),
                None => Err(ApiError::unauthenticated()),
            };
        }
        let Some(session) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated());
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let csrf = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if !safe && csrf.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing x-csrf-token header",
            ));
        }
        match state
            .accounts
            .session(&session, if safe { None } else { csrf })
            .await?
        {
            Some(principal) => Ok(Admin(principal)),
            None if !safe => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "session expired or CSRF token invalid",
            )),
            None => Err(ApiError::unauthenticated()),
        }
    }
}

async fn audit(
    state: &AdminState,
    actor: SubjectRef,
    action: &str,
    resource: &str,
    outcome: Outcome,
) -> Result<(), ApiError> {
    let mut event = AuditEvent::activity(
        EventKind::Admin,
        state.workspace.clone(),
        actor,
        action,
        resource,
    );
    event.outcome = outcome;
    state.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "admin action could not be audited");
        ApiError::internal()
    })
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AdminState>,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let password = Secret::from(body.password);
    let actor = SubjectRef {
        id: body.username.clone(),
        kind: SubjectKind::User,
    };
    let session = match state.accounts.login(&body.username, &password).await {
        Ok(session) => session,
        Err(e) => {
            audit(
                &state,
                actor,
                "admin.login",
                "admin:session",
                Outcome::Denied,
            )
            .await?;
            return Err(e.into());
        }
    };
    audit(
        &state,
        actor,
        "admin.login",
        "admin:session",
        Outcome::Success,
    )
    .await?;
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        session.session.expose_str().unwrap_or_default(),
        SESSION_TTL.as_secs()
    );
    let mut cookie = HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?;
    cookie.set_sensitive(true);
    let body = json!({
        "user": session.principal.name,
        "role": session.principal.role,
        "csrf_token": session.csrf.expose_str().unwrap_or_default(),
        "expires_at": session.expires_at,
    });
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.accounts.logout(&session).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

async fn me(admin: Admin) -> Json<AdminPrincipal> {
    Json(admin.0)
}

async fn list_accounts(
    State(state): State<AdminState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    Ok(Json(state.accounts.accounts().await?).into_response())
}

#[derive(Deserialize)]
struct NewAccount {
    username: String,
    password: String,
    role: Role,
}

async fn create_account(
    State(state): State<AdminState>,
    admin: Admin,
    Json(body): Json<NewAccount>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    let info = state
        .accounts
        .create_account(&body.username, &Secret::from(body.password), body.role)
        .await?;
    audit(
        &state,
        admin.actor(),
        "admin.account.create",
        &format!("admin:{}", info.username),
        Outcome::Success,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn delete_account(
    State(state): State<AdminState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    if name == admin.0.name {
        return Err(ApiError::bad_request("you cannot delete your own account"));
    }
    state.accounts.delete_account(&name).await?;
    audit(
        &state,
        admin.actor(),
        "admin.account.delete",
        &format!("admin:{name}"),
        Outcome::Success,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_tokens(State(state): State<AdminState>, admin: Admin) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    Ok(Json(state.accounts.tokens().await?).into_response())
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    role: Role,
}

async fn create_token(
    State(state): State<AdminState>,
    admin: Admin,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    if body.role < admin.0.role {
        return Err(ApiError::bad_request(
            "a token cannot have more power than its creator",
        ));
    }
    let (info, token) = state
        .accounts
        .create_token(&body.name, body.role, &admin.0.name)
        .await?;
    audit(
        &state,
        admin.actor(),
        "admin.token.create",
        &format!("token:{}", info.id),
        Outcome::Success,
    )
    .await?;
    let body = json!({ "token": token.expose_str().unwrap_or_default(), "info": info });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke_token(
    State(state): State<AdminState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageAdmins)?;
    state.accounts.revoke_token(&id).await?;
    audit(
        &state,
        admin.actor(),
        "admin.token.revoke",
        &format!("token:{id}"),
        Outcome::Success,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(State(state): State<AdminState>, admin: Admin) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let now = chrono::Utc::now();
    let settings = state.settings();
    let targets = state.telemetry.status(now, 5);
    let minutes = state.telemetry.month_minutes(now, now);
    let uptime = monthly_uptime(&minutes, &settings.uptime_policy);
    let credit = service_credit(&settings.commitment, uptime.uptime, settings.monthly_fee);
    Ok(Json(json!({
        "generated_at": now,
        "targets": targets,
        "uptime": {
            "month": now.format("%Y-%m").to_string(),
            "report": uptime,
            "commitment": settings.commitment,
            "service_credit": credit.to_decimal_string(),
        },
    }))
    .into_response())
}

/// Filters of the Traffic Feed.
#[derive(Debug, Default, Deserialize)]
pub struct FeedFilter {
    /// Only this subject.
    pub user: Option<String>,
    /// Only this connector.
    pub connector: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only `allow` or `deny` decisions.
    pub decision: Option<String>,
}

impl FeedFilter {
    /// Whether an event passes the filter.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let decision = event.decision.as_ref().map(|d| match d.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        });
        self.user.as_deref().is_none_or(|u| event.subject.id == u)
            && self
                .connector
                .as_deref()
                .is_none_or(|c| event.connector.as_deref() == Some(c))
            && self
                .model
                .as_deref()
                .is_none_or(|m| event.model.as_deref() == Some(m))
            && self.decision.as_deref().is_none_or(|d| decision == Some(d))
    }
}

async fn traffic_stream(
    State(state): State<AdminState>,
    admin: Admin,
    Query(filter): Query<FeedFilter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    admin.require(Permission::Read)?;
    let events = tokio_stream::wrappers::BroadcastStream::new(state.feed.subscribe()).filter_map(
        move |item| {
            let event = match item {
                Ok(event) if filter.matches(&event) => {
                    Event::default().event("audit").json_data(&*event).ok()
                }
                Ok(_) => None,
                // A slow dashboard skipped events: say so rather than pretend the feed is whole.
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Event::default().event("lagged").data(n.to_string()))
                }
            };
            std::future::ready(event.map(Ok))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Which month to bill.
#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    /// `YYYY-MM`; the current month when absent.
    pub month: Option<String>,
}

async fn invoice_for(
    state: &AdminState,
    query: &MonthQuery,
) -> Result<(InvoicePreview, Vec<super::billing::UsageLine>), ApiError> {
    let month = match &query.month {
        Some(text) => {
            Month::parse(text).ok_or_else(|| ApiError::bad_request("month must be YYYY-MM"))?
        }
        None => Month::of(chrono::Utc::now()),
    };
    let Some(activity) = &state.activity else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "no activity source is configured",
        ));
    };
    let failed = |e: super::sources::SourceError| {
        tracing::error!(error = %e, "billing source failed");
        ApiError::internal()
    };
    let active = activity
        .active_users(month.start(), month.end())
        .await
        .map_err(failed)?;
    let usage = match &state.usage {
        Some(source) => source
            .usage(month.start(), month.end())
            .await
            .map_err(failed)?,
        None => Vec::new(),
    };
    let settings = state.settings();
    Ok((
        preview(&settings.contract, &month.to_string(), &active, &usage),
        usage,
    ))
}

async fn billing(
    State(state): State<AdminState>,
    admin: Admin,
    Query(query): Query<MonthQuery>,
) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    let (invoice, usage) = invoice_for(&state, &query).await?;
    Ok(Json(json!({
        "invoice": invoice,
        "by_user": usage_by(&usage, GroupBy::User),
        "by_team": usage_by(&usage, GroupBy::Team),
        "by_model": usage_by(&usage, GroupBy::Model),
    }))
    .into_response())
}

async fn invoice_csv(
    State(state): State<AdminState>,
    admin: Admin,
    Query(query): Query<MonthQuery>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ExportAudit)?;
    let (invoice, _) = invoice_for(&state, &query).await?;
    audit(
        &state,
        admin.actor(),
        "admin.billing.export",
        &format!("invoice:{}", invoice.month),
        Outcome::Success,
    )
    .await?;
    let disposition = format!(
        "attachment; filename=\"fortress-invoice-{}.csv\"",
        invoice.month
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| ApiError::internal())?,
            ),
        ],
        invoice.to_csv(),
    )
        .into_response())
}

async fn get_settings(State(state): State<AdminState>, admin: Admin) -> Result<Response, ApiError> {
    admin.require(Permission::Read)?;
    Ok(Json(state.settings()).into_response())
}

async fn put_settings(
    State(state): State<AdminState>,
    admin: Admin,
    Json(new): Json<AdminSettings>,
) -> Result<Response, ApiError> {
    admin.require(Permission::ManageSettings)?;
    let before = state.settings();
    let mut event = AuditEvent::activity(
        EventKind::Admin,
        state.workspace.clone(),
        admin.actor(),
        "admin.settings.update",
        "settings:deployment",
    );
    event.detail.insert(
        "before".into(),
        serde_json::to_value(&before).map_err(|_| ApiError::internal())?,
    );
    event.detail.insert(
        "after".into(),
        serde_json::to_value(&new).map_err(|_| ApiError::internal())?,
    );
    // Audit first: a change that cannot be recorded is not made.
    state.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "settings change could not be audited");
        ApiError::internal()
    })?;
    *state.settings.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
    Ok(Json(new).into_response())
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Result<&'static str, ApiError> {
    state.accounts.is_empty().await?;
    Ok("ready")
}

/// The admin API routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/accounts", get(list_accounts).post(create_account))
        .route("/api/accounts/{name}", delete(delete_account))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/status", get(status))
        .route("/api/traffic/stream", get(traffic_stream))
        .route("/api/settings", get(get_settings).put(put_settings))
        .route("/api/billing", get(billing))
        .route("/api/billing/invoice.csv", get(invoice_csv))
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(super::ui::router())
        .with_state(state)
}

/// Whether a principal authenticated with a browser session (and so needs CSRF tokens).
pub fn is_session(principal: &AdminPrincipal) -> bool {
    principal.method == AuthMethod::Session
}
