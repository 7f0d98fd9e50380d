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
//! | `GET /api/traffic`, `GET /api/events/{seq}` (Traffic history, drill-in) | read |
//! | `GET /api/changes` (Change Log: admin changes with before/after) | read |
//! | `GET/POST /api/kill-switches`, `POST /api/kill-switches/release` | read / kill switch |
//! | `GET /api/credentials`, `PUT/DELETE /api/credentials/{connector}`, `POST …/rotate` | read / manage credentials |
//! | `GET/POST /api/keys`, `DELETE /api/keys/{id}` | read / manage keys |
//! | `GET/POST /api/connectors`, `DELETE /api/connectors/{name}` | read / manage connectors |
//! | `GET/PUT /api/policy`, `POST /api/policy/validate`, `POST /api/policy/dry-run` | read / edit policy |
//! | `GET /api/audit/export?format=jsonl\|csv\|ocsf` | export |
//! | `GET /api/archive/{request_id}` (decrypted archived call; the read is audited) | export |
//! | `GET/PUT /api/retention` | read / manage settings |
//! | `POST /api/workspace/terminate` | terminate workspace |
//! | `GET /metrics` (Prometheus), `GET /healthz`, `GET /readyz` | — |

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::accounts::{AccountError, AccountStore, AdminPrincipal, AuthMethod, SESSION_TTL};
use super::billing::{GroupBy, InvoicePreview, preview, usage_by};
use super::directory::{ConnectorDirectory, KeyDirectory};
use super::metrics::GatewayMetrics;
use super::observe::{LiveFeed, ObservingSink};
use super::policy_editor::{PolicyEditor, PolicySet};
use super::rbac::{Permission, Role};
use super::settings::AdminSettings;
use super::sources::{ActivitySource, Month, UsageSource};
use super::switches::KillSwitchBoard;
use super::telemetry::Telemetry;
use super::uptime::{monthly_uptime, service_credit};
use crate::audit::arguments::RedactedArguments;
use crate::audit::{AuditEvent, AuditSink, AuditStore, EventKind, Outcome, SubjectRef};
use crate::decision::Effect;
use crate::secret::Secret;
use crate::subject::{Subject, SubjectKind, WorkspaceId};
use crate::vault::Vault;

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
    /// The durable audit store behind Traffic history, the Change Log, dry runs and
    /// exports; those answer 503 without it.
    pub store: Option<Arc<dyn AuditStore>>,
    /// Request, decision, latency and change counters for `/metrics`.
    pub metrics: Arc<GatewayMetrics>,
    /// The gateway's kill switches.
    pub kill_switches: Option<KillSwitchBoard>,
    /// The policy sets the editor edits (one per gateway); the first is the default.
    pub policies: Vec<PolicySet>,
    /// The vault whose credentials the dashboard manages (values are write-only).
    pub vault: Option<Arc<dyn Vault>>,
    /// The product's gateway keys.
    pub keys: Option<Arc<dyn KeyDirectory>>,
    /// The product's connectors.
    pub connectors: Option<Arc<dyn ConnectorDirectory>>,
    /// Whether `/metrics` answers without authentication (for a scraper on a private
    /// network); otherwise it needs the `Read` permission.
    pub open_metrics: bool,
    /// The product's archive of calls (read back decrypted, auditors and up); the
    /// endpoint answers 503 without it.
    pub archive: Option<Arc<dyn super::archive::ArchiveReader>>,
    /// The gateway's live opt-in to redacted tool arguments, kept in step with
    /// [`AdminSettings::redacted_arguments`].
    pub redacted_arguments: Option<RedactedArguments>,
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
            store: None,
            metrics: Arc::new(GatewayMetrics::new()),
            kill_switches: None,
            policies: Vec::new(),
            vault: None,
            keys: None,
            connectors: None,
            open_metrics: true,
            archive: None,
            redacted_arguments: None,
        }
    }

    /// Lets the settings change which workspaces record redacted tool arguments; the
    /// settings start from the set the gateway was configured with.
    #[must_use]
    pub fn with_redacted_arguments(mut self, opt_in: RedactedArguments) -> Self {
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .redacted_arguments = opt_in.workspaces();
        self.redacted_arguments = Some(opt_in);
        self
    }

    /// Sets the durable audit store (Traffic history, Change Log, dry runs, exports) and
    /// makes it the source of active users for billing.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.activity = Some(Arc::new(super::history::AuditActivity::new(store.clone())));
        self.store = Some(store);
        self
    }

    /// Sets the kill switches the dashboard controls (shared with the gateway's guard).
    #[must_use]
    pub fn with_kill_switches(mut self, board: KillSwitchBoard) -> Self {
        self.kill_switches = Some(board);
        self
    }

    /// Adds a policy set named `policy` (for a dashboard over one gateway).
    #[must_use]
    pub fn with_policy_editor(self, editor: Arc<PolicyEditor>) -> Self {
        self.with_policy_set(PolicySet::new("policy", editor))
    }

    /// Adds a gateway's policy set; one of the same name is replaced.
    #[must_use]
    pub fn with_policy_set(mut self, set: PolicySet) -> Self {
        self.policies.retain(|s| s.name() != set.name());
        self.policies.push(set);
        self
    }

    /// Sets the vault whose credentials the dashboard manages.
    #[must_use]
    pub fn with_vault(mut self, vault: Arc<dyn Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Sets the product's key directory.
    #[must_use]
    pub fn with_keys(mut self, keys: Arc<dyn KeyDirectory>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Sets the product's archive of calls.
    #[must_use]
    pub fn with_archive(mut self, archive: Arc<dyn super::archive::ArchiveReader>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Sets the product's connector directory.
    #[must_use]
    pub fn with_connectors(mut self, connectors: Arc<dyn ConnectorDirectory>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// Wraps the gateway's durable audit sink so that the Status Board, the Traffic Feed
    /// and `/metrics` see every event once it is recorded.
    pub fn observe(&self, inner: Arc<dyn AuditSink>) -> Arc<dyn AuditSink> {
        Arc::new(
            ObservingSink::new(inner)
                .with(self.telemetry.clone())
                .with(Arc::new(self.feed.clone()))
                .with(self.metrics.clone()),
        )
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

    pub(super) fn settings(&self) -> AdminSettings {
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
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: the deployment did not configure what this endpoint needs.
    pub fn not_configured(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            format!("no {what} is configured"),
        )
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

    pub(super) fn actor(&self) -> SubjectRef {
        SubjectRef {
            id: self.0.name.clone(),
            kind: SubjectKind::User,
        }
    }

    /// The admin as the subject of a change in `workspace` (for engines that audit
    /// their own changes, such as the kill switch).
    pub(super) fn subject(&self, workspace: &WorkspaceId) -> Subject {
        Subject::user(self.0.name.clone(), workspace.clone())
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

/// Records an admin change for the Change Log, with what it was before and after
/// (values under secret-looking keys are masked). Called before the change is made where
/// the change can wait, so a change that cannot be recorded is not made.
pub(super) async fn record_change(
    state: &AdminState,
    admin: &Admin,
    action: &str,
    resource: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<(), ApiError> {
    let mut event = AuditEvent::activity(
        EventKind::Admin,
        state.workspace.clone(),
        admin.actor(),
        action,
        resource,
    );
    event.detail.insert("before".into(), mask_secrets(before));
    event.detail.insert("after".into(), mask_secrets(after));
    state.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, action, "admin change could not be audited");
        ApiError::internal()
    })
}

/// Replaces the values of keys that name secrets (`token`, `secret`, `password`, `key`,
/// `authorization`, `credential`) with `<redacted>`, at any depth.
pub fn mask_secrets(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const SECRET_WORDS: [&str; 7] = [
        "token",
        "secret",
        "password",
        "api_key",
        "apikey",
        "authorization",
        "value",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_WORDS.iter().any(|w| lower.contains(w)) && !v.is_null() {
                        (k, Value::String("<redacted>".into()))
                    } else {
                        (k, mask_secrets(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_secrets).collect()),
        other => other,
    }
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
                // The feed is traffic; admin changes have the Change Log.
                Ok(event) if event.kind == EventKind::Access && filter.matches(&event) => {
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
    if let Some(opt_in) = &state.redacted_arguments {
        opt_in.replace(new.redacted_arguments.iter().cloned());
    }
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

/// Prometheus text exposition of the gateway's figures. Open to scrapers unless
/// `open_metrics` is off, then it needs the `Read` permission.
async fn metrics(
    State(state): State<AdminState>,
    admin: Result<Admin, ApiError>,
) -> Result<Response, ApiError> {
    if !state.open_metrics {
        admin?.require(Permission::Read)?;
    }
    let health = state.telemetry.status(chrono::Utc::now(), 5);
    let engaged = state.kill_switches.as_ref().map(|b| b.list().len());
    let mut text = state.metrics.render_with(&health, engaged);
    if let Some(archive) = &state.archive {
        text.push_str(&archive.render_metrics());
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
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
    api_routes()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .merge(super::ui::router())
        .with_state(state)
}

/// The paths the admin API serves (the OpenAPI document describes each), read from the
/// same table the router is built from.
pub fn api_paths() -> Vec<&'static str> {
    api_routes().into_iter().map(|(path, _)| path).collect()
}

/// Every admin API path with its handlers: the one list the router and [`api_paths`] read.
fn api_routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    use super::{archive, history, lifecycle, manage, policy_api};
    vec![
        ("/api/login", post(login)),
        ("/api/logout", post(logout)),
        ("/api/me", get(me)),
        ("/api/accounts", get(list_accounts).post(create_account)),
        ("/api/accounts/{name}", delete(delete_account)),
        ("/api/tokens", get(list_tokens).post(create_token)),
        ("/api/tokens/{id}", delete(revoke_token)),
        ("/api/status", get(status)),
        ("/api/traffic/stream", get(traffic_stream)),
        ("/api/settings", get(get_settings).put(put_settings)),
        ("/api/billing", get(billing)),
        ("/api/billing/invoice.csv", get(invoice_csv)),
        ("/api/traffic", get(history::traffic_history)),
        ("/api/events/{seq}", get(history::event_detail)),
        ("/api/changes", get(history::change_log)),
        (
            "/api/kill-switches",
            get(manage::list_switches).post(manage::engage_switch),
        ),
        ("/api/kill-switches/release", post(manage::release_switch)),
        ("/api/credentials", get(manage::list_credentials)),
        (
            "/api/credentials/{connector}",
            put(manage::put_credential).delete(manage::delete_credential),
        ),
        (
            "/api/credentials/{connector}/rotate",
            post(manage::rotate_credential),
        ),
        ("/api/keys", get(manage::list_keys).post(manage::issue_key)),
        ("/api/keys/{id}", delete(manage::revoke_key)),
        (
            "/api/connectors",
            get(manage::list_connectors).post(manage::add_connector),
        ),
        ("/api/connectors/{name}", delete(manage::remove_connector)),
        (
            "/api/policy",
            get(policy_api::get_policy).put(policy_api::apply_policy),
        ),
        ("/api/policy/explain", post(policy_api::explain_call)),
        ("/api/policy/validate", post(policy_api::validate_policy)),
        ("/api/policy/dry-run", post(policy_api::dry_run_policy)),
        ("/api/audit/export", get(lifecycle::export_audit)),
        (
            "/api/archive/{request_id}",
            get(archive::read_archived_call),
        ),
        (
            "/api/retention",
            get(lifecycle::get_retention).put(lifecycle::put_retention),
        ),
        (
            "/api/workspace/terminate",
            post(lifecycle::terminate_workspace),
        ),
        ("/api/openapi.json", get(openapi)),
        ("/metrics", get(metrics)),
        ("/healthz", get(healthz)),
        ("/readyz", get(readyz)),
    ]
}

/// Whether a principal authenticated with a browser session (and so needs CSRF tokens).
pub fn is_session(principal: &AdminPrincipal) -> bool {
    principal.method == AuthMethod::Session
}
