//! The admin API's history and management endpoints over real stores: the SQLite audit
//! store, a persisted kill switch, the memory vault, a Cedar policy set. Every endpoint is
//! checked for RBAC (an auditor changes nothing, a viewer exports nothing), 401 without a
//! login and 403 without the CSRF token, and every change for its Change Log entry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use fortress_core::admin::api::AdminState;
use fortress_core::admin::directory::{
    ConnectorDirectory, ConnectorSummary, DirectoryError, KeyDirectory, KeyRequest, KeySummary,
};
use fortress_core::admin::embedded::{EmbeddedAdmin, KILL_SWITCH_FILE};
use fortress_core::admin::policy_editor::{PolicyEditor, PolicySet};
use fortress_core::admin::rbac::Role;
use fortress_core::admin::server::AdminServer;
use fortress_core::admin::switches::KillSwitchBoard;
use fortress_core::audit::{AuditEvent, AuditSink, DecisionRecord, Outcome};
use fortress_core::call::{Action, Call, Resource};
use fortress_core::decision::Effect;
use fortress_core::guard::{Guard, KillSwitch, KillTarget, Verdict};
use fortress_core::policy::{CedarEngine, PolicyDocuments, PolicyEngine};
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PW: &str = "a long enough password";
const SECRET_VALUE: &str = "sk-live-never-show-me-0123456789";
const POLICY: &str = "permit (principal, action, resource == Model::\"small\");\n";

#[derive(Default)]
struct Keys(Mutex<Vec<KeySummary>>);

#[async_trait]
impl KeyDirectory for Keys {
    async fn list(&self, workspace: Option<&str>) -> Result<Vec<KeySummary>, DirectoryError> {
        let keys = self.0.lock().unwrap();
        Ok(keys
            .iter()
            .filter(|k| workspace.is_none_or(|w| k.workspace == w))
            .cloned()
            .collect())
    }

    async fn issue(&self, request: KeyRequest) -> Result<(KeySummary, Secret), DirectoryError> {
        let mut keys = self.0.lock().unwrap();
        let summary = KeySummary {
            id: format!("k{}", keys.len() + 1),
            workspace: request.workspace,
            subject: request.subject,
            name: request.name,
            team: request.team,
            scopes: request.scopes,
            created_at: chrono::Utc::now(),
            expires_at: None,
            revoked_at: None,
        };
        keys.push(summary.clone());
        Ok((summary, Secret::from("fpk_issued_secret_value")))
    }

    async fn revoke(&self, id: &str) -> Result<KeySummary, DirectoryError> {
        let mut keys = self.0.lock().unwrap();
        let key = keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| DirectoryError::NotFound(format!("key {id}")))?;
        key.revoked_at = Some(chrono::Utc::now());
        Ok(key.clone())
    }
}

#[derive(Default)]
struct Connectors(Mutex<BTreeMap<String, ConnectorSummary>>);

#[async_trait]
impl ConnectorDirectory for Connectors {
    async fn list(&self) -> Result<Vec<ConnectorSummary>, DirectoryError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }

    async fn add(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        let mut all = self.0.lock().unwrap();
        if all.contains_key(&connector.name) {
            return Err(DirectoryError::Invalid(format!(
                "{} already exists",
                connector.name
            )));
        }
        all.insert(connector.name.clone(), connector.clone());
        Ok(connector)
    }

    async fn remove(&self, name: &str) -> Result<ConnectorSummary, DirectoryError> {
        self.0
            .lock()
            .unwrap()
            .remove(name)
            .ok_or_else(|| DirectoryError::NotFound(format!("connector {name}")))
    }
}

struct Api {
    app: Router,
    state: AdminState,
    /// The sink a gateway would record its calls into.
    gateway_audit: Arc<dyn AuditSink>,
    kill_switch: Arc<KillSwitch>,
    vault: Arc<MemoryVault>,
    keys: Arc<Keys>,
    engine: Arc<CedarEngine>,
    dir: tempfile::TempDir,
}

