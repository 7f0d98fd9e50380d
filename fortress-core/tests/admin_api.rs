//! The admin API: authentication, CSRF, RBAC and auditing of admin actions.

use std::sync::Arc;

use axum::Router;
use fortress_core::admin::accounts::AccountStore;
use fortress_core::admin::api::{AdminState, router};
use fortress_core::admin::rbac::Role;
use fortress_core::audit::{EventKind, MemoryAuditSink, Outcome};
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PW: &str = "a long enough password";

struct Api {
    app: Router,
    audit: Arc<MemoryAuditSink>,
    state: AdminState,
}

struct Login {
    cookie: String,
    csrf: String,
}

async fn api() -> Api {
    api_with(|state| state).await
}

async fn api_with(customize: impl FnOnce(AdminState) -> AdminState) -> Api {
    let accounts = AccountStore::in_memory().await.unwrap();
    for (name, role) in [
        ("olive", Role::Owner),
        ("adam", Role::Admin),
        ("aud", Role::Auditor),
        ("vic", Role::Viewer),
    ] {
        accounts
            .create_account(name, &Secret::from(PW), role)
            .await
            .unwrap();
    }
    let audit = Arc::new(MemoryAuditSink::new());
    let state = customize(AdminState::new(
        accounts,
        audit.clone(),
        WorkspaceId::new("acme"),
    ));
    let app = router(state.clone());
    Api { app, audit, state }
}

async fn send(
    app: &Router,
    request: Request<axum::body::Body>,
) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

fn json_request(method: &str, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
}