struct Session {
    cookie: String,
    csrf: String,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedAdmin::open(dir.path(), WorkspaceId::new("acme"))
        .await
        .unwrap();
    for (name, role) in [
        ("olive", Role::Owner),
        ("adam", Role::Admin),
        ("aud", Role::Auditor),
        ("vic", Role::Viewer),
    ] {
        embedded
            .state
            .accounts
            .create_account(name, &Secret::from(PW), role)
            .await
            .unwrap();
    }
    let vault = Arc::new(MemoryVault::new());
    let keys = Arc::new(Keys::default());
    let docs = PolicyDocuments::new().with_policies("main.cedar", POLICY);
    let engine = Arc::new(CedarEngine::new(&docs).unwrap());
    let state = embedded
        .state
        .clone()
        .with_vault(vault.clone())
        .with_keys(keys.clone())
        .with_connectors(Arc::new(Connectors::default()))
        .with_policy_editor(Arc::new(PolicyEditor::new(engine.clone(), docs)));
    Api {
        app: AdminServer::new(state.clone()).router(),
        state,
        gateway_audit: embedded.audit,
        kill_switch: embedded.kill_switch,
        vault,
        keys,
        engine,
        dir,
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

async fn send_json(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, bytes) = send(app, request).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn login(app: &Router, user: &str) -> Session {
    let body = json!({"username": user, "password": PW});
    let (status, headers, bytes) = send(
        app,
        Request::post("/api/login")
            .header("content-type", "application/json")
            .body(body.to_string().into())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    Session {
        cookie: headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
        csrf: value["csrf_token"].as_str().unwrap().to_owned(),
    }
}

fn req(session: &Session, method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .header("content-type", "application/json");
    match body {
        Some(body) => builder.body(body.to_string().into()).unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

fn get(session: &Session, uri: &str) -> Request<Body> {
    req(session, "GET", uri, None)
}

/// A governed call as the gateway would record it.
async fn record_call(api: &Api, user: &str, model: &str, effect: Effect) {
    let call = Call::new(
        Subject::user(user, WorkspaceId::new("acme")),
        Action::CreateMessage,
        Resource::model(model),
    );
    let mut event = AuditEvent::for_call(
        &call,
        if effect == Effect::Allow {
            Outcome::Success
        } else {
            Outcome::Denied
        },
    );
    event.model = Some(model.to_owned());
    event.latency_us = 2_000;
    event.decision = Some(DecisionRecord {
        effect,
        reasons: vec![],
        policy_ids: vec![],
        policy_version: api.engine.version(),
    });
    api.gateway_audit.record(event).await.unwrap();
}

async fn changes(api: &Api, session: &Session) -> Vec<Value> {
    let (status, page) = send_json(&api.app, get(session, "/api/changes?limit=500")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

/// Every mutating endpoint, with a body that would be valid for an owner.
fn mutations() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        (
            "POST",
            "/api/kill-switches",
            Some(json!({"target": {"kind": "model", "model": "big"}, "reason": "r"})),
        ),
        (
            "POST",
            "/api/kill-switches/release",
            Some(json!({"target": {"kind": "model", "model": "big"}})),
        ),
        (
            "PUT",
            "/api/credentials/zendesk",
            Some(json!({"value": SECRET_VALUE})),
        ),
        (
            "POST",
            "/api/credentials/zendesk/rotate",
            Some(json!({"value": SECRET_VALUE})),
        ),
        ("DELETE", "/api/credentials/zendesk", None),
        (
            "POST",
            "/api/keys",
            Some(json!({"workspace": "acme", "subject": "bob"})),
        ),
        ("DELETE", "/api/keys/k1", None),
        (
            "POST",
            "/api/connectors",
            Some(json!({"name": "github", "kind": "mcp"})),
        ),
        ("DELETE", "/api/connectors/github", None),
        (
            "PUT",
            "/api/policy",
            Some(json!({"documents": [{"name": "main.cedar", "text": POLICY}]})),
        ),
        (
            "PUT",
            "/api/retention",
            Some(json!({"soho": 30, "bank": 365, "zero_trust": 2555})),
        ),
        (
            "POST",
            "/api/workspace/terminate",
            Some(json!({"workspace": "acme", "confirm": "acme", "export_offered": true})),
        ),
    ]
}

#[tokio::test]
async fn auditors_and_viewers_change_nothing_and_sessions_need_csrf() {
    let api = api().await;
    for user in ["aud", "vic"] {
        let session = login(&api.app, user).await;
        for (method, uri, body) in mutations() {
            let (status, value) = send_json(&api.app, req(&session, method, uri, body)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{user} {method} {uri}: {value}"
            );
            assert_eq!(value["error"]["code"], "forbidden");
        }
    }
    let owner = login(&api.app, "olive").await;
    for (method, uri, body) in mutations() {
        // No login at all: 401.
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.clone().map_or(Body::empty(), |b| b.to_string().into()))
            .unwrap();
        let (status, _) = send_json(&api.app, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        // A session cookie without the CSRF token: 403.
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", &owner.cookie)
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| b.to_string().into()))
            .unwrap();
        let (status, value) = send_json(&api.app, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(value["error"]["code"], "csrf");
    }
    for uri in [
        "/api/traffic",
        "/api/changes",
        "/api/events/1",
        "/api/kill-switches",
        "/api/credentials",
        "/api/keys",
        "/api/connectors",
        "/api/policy",
        "/api/retention",
        "/api/audit/export",
    ] {
        let (status, _) = send_json(&api.app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // Nothing was changed, so nothing is in the Change Log but the logins.
    let log = changes(&api, &owner).await;
    assert!(
        log.iter().all(|c| c["event"]["action"] == "admin.login"),
        "{log:?}"
    );
    assert!(
        api.vault
            .list(&WorkspaceId::new("acme"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(api.kill_switch.engaged().is_empty());
}

#[tokio::test]
async fn the_kill_switch_stops_calls_survives_a_restart_and_is_in_the_change_log() {
    let api = api().await;
    let admin = login(&api.app, "adam").await;
    let call = Call::new(
        Subject::user("u", WorkspaceId::new("acme")),
        Action::CreateMessage,
        Resource::model("big"),
    );
    assert!(matches!(
        api.kill_switch.admit(&call).await.unwrap(),
        Verdict::Admit(_)
    ));
    let (status, list) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/kill-switches",
            Some(json!({"target": {"kind": "model", "model": "big"}, "reason": "cost spike"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{list}");
    assert_eq!(list[0]["target"]["model"], "big");
    assert_eq!(list[0]["engagement"]["by"], "adam");
    assert!(matches!(
        api.kill_switch.admit(&call).await.unwrap(),
        Verdict::Reject(_)
    ));
    // A restart restores it from the file.
    let restarted = KillSwitchBoard::open(
        Arc::new(KillSwitch::new(api.gateway_audit.clone())),
        &api.dir.path().join(KILL_SWITCH_FILE),
    )
    .unwrap();
    assert!(restarted.switch().is_engaged(&KillTarget::model("big")));
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/kill-switches",
            Some(json!({"target": {"kind": "model", "model": " "}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/kill-switches/release",
            Some(json!({"target": {"kind": "model", "model": "big"}, "reason": "fixed"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(matches!(
        api.kill_switch.admit(&call).await.unwrap(),
        Verdict::Admit(_)
    ));
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/kill-switches/release",
            Some(json!({"target": {"kind": "model", "model": "big"}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let log = changes(&api, &admin).await;
    let flips: Vec<&Value> = log
        .iter()
        .filter(|c| c["event"]["resource"] == "model:big")
        .collect();
    assert_eq!(flips.len(), 2, "{log:?}");
    // Newest first: the release, then the engage, each with before and after.
    assert_eq!(flips[0]["event"]["action"], "kill_switch.release");
    assert_eq!(flips[1]["event"]["action"], "kill_switch.engage");
    assert_eq!(flips[1]["event"]["subject"]["id"], "adam");
    assert_eq!(flips[1]["event"]["detail"]["before"]["engaged"], false);
    assert_eq!(flips[1]["event"]["detail"]["after"]["engaged"], true);
    assert_eq!(flips[0]["event"]["detail"]["after"]["engaged"], false);
}

#[tokio::test]
async fn traffic_history_filters_pages_and_drills_in() {
    let api = api().await;
    for i in 0..5 {
        record_call(&api, "alice", "small", Effect::Allow).await;
        if i % 2 == 0 {
            record_call(&api, "bob", "big", Effect::Deny).await;
        }
    }
    let viewer = login(&api.app, "vic").await;
    let (status, page) = send_json(&api.app, get(&viewer, "/api/traffic?user=bob")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["event"]["subject"]["id"] == "bob"));
    // Admin events (the login) are not traffic.
    let (_, all) = send_json(&api.app, get(&viewer, "/api/traffic?limit=100")).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 8);
    let (_, denied) = send_json(
        &api.app,
        get(&viewer, "/api/traffic?decision=deny&model=big"),
    )
    .await;
    assert_eq!(denied["events"].as_array().unwrap().len(), 3);
    // Pages of 3 follow the cursor without gaps or repeats, newest first.
    let mut seqs = Vec::new();
    let mut uri = "/api/traffic?limit=3".to_owned();
    loop {
        let (_, page) = send_json(&api.app, get(&viewer, &uri)).await;
        seqs.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/traffic?limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seqs.len(), 8);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
    let (status, one) =
        send_json(&api.app, get(&viewer, &format!("/api/events/{}", seqs[0]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["seq"], seqs[0]);
    assert_eq!(one["event"]["subject"]["id"], "bob");
    assert_eq!(one["hash"].as_str().unwrap().len(), 64);
    let (status, _) = send_json(&api.app, get(&viewer, "/api/events/999999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        "/api/traffic?cursor=x",
        "/api/traffic?decision=maybe",
        "/api/traffic?outcome=fine",
    ] {
        let (status, value) = send_json(&api.app, get(&viewer, bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {value}");
    }
}

#[tokio::test]
async fn credentials_are_write_only_and_changes_show_metadata_only() {
    let api = api().await;
    let admin = login(&api.app, "adam").await;
    let (status, info) = send_json(
        &api.app,
        req(
            &admin,
            "PUT",
            "/api/credentials/zendesk",
            Some(json!({"value": SECRET_VALUE})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["version"], 1);
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
    assert_eq!(
        api.vault.resolve(&slot).await.unwrap().secret().expose(),
        SECRET_VALUE.as_bytes()
    );
    let (status, info) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/credentials/zendesk/rotate",
            Some(json!({"value": "sk-rotated-value-also-secret"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["version"], 2);
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "PUT",
            "/api/credentials/zendesk",
            Some(json!({"value": ""})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = send_json(&api.app, get(&admin, "/api/credentials")).await;
    assert_eq!(list[0]["slot"]["connector"], "zendesk");
    let (status, _) = send_json(
        &api.app,
        req(&admin, "DELETE", "/api/credentials/zendesk", None),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(api.vault.resolve(&slot).await.is_err());
    let (status, _) = send_json(
        &api.app,
        req(&admin, "DELETE", "/api/credentials/zendesk", None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let log = changes(&api, &admin).await;
    let actions: Vec<&str> = log
        .iter()
        .map(|c| c["event"]["action"].as_str().unwrap())
        .filter(|a| a.starts_with("credential."))
        .collect();
    assert_eq!(
        actions,
        ["credential.delete", "credential.rotate", "credential.put"]
    );
    let rotate = log
        .iter()
        .find(|c| c["event"]["action"] == "credential.rotate")
        .unwrap();
    assert_eq!(rotate["event"]["detail"]["before"]["version"], 1);
    assert_eq!(rotate["event"]["detail"]["after"]["version"], 2);
    // The value appears nowhere: not in answers, the Change Log or an export.
    let (_, _, export) = send(&api.app, get(&admin, "/api/audit/export?format=jsonl")).await;
    let everything = format!("{log:?}{list}{}", String::from_utf8_lossy(&export));
    assert!(!everything.contains(SECRET_VALUE));
    assert!(!everything.contains("sk-rotated"));
}

#[tokio::test]
async fn keys_are_issued_once_and_revoked() {
    let api = api().await;
    let admin = login(&api.app, "adam").await;
    let (status, issued) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/keys",
            Some(json!({"workspace": "acme", "subject": "bob", "name": "ci"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["key"], "fpk_issued_secret_value");
    let id = issued["info"]["id"].as_str().unwrap().to_owned();
    let (_, list) = send_json(&api.app, get(&admin, "/api/keys?workspace=acme")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("fpk_issued_secret_value"));
    let (status, revoked) = send_json(
        &api.app,
        req(&admin, "DELETE", &format!("/api/keys/{id}"), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, _) = send_json(&api.app, req(&admin, "DELETE", "/api/keys/nope", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let log = changes(&api, &admin).await;
    assert!(log.iter().any(|c| c["event"]["action"] == "key.issue"));
    let revoke = log
        .iter()
        .find(|c| c["event"]["action"] == "key.revoke")
        .unwrap();
    assert!(revoke["event"]["detail"]["before"]["revoked_at"].is_null());
    assert!(revoke["event"]["detail"]["after"]["revoked_at"].is_string());
    assert!(!format!("{log:?}").contains("fpk_issued_secret_value"));
}

#[tokio::test]
async fn removing_a_connector_deletes_its_credentials_at_once() {
    let api = api().await;
    let admin = login(&api.app, "adam").await;
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/connectors",
            Some(json!({"name": "github", "kind": "mcp", "config": {"url": "https://x.invalid", "api_token": "ghp_inline"}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let ws = WorkspaceId::new("acme");
    api.vault
        .put(
            &CredentialSlot::workspace(ws.clone(), "github"),
            Secret::from("a"),
        )
        .await
        .unwrap();
    api.vault
        .put(
            &CredentialSlot::user(ws.clone(), "github", "alice"),
            Secret::from("b"),
        )
        .await
        .unwrap();
    api.vault
        .put(
            &CredentialSlot::workspace(ws.clone(), "zendesk"),
            Secret::from("c"),
        )
        .await
        .unwrap();
    let (status, removed) = send_json(
        &api.app,
        req(&admin, "DELETE", "/api/connectors/github", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["credentials_deleted"].as_array().unwrap().len(), 2);
    let left: Vec<String> = api
        .vault
        .list(&ws)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.slot.connector)
        .collect();
    assert_eq!(left, ["zendesk"]);
    let (status, _) = send_json(
        &api.app,
        req(&admin, "DELETE", "/api/connectors/github", None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let log = changes(&api, &admin).await;
    let add = log
        .iter()
        .find(|c| c["event"]["action"] == "connector.add")
        .unwrap();
    // A secret-looking configuration value is masked in the Change Log.
    assert_eq!(
        add["event"]["detail"]["after"]["config"]["api_token"],
        "<redacted>"
    );
    assert!(!format!("{log:?}").contains("ghp_inline"));
    assert!(
        log.iter()
            .any(|c| c["event"]["action"] == "connector.remove")
    );
}

#[tokio::test]
async fn the_policy_editor_validates_dry_runs_and_applies_atomically() {
    let api = api().await;
    record_call(&api, "alice", "small", Effect::Allow).await;
    record_call(&api, "bob", "small", Effect::Allow).await;
    record_call(&api, "bob", "big", Effect::Deny).await;
    let admin = login(&api.app, "adam").await;
    let (status, live) = send_json(&api.app, get(&admin, "/api/policy")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live["documents"][0]["text"], POLICY);
    let before = live["version"].as_str().unwrap().to_owned();

    // Explain: how the live set decides one call, and why; any reader may ask.
    let viewer = login(&api.app, "vic").await;
    let call = |model: &str| {
        json!({"call": {
            "subject": {"id": "alice", "kind": "user", "workspace": "acme", "groups": []},
            "action": "messages/create",
            "resource": {"kind": "model", "id": model},
        }})
    };
    let (status, allowed) = send_json(
        &api.app,
        req(&viewer, "POST", "/api/policy/explain", Some(call("small"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{allowed}");
    assert_eq!(allowed["version"], before.as_str());
    assert_eq!(
        allowed["explanation"]["decision"]["effect"], "allow",
        "{allowed}"
    );
    assert_eq!(
        allowed["explanation"]["determining"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{allowed}"
    );
    let (status, denied) = send_json(
        &api.app,
        req(&viewer, "POST", "/api/policy/explain", Some(call("big"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(
        denied["explanation"]["decision"]["effect"], "deny",
        "{denied}"
    );
    assert!(
        denied["explanation"]["determining"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, _, _) = send(
        &api.app,
        Request::post("/api/policy/explain")
            .header("content-type", "application/json")
            .body(Body::from(call("small").to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let broken = json!({"documents": [{"name": "main.cedar", "text": "permit (principal,\n  action resource);"}]});
    let (status, value) = send_json(
        &api.app,
        req(&admin, "POST", "/api/policy/validate", Some(broken.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(value["valid"], false);
    assert_eq!(value["errors"][0]["line"], 2, "{value}");
    let (status, _) = send_json(&api.app, req(&admin, "PUT", "/api/policy", Some(broken))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.engine.version(), before);
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/policy/validate",
            Some(json!({"documents": [{"name": "../x.cedar", "text": ""}]})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Allow "big" to everyone except bob's small calls... simpler: allow only big.
    let candidate = json!({"documents": [{"name": "main.cedar", "text": "permit (principal, action, resource == Model::\"big\");"}]});
    let (status, report) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/policy/dry-run",
            Some(candidate.clone()),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["report"]["calls"], 3);
    assert_eq!(report["report"]["newly_denied"], 2);
    assert_eq!(report["report"]["newly_allowed"], 1);
    assert_eq!(api.engine.version(), before, "a dry run changes nothing");

    let auditor = login(&api.app, "aud").await;
    let (status, _) = send_json(
        &api.app,
        req(
            &auditor,
            "POST",
            "/api/policy/dry-run",
            Some(candidate.clone()),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "auditors may look");
    let (status, _) = send_json(
        &api.app,
        req(&auditor, "PUT", "/api/policy", Some(candidate.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, applied) =
        send_json(&api.app, req(&admin, "PUT", "/api/policy", Some(candidate))).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["previous_version"], before.as_str());
    assert_ne!(api.engine.version(), before);
    let big = Call::new(
        Subject::user("u", WorkspaceId::new("acme")),
        Action::CreateMessage,
        Resource::model("big"),
    );
    assert!(api.engine.decide(&big).await.unwrap().is_allowed());
    let log = changes(&api, &admin).await;
    let update = log
        .iter()
        .find(|c| c["event"]["action"] == "policy.update")
        .unwrap();
    assert_eq!(
        update["event"]["detail"]["before"]["version"],
        before.as_str()
    );
    assert_eq!(
        update["event"]["detail"]["after"]["version"],
        api.engine.version()
    );
}

#[tokio::test]
async fn exports_are_audited_and_viewers_cannot_export() {
    let api = api().await;
    record_call(&api, "alice", "small", Effect::Allow).await;
    let viewer = login(&api.app, "vic").await;
    let (status, _, _) = send(&api.app, get(&viewer, "/api/audit/export")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let auditor = login(&api.app, "aud").await;
    for (format, first) in [("jsonl", "{"), ("csv", "seq,"), ("ocsf", "{")] {
        let (status, headers, body) = send(
            &api.app,
            get(
                &auditor,
                &format!("/api/audit/export?format={format}&kind=access"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{format}");
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment")
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(first), "{format}: {text}");
        assert!(text.contains("alice"));
        assert!(
            !text.contains("admin.login"),
            "kind=access keeps only calls"
        );
    }
    let (status, _, _) = send(&api.app, get(&auditor, "/api/audit/export?format=xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Each export recorded who exported what.
    let (_, _, trail) = send(&api.app, get(&auditor, "/api/audit/export?kind=system")).await;
    let exports = String::from_utf8(trail)
        .unwrap()
        .lines()
        .filter(|l| l.contains("audit.export") && l.contains("\"aud\""))
        .count();
    assert!(exports >= 3, "exports were not audited");
}

#[tokio::test]
async fn retention_is_set_per_tier_within_bounds() {
    let api = api().await;
    let admin = login(&api.app, "adam").await;
    let (status, current) = send_json(&api.app, get(&admin, "/api/retention")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["in_force_days"], 90);
    assert_eq!(current["days"]["zero_trust"], 2555);
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "PUT",
            "/api/retention",
            Some(json!({"soho": 0, "bank": 365, "zero_trust": 2555})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "PUT",
            "/api/retention",
            Some(json!({"soho": 30, "bank": 400, "zero_trust": 2555})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.state.settings.read().unwrap().retention.soho, 30);
    let (_, current) = send_json(&api.app, get(&admin, "/api/retention")).await;
    assert_eq!(current["in_force_days"], 30);
    let log = changes(&api, &admin).await;
    let change = log
        .iter()
        .find(|c| c["event"]["action"] == "retention.update")
        .unwrap();
    assert_eq!(change["event"]["detail"]["before"]["soho"], 90);
    assert_eq!(change["event"]["detail"]["after"]["soho"], 30);
}

#[tokio::test]
async fn terminating_a_workspace_revokes_access_deletes_credentials_and_keeps_audit() {
    let api = api().await;
    record_call(&api, "alice", "small", Effect::Allow).await;
    let ws = WorkspaceId::new("acme");
    api.vault
        .put(
            &CredentialSlot::workspace(ws.clone(), "anthropic"),
            Secret::from("k"),
        )
        .await
        .unwrap();
    api.keys
        .issue(KeyRequest {
            workspace: "acme".into(),
            subject: "alice".into(),
            app: false,
            name: String::new(),
            team: None,
            groups: vec![],
            scopes: vec![],
            expires_days: None,
        })
        .await
        .unwrap();
    let terminate = |confirm: &str, offered: bool| json!({"workspace": "acme", "confirm": confirm, "export_offered": offered});
    let admin = login(&api.app, "adam").await;
    let (status, _) = send_json(
        &api.app,
        req(
            &admin,
            "POST",
            "/api/workspace/terminate",
            Some(terminate("acme", true)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners terminate");
    let owner = login(&api.app, "olive").await;
    let (status, _) = send_json(
        &api.app,
        req(
            &owner,
            "POST",
            "/api/workspace/terminate",
            Some(terminate("acm", true)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, value) = send_json(
        &api.app,
        req(
            &owner,
            "POST",
            "/api/workspace/terminate",
            Some(terminate("acme", false)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(value["error"]["code"], "export_first");
    let (status, done) = send_json(
        &api.app,
        req(
            &owner,
            "POST",
            "/api/workspace/terminate",
            Some(terminate("acme", true)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["credentials_deleted"], 1);
    assert_eq!(done["keys_revoked"], json!(["k1"]));
    assert_eq!(done["audit_kept_days"], 90);
    assert!(api.vault.list(&ws).await.unwrap().is_empty());
    let call = Call::new(
        Subject::user("alice", ws.clone()),
        Action::CreateMessage,
        Resource::model("small"),
    );
    assert!(matches!(
        api.kill_switch.admit(&call).await.unwrap(),
        Verdict::Reject(_)
    ));
    // The audit trail is kept.
    let (_, traffic) = send_json(&api.app, get(&owner, "/api/traffic")).await;
    assert_eq!(traffic["events"].as_array().unwrap().len(), 1);
    let log = changes(&api, &owner).await;
    assert!(
        log.iter()
            .any(|c| c["event"]["action"] == "workspace.terminate")
    );
}

#[tokio::test]
async fn metrics_count_traffic_without_users_and_the_dashboard_mounts_under_a_prefix() {
    let mut api = api().await;
    record_call(&api, "alice", "small", Effect::Allow).await;
    record_call(&api, "bob", "big", Effect::Deny).await;
    let (status, headers, body) = send(
        &api.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "fortress_requests_total{target=\"gateway\",decision=\"allow\",outcome=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "fortress_requests_total{target=\"model:big\",decision=\"deny\",outcome=\"denied\"} 1"
    ));
    assert!(text.contains("fortress_request_latency_seconds_count{target=\"gateway\"} 2"));
    assert!(text.contains("fortress_kill_switches_engaged 0"));
    assert!(!text.contains("alice") && !text.contains("bob"));

    api.state.open_metrics = false;
    let server = AdminServer::new(api.state.clone());
    let closed = server.router();
    let (status, _, _) = send(
        &closed,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let answer = server
        .dispatch(
            "/admin",
            Request::get("/admin").body(Body::empty()).unwrap(),
        )
        .await
        .ok()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(answer.headers()["location"], "/admin/");
    let page = server
        .dispatch(
            "/admin",
            Request::get("/admin/").body(Body::empty()).unwrap(),
        )
        .await
        .ok()
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let passed = server
        .dispatch(
            "/admin",
            Request::get("/v1/messages").body(Body::empty()).unwrap(),
        )
        .await;
    assert!(
        passed.is_err(),
        "requests outside the prefix go to the gateway"
    );
    let passed = server
        .dispatch(
            "/admin",
            Request::get("/administrator").body(Body::empty()).unwrap(),
        )
        .await;
    assert!(passed.is_err());
}

/// A Change Log that refuses credential changes (a full disk, a lost database): every
/// other event is recorded.
struct RefusingCredentialChanges(Arc<dyn AuditSink>);

#[async_trait]
impl AuditSink for RefusingCredentialChanges {
    async fn record(&self, event: AuditEvent) -> Result<(), fortress_core::audit::AuditError> {
        if event.action.starts_with("credential.") {
            return Err(fortress_core::audit::AuditError::Closed);
        }
        self.0.record(event).await
    }

    async fn flush(&self) -> Result<(), fortress_core::audit::AuditError> {
        self.0.flush().await
    }
}

#[tokio::test]
async fn a_credential_change_that_cannot_be_recorded_is_not_made() {
    let mut api = api().await;
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
    api.vault
        .put(&slot, Secret::from("the value before"))
        .await
        .unwrap();
    api.state.audit = Arc::new(RefusingCredentialChanges(api.state.audit.clone()));
    let app = AdminServer::new(api.state.clone()).router();
    let admin = login(&app, "adam").await;
    for (method, uri, body) in [
        (
            "PUT",
            "/api/credentials/zendesk",
            Some(json!({"value": SECRET_VALUE})),
        ),
        (
            "POST",
            "/api/credentials/zendesk/rotate",
            Some(json!({"value": SECRET_VALUE})),
        ),
        ("DELETE", "/api/credentials/zendesk", None),
        (
            "PUT",
            "/api/credentials/github",
            Some(json!({"value": SECRET_VALUE})),
        ),
    ] {
        let (status, answer) = send_json(&app, req(&admin, method, uri, body)).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {uri}: {answer}"
        );
        // The vault is as it was: same value, same version, no new credential.
        let credential = api.vault.resolve(&slot).await.unwrap();
        assert_eq!(credential.secret().expose(), b"the value before");
        assert_eq!(credential.version(), 1);
        let stored: Vec<String> = api
            .vault
            .list(&WorkspaceId::new("acme"))
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.slot.connector)
            .collect();
        assert_eq!(stored, ["zendesk"], "{method} {uri}");
    }
}

#[tokio::test]
async fn each_gateway_policy_set_is_edited_on_its_own() {
    let api = api().await;
    // A second gateway (MCP-like): its own engine, dry-run over its own calls.
    let mcp_docs = PolicyDocuments::new()
        .with_policies("mcp.cedar", "permit (principal, action, resource);\n");
    let mcp_engine = Arc::new(CedarEngine::new(&mcp_docs).unwrap());
    let state = api.state.clone().with_policy_set(
        PolicySet::new(
            "mcp",
            Arc::new(PolicyEditor::new(mcp_engine.clone(), mcp_docs)),
        )
        .for_actions(["tools/"]),
    );
    let app = AdminServer::new(state).router();
    record_call(&api, "alice", "small", Effect::Allow).await;
    let tool_call = Call::new(
        Subject::user("alice", WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool("zendesk", "get_ticket"),
    );
    for _ in 0..2 {
        api.gateway_audit
            .record(AuditEvent::for_call(&tool_call, Outcome::Success))
            .await
            .unwrap();
    }
    let admin = login(&app, "adam").await;

    let (status, listed) = send_json(&app, get(&admin, "/api/policy?set=mcp")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["sets"], json!(["policy", "mcp"]));
    assert_eq!(listed["set"], "mcp");
    assert_eq!(listed["documents"][0]["name"], "mcp.cedar");
    let (_, default) = send_json(&app, get(&admin, "/api/policy")).await;
    assert_eq!(default["set"], "policy");
    let (status, _) = send_json(&app, get(&admin, "/api/policy?set=nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A dry run of the MCP set replays the MCP calls only.
    let forbid_all = json!({"documents": [{"name": "mcp.cedar", "text": "forbid (principal, action, resource);"}]});
    let (status, report) = send_json(
        &app,
        req(
            &admin,
            "POST",
            "/api/policy/dry-run?set=mcp",
            Some(forbid_all.clone()),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["report"]["calls"], 2, "{report}");
    assert_eq!(report["report"]["newly_denied"], 2, "{report}");

    // Applying it swaps the MCP engine only.
    let pat_version = api.engine.version();
    let (status, applied) = send_json(
        &app,
        req(&admin, "PUT", "/api/policy?set=mcp", Some(forbid_all)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert!(!mcp_engine.decide(&tool_call).await.unwrap().is_allowed());
    assert_eq!(api.engine.version(), pat_version);
    let log = changes(&api, &admin).await;
    let update = log
        .iter()
        .find(|c| c["event"]["action"] == "policy.update")
        .unwrap();
    assert_eq!(update["event"]["resource"], "policy:mcp");
}