async fn login(app: &Router, user: &str) -> Login {
    let body = json!({"username": user, "password": PW});
    let (status, headers, value) = send(
        app,
        json_request("POST", "/api/login")
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let set_cookie = headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"));
    assert!(set_cookie.contains("SameSite=Strict"));
    assert!(set_cookie.contains("Secure"));
    Login {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: value["csrf_token"].as_str().unwrap().to_owned(),
    }
}

fn with_session(builder: http::request::Builder, login: &Login) -> http::request::Builder {
    builder
        .header("cookie", &login.cookie)
        .header("x-csrf-token", &login.csrf)
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let api = api().await;
    for (method, uri) in [
        ("GET", "/api/me"),
        ("GET", "/api/accounts"),
        ("POST", "/api/tokens"),
    ] {
        let (status, _, value) = send(
            &api.app,
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body("{}".into())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(value["error"]["code"], "unauthenticated");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_audited() {
    let api = api().await;
    let body = json!({"username": "olive", "password": "not the password"});
    let (status, headers, _) = send(
        &api.app,
        json_request("POST", "/api/login")
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("set-cookie").is_none());
    let events = api.audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Admin);
    assert_eq!(events[0].outcome, Outcome::Denied);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("not the password")
    );
}

#[tokio::test]
async fn unsafe_requests_need_the_csrf_token() {
    let api = api().await;
    let session = login(&api.app, "olive").await;
    let body = json!({"name": "ci", "role": "auditor"});
    // Cookie without CSRF token: refused.
    let (status, _, value) = send(
        &api.app,
        json_request("POST", "/api/tokens")
            .header("cookie", &session.cookie)
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(value["error"]["code"], "csrf");
    // Wrong CSRF token: refused.
    let (status, _, _) = send(
        &api.app,
        json_request("POST", "/api/tokens")
            .header("cookie", &session.cookie)
            .header("x-csrf-token", "forged")
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With it: created.
    let (status, _, value) = send(
        &api.app,
        with_session(json_request("POST", "/api/tokens"), &session)
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let token = value["token"].as_str().unwrap().to_owned();
    // The API token works without cookie or CSRF token, with its own role.
    let (status, _, me) = send(
        &api.app,
        Request::get("/api/me")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "auditor");
}

#[tokio::test]
async fn auditors_and_viewers_change_nothing() {
    let api = api().await;
    for user in ["aud", "vic", "adam"] {
        let session = login(&api.app, user).await;
        let body = json!({"username": "eve", "password": PW, "role": "owner"});
        let (status, _, value) = send(
            &api.app,
            with_session(json_request("POST", "/api/accounts"), &session)
                .body(body.to_string().into())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {value}");
        let (status, _, _) = send(
            &api.app,
            with_session(
                Request::builder()
                    .method("DELETE")
                    .uri("/api/accounts/olive"),
                &session,
            )
            .body(axum::body::Body::empty())
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}");
    }
}

#[tokio::test]
async fn owners_manage_accounts_and_every_change_is_audited() {
    let api = api().await;
    let session = login(&api.app, "olive").await;
    let body = json!({"username": "newbie", "password": PW, "role": "viewer"});
    let (status, _, value) = send(
        &api.app,
        with_session(json_request("POST", "/api/accounts"), &session)
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let (status, _, list) = send(
        &api.app,
        Request::get("/api/accounts")
            .header("cookie", &session.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|a| a["username"] == "newbie")
    );
    let (status, _, _) = send(
        &api.app,
        with_session(
            Request::builder()
                .method("DELETE")
                .uri("/api/accounts/newbie"),
            &session,
        )
        .body(axum::body::Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let actions: Vec<String> = api
        .audit
        .events()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(
        actions,
        [
            "admin.login",
            "admin.account.create",
            "admin.account.delete"
        ]
    );
    assert!(
        !serde_json::to_string(&api.audit.events())
            .unwrap()
            .contains(PW)
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let api = api().await;
    let session = login(&api.app, "vic").await;
    let (status, _, _) = send(
        &api.app,
        with_session(
            Request::builder().method("POST").uri("/api/logout"),
            &session,
        )
        .body(axum::body::Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(
        &api.app,
        Request::get("/api/me")
            .header("cookie", &session.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_endpoints_answer_without_login() {
    let api = api().await;
    for uri in ["/healthz", "/readyz"] {
        let response = api
            .app
            .clone()
            .oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
}

fn access_event(user: &str, connector: &str, outcome: Outcome) -> fortress_core::audit::AuditEvent {
    use fortress_core::call::{Action, Call, Resource};
    use fortress_core::subject::Subject;
    let call = Call::new(
        Subject::user(user, WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool(connector, "search"),
    );
    let mut event = fortress_core::audit::AuditEvent::for_call(&call, outcome);
    event.latency_us = 1_500;
    event
}

#[tokio::test]
async fn the_status_board_reports_live_figures() {
    let api = api().await;
    for outcome in [
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
        Outcome::UpstreamError,
    ] {
        api.state
            .telemetry
            .observe(&access_event("u", "zendesk", outcome));
    }
    let session = login(&api.app, "vic").await;
    let (status, _, value) = send(
        &api.app,
        Request::get("/api/status")
            .header("cookie", &session.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let gateway = value["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "gateway")
        .unwrap();
    assert_eq!(gateway["requests"], 4);
    assert_eq!(gateway["errors"], 1);
    assert_eq!(gateway["p50_us"], 1_500);
    assert!(
        value["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["target"] == "connector:zendesk")
    );
    assert_eq!(value["uptime"]["report"]["downtime_minutes"], 0);
}

#[tokio::test]
async fn the_traffic_feed_streams_matching_events_live() {
    use fortress_core::admin::observe::ObservingSink;
    use fortress_core::audit::AuditSink;

    let api = api().await;
    let session = login(&api.app, "aud").await;
    let response = api
        .app
        .clone()
        .oneshot(
            Request::get("/api/traffic/stream?connector=github")
                .header("cookie", &session.cookie)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let sink =
        ObservingSink::new(Arc::new(MemoryAuditSink::new())).with(Arc::new(api.state.feed.clone()));
    sink.record(access_event("alice", "zendesk", Outcome::Success))
        .await
        .unwrap();
    sink.record(access_event("bob", "github", Outcome::Denied))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(seen.starts_with("event: audit\n"), "{seen}");
    assert!(seen.contains("\"bob\""), "{seen}");
    assert!(
        !seen.contains("alice"),
        "the filter let a zendesk event through: {seen}"
    );
}

#[tokio::test]
async fn settings_changes_are_guarded_and_logged_with_before_and_after() {
    let api = api().await;
    let viewer = login(&api.app, "vic").await;
    let (status, _, current) = send(
        &api.app,
        Request::get("/api/settings")
            .header("cookie", &viewer.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut changed = current.clone();
    changed["tier"] = json!("bank");
    changed["contract"]["pack_size"] = json!(25);
    let (status, _, _) = send(
        &api.app,
        with_session(json_request("PUT", "/api/settings"), &viewer)
            .body(changed.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let admin = login(&api.app, "adam").await;
    let (status, _, saved) = send(
        &api.app,
        with_session(json_request("PUT", "/api/settings"), &admin)
            .body(changed.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["contract"]["pack_size"], 25);
    let change = api
        .audit
        .events()
        .into_iter()
        .find(|e| e.action == "admin.settings.update")
        .unwrap();
    assert_eq!(change.subject.id, "adam");
    assert_eq!(change.detail["before"]["tier"], "soho");
    assert_eq!(change.detail["after"]["tier"], "bank");
}

#[tokio::test]
async fn settings_choose_live_which_workspaces_record_redacted_arguments() {
    use fortress_core::audit::arguments::RedactedArguments;

    let opt_in = RedactedArguments::new(["acme"]);
    let api = api_with(|state| state.with_redacted_arguments(opt_in.clone())).await;
    let admin = login(&api.app, "adam").await;
    let (status, _, current) = send(
        &api.app,
        Request::get("/api/settings")
            .header("cookie", &admin.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["redacted_arguments"], json!(["acme"]));
    let mut changed = current.clone();
    changed["redacted_arguments"] = json!(["globex"]);
    let (status, _, saved) = send(
        &api.app,
        with_session(json_request("PUT", "/api/settings"), &admin)
            .body(changed.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    // The gateway's audit layer reads the same set: the change applies to the next call.
    assert!(opt_in.is_enabled_for("globex"));
    assert!(!opt_in.is_enabled_for("acme"));
}

struct FixedActivity(usize);

#[async_trait::async_trait]
impl fortress_core::admin::sources::ActivitySource for FixedActivity {
    async fn active_users(
        &self,
        _from: chrono::DateTime<chrono::Utc>,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::BTreeSet<String>, fortress_core::admin::sources::SourceError>
    {
        Ok((0..self.0).map(|i| format!("user{i}")).collect())
    }
}

struct FixedUsage;

#[async_trait::async_trait]
impl fortress_core::admin::sources::UsageSource for FixedUsage {
    async fn usage(
        &self,
        _from: chrono::DateTime<chrono::Utc>,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<
        Vec<fortress_core::admin::billing::UsageLine>,
        fortress_core::admin::sources::SourceError,
    > {
        use fortress_core::admin::billing::{Money, UsageLine};
        Ok(vec![
            UsageLine {
                user: "user0".into(),
                team: Some("data".into()),
                model: "claude-big".into(),
                input_tokens: 1_000,
                output_tokens: 500,
                cache_creation_tokens: 0,
                cache_read_tokens: 0,
                cost: Money::from_cents(150),
            },
            UsageLine {
                user: "user1".into(),
                team: None,
                model: "claude-small".into(),
                input_tokens: 100,
                output_tokens: 50,
                cache_creation_tokens: 0,
                cache_read_tokens: 0,
                cost: Money::from_cents(2),
            },
        ])
    }
}

async fn billing_api(active: usize) -> Api {
    let mut api = api().await;
    api.state = api
        .state
        .clone()
        .with_activity(Arc::new(FixedActivity(active)))
        .with_usage(Arc::new(FixedUsage));
    {
        let mut settings = api.state.settings.write().unwrap();
        settings.contract.pack_size = 10;
        settings.contract.base_rate = fortress_core::admin::billing::Money::from_cents(2_000);
    }
    api.app = router(api.state.clone());
    api
}

#[tokio::test]
async fn billing_counts_the_pack_overage_and_usage() {
    let api = billing_api(12).await;
    let viewer = login(&api.app, "vic").await;
    let (status, _, value) = send(
        &api.app,
        Request::get("/api/billing?month=2026-11")
            .header("cookie", &viewer.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let invoice = &value["invoice"];
    assert_eq!(invoice["active_users"], 12);
    assert_eq!(invoice["overage_users"], 2);
    // $200 pack + 2 × $25 overage + $1.52 usage, in micro-dollars.
    assert_eq!(invoice["total"], 251_520_000);
    assert_eq!(value["by_team"]["data"]["cost"], 1_500_000);
    assert_eq!(value["by_model"]["claude-small"]["input_tokens"], 100);
}

#[tokio::test]
async fn viewers_cannot_export_the_invoice_auditors_can() {
    let api = billing_api(3).await;
    let viewer = login(&api.app, "vic").await;
    let (status, _, _) = send(
        &api.app,
        Request::get("/api/billing/invoice.csv")
            .header("cookie", &viewer.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let auditor = login(&api.app, "aud").await;
    let response = api
        .app
        .clone()
        .oneshot(
            Request::get("/api/billing/invoice.csv?month=2026-11")
                .header("cookie", &auditor.cookie)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(csv.starts_with("item,quantity,unit_price_usd,amount_usd\n"));
    assert!(csv.contains("User pack 2026-11 (10 users),1,200.00,200.00"));
    assert!(csv.ends_with("Total,,,201.52\n"), "{csv}");
    assert!(
        api.audit
            .events()
            .iter()
            .any(|e| e.action == "admin.billing.export")
    );
}

#[tokio::test]
async fn billing_without_an_activity_source_says_so() {
    let api = api().await;
    let viewer = login(&api.app, "vic").await;
    let (status, _, value) = send(
        &api.app,
        Request::get("/api/billing")
            .header("cookie", &viewer.cookie)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(value["error"]["code"], "not_configured");
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let doc: Value = serde_json::from_str(fortress_core::admin::api::OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let routes = fortress_core::admin::api::api_paths();
    assert!(routes.len() >= 36);
    for route in &routes {
        assert!(
            paths.contains_key(*route),
            "{route} is missing from openapi.json"
        );
    }
    // The methods too: the router answers each documented one, and no other (405).
    let app = api().await.app;
    for (path, operations) in paths {
        assert!(routes.contains(&path.as_str()), "{path} is not served");
        let uri = documented_uri(path);
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let request = Request::builder()
                .method(method)
                .uri(&uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let status = app.clone().oneshot(request).await.unwrap().status();
            let documented = operations.get(method.to_ascii_lowercase()).is_some();
            assert_eq!(
                status != StatusCode::METHOD_NOT_ALLOWED,
                documented,
                "{method} {path}: {status} (documented: {documented})"
            );
        }
    }
    let api = api().await;
    let (status, _, served) = send(
        &api.app,
        Request::get("/api/openapi.json")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, doc);
}

/// A concrete URI for a documented path: every `{parameter}` filled in.
fn documented_uri(path: &str) -> String {
    let mut uri = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        uri.push_str(&rest[..open]);
        uri.push('x');
        rest = rest[open..].split_once('}').map_or("", |(_, after)| after);
    }
    uri.push_str(rest);
    uri
}
