//! Authentication at the HTTP edge (every endpoint, both transports), API-key scopes, and
//! HTTPS with TLS 1.3 only — in process, against a fake upstream.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::FakeUpstream;
use fortress_core::audit::{MemoryAuditSink, Outcome};
use fortress_core::call::Call;
use fortress_core::decision::Effect;
use fortress_core::keys::{KeyFormat, KeyStore, NewKey};
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::vault::{CredentialSlot, MemoryVault};
use fortress_mcp::auth::Authenticator;
use fortress_mcp::governance::McpResultRedaction;
use fortress_mcp::seam::JsonRpcResponder;
use fortress_mcp::server::{McpServer, ServerConfig};
use fortress_mcp::upstream::Upstream;
use fortress_mcp::virtual_server::{Naming, VirtualServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Edge {
    base: String,
    stop: CancellationToken,
    key: String,
    list_only_key: String,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn edge(tls: Option<rustls::ServerConfig>) -> Edge {
    edge_with(tls, None).await
}

/// The edge, governed by a stack recording into `audit` when one is given: anyone may list
/// tools and call `tool0`, nothing else.
async fn edge_with(tls: Option<rustls::ServerConfig>, audit: Option<Arc<MemoryAuditSink>>) -> Edge {
    let store = KeyStore::in_memory(KeyFormat::MCP, Secret::from("pepper"))
        .await
        .unwrap();
    let key = store.create(NewKey::user("acme", "alice")).await.unwrap();
    let mut limited = NewKey::user("acme", "bob");
    limited.scopes = vec!["tools/list".into()];
    let list_only = store.create(limited).await.unwrap();
    let mut auth = Authenticator::builder().api_keys(store);
    let stack = audit.map(|audit| {
        auth = std::mem::take(&mut auth).audit(audit.clone());
        GovernanceStack::builder()
            .audit(audit)
            .policy(Arc::new(AllowListPolicy::new([
                AllowRule::anyone("tools/list", "*"),
                AllowRule::anyone("tools/call", "tool:up/tool0"),
            ])))
            .redactor(Arc::new(PatternRedactor::basic()))
            .body_redaction(Arc::new(McpResultRedaction::default()))
            .vault(Arc::new(MemoryVault::new()))
            .credential_slots(Arc::new(|_: &Call| None::<CredentialSlot>))
            .responder(Arc::new(JsonRpcResponder))
            .build()
            .unwrap()
    });
    let auth = auth.build();
    let upstream: Arc<dyn Upstream> = FakeUpstream::new("up", 2, 10);
    let naming = Naming {
        prefix: false,
        ..Naming::default()
    };
    let server = Arc::new(VirtualServer::new(vec![upstream], naming).unwrap());
    let seam = fortress_mcp::seam::seam_service(server.clone(), stack.as_ref());
    let config = ServerConfig {
        tls: tls.is_some(),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = McpServer::new(config, server, seam).with_authenticator(Arc::new(auth));
    let stop = CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        match tls {
            Some(tls) => endpoint.serve_tls(listener, tls, signal).await,
            None => endpoint.serve(listener, signal).await,
        }
    });
    Edge {
        base: format!("{scheme}://{addr}"),
        stop,
        key: key.token.expose_str().unwrap().to_owned(),
        list_only_key: list_only.token.expose_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn every_endpoint_needs_a_credential_and_says_where_to_get_one() {
    let e = edge(None).await;
    let mcp = format!("{}/mcp", e.base);
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    for (method, url) in [
        (http::Method::POST, mcp.clone()),
        (http::Method::GET, mcp.clone()),
        (http::Method::GET, format!("{}/sse", e.base)),
        (
            http::Method::POST,
            format!("{}/messages?sessionId=x", e.base),
        ),
    ] {
        let reply = common::send(method.clone(), &url, &[], ping.to_string()).await;
        assert_eq!(reply.status, 401, "{method} {url}");
        assert_eq!(
            reply.headers["www-authenticate"],
            format!(
                "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
                e.base
            )
            .as_str()
        );
        assert_eq!(
            reply.json()["error"]["code"],
            fortress_mcp::seam::UNAUTHENTICATED
        );
    }
    let bad = common::post(&mcp, &[("x-api-key", "fmk_0_0")], ping.clone()).await;
    assert_eq!(bad.status, 401);
    let metadata = common::send(
        http::Method::GET,
        &format!("{}/.well-known/oauth-protected-resource/mcp", e.base),
        &[],
        "",
    )
    .await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.json()["resource"], mcp.as_str());

    let bearer = format!("Bearer {}", e.key);
    let session = common::post(
        &mcp,
        &[("authorization", &bearer)],
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.body);

    // A legacy session belongs to whoever opened it: another key cannot borrow its id.
    let id = session.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    let own = common::post(
        &mcp,
        &[("x-api-key", &e.key), ("mcp-session-id", &id)],
        list.clone(),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let borrowed = common::post(
        &mcp,
        &[("x-api-key", &e.list_only_key), ("mcp-session-id", &id)],
        list,
    )
    .await;
    assert_eq!(borrowed.status, 404, "{}", borrowed.body);
    let delete = common::send(
        http::Method::DELETE,
        &mcp,
        &[("x-api-key", &e.list_only_key), ("mcp-session-id", &id)],
        "",
    )
    .await;
    assert_eq!(delete.status, 404);
}

#[tokio::test]
async fn a_key_reaches_only_the_actions_its_scopes_cover() {
    let e = edge(None).await;
    let mcp = format!("{}/mcp", e.base);
    let headers = |key: &str, method: &str, name: Option<&str>| {
        let mut h = vec![
            ("x-api-key".to_owned(), key.to_owned()),
            ("mcp-protocol-version".to_owned(), "2026-07-28".to_owned()),
            ("mcp-method".to_owned(), method.to_owned()),
        ];
        if let Some(n) = name {
            h.push(("mcp-name".to_owned(), n.to_owned()));
        }
        h
    };
    let send = |h: Vec<(String, String)>, body: serde_json::Value| {
        let mcp = mcp.clone();
        async move {
            let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            common::post(&mcp, &refs, body).await
        }
    };
    let list = send(
        headers(&e.list_only_key, "tools/list", None),
        common::modern("tools/list", 1, json!({})),
    )
    .await;
    assert_eq!(list.json()["result"]["tools"].as_array().unwrap().len(), 2);
    let call = send(
        headers(&e.list_only_key, "tools/call", Some("tool0")),
        common::modern("tools/call", 2, json!({"name": "tool0", "arguments": {}})),
    )
    .await;
    let error = &call.json()["error"];
    assert_eq!(
        error["code"],
        fortress_mcp::seam::FORBIDDEN,
        "{}",
        call.body
    );
    assert!(error["message"].as_str().unwrap().contains("scopes"));
    let full = send(
        headers(&e.key, "tools/call", Some("tool0")),
        common::modern("tools/call", 3, json!({"name": "tool0", "arguments": {}})),
    )
    .await;
    assert!(full.json()["result"].is_object(), "{}", full.body);
}

/// A bad key, a key whose scopes do not cover the call, and a policy denial: each reaches
/// the audit trail with its decision, and no event holds a key.
#[tokio::test]
async fn every_refusal_is_audited_with_its_decision_and_never_the_key() {
    let audit = Arc::new(MemoryAuditSink::new());
    let e = edge_with(None, Some(audit.clone())).await;
    let mcp = format!("{}/mcp", e.base);
    let call = |key: String, id: i64, tool: &'static str| {
        let mcp = mcp.clone();
        async move {
            let headers = [
                ("x-api-key", key.as_str()),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", tool),
            ];
            let body = common::modern("tools/call", id, json!({"name": tool, "arguments": {}}));
            common::post(&mcp, &headers, body).await
        }
    };
    let forged = format!("{}x", &e.key[..e.key.len() - 1]);
    let bad = call(forged.clone(), 1, "tool0").await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    let scoped = call(e.list_only_key.clone(), 2, "tool0").await;
    assert_eq!(
        scoped.json()["error"]["code"],
        fortress_mcp::seam::FORBIDDEN
    );
    let denied = call(e.key.clone(), 3, "tool1").await;
    assert_eq!(
        denied.json()["error"]["code"],
        fortress_mcp::seam::FORBIDDEN
    );
    let allowed = call(e.key.clone(), 4, "tool0").await;
    assert!(allowed.json()["result"].is_object(), "{}", allowed.body);

    // Each answer above came after its event was recorded.
    let events = audit.events();
    let unauthenticated = events
        .iter()
        .find(|e| e.denial.as_deref() == Some("unauthenticated"))
        .expect("the bad key is audited");
    assert_eq!(unauthenticated.outcome, Outcome::Denied);
    assert_eq!(unauthenticated.detail["failure"], "invalid credential");

    let scope = events
        .iter()
        .find(|e| e.subject.id == "bob" && e.action == "tools/call")
        .expect("the scope refusal is audited");
    assert_eq!(scope.outcome, Outcome::Denied);
    assert_eq!(scope.denial.as_deref(), Some("forbidden"));
    assert_eq!(scope.resource, "tool:up/tool0");
    let decision = scope.decision.as_ref().expect("a decision");
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.reasons[0].contains("scopes"), "{decision:?}");
    assert_eq!(scope.detail["refused_by"], "key_scope");
    assert_eq!(scope.detail["key_scopes"], json!(["tools/list"]));

    let policy = events
        .iter()
        .find(|e| e.subject.id == "alice" && e.resource == "tool:up/tool1")
        .expect("the policy denial is audited");
    assert_eq!(policy.outcome, Outcome::Denied);
    let decision = policy.decision.as_ref().expect("a decision");
    assert_eq!(decision.effect, Effect::Deny);
    assert!(!decision.policy_version.is_empty());
    assert!(
        events
            .iter()
            .any(|e| e.resource == "tool:up/tool0" && e.outcome == Outcome::Success)
    );

    let recorded = serde_json::to_string(&events).unwrap();
    for key in [&e.key, &e.list_only_key, &forged] {
        let secret = key.rsplit('_').next().unwrap();
        assert!(!recorded.contains(secret), "a key leaked into {recorded}");
    }
}

#[tokio::test]
async fn https_is_served_with_tls_1_3_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let tls = fortress_core::tls::server_config(&cert_path, &key_path).unwrap();
    let e = edge(Some(tls)).await;
    let port = e.base.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/mcp");
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = |max: Option<reqwest::tls::Version>| {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap());
        if let Some(max) = max {
            builder = builder.max_tls_version(max);
        }
        builder.build().unwrap()
    };
    let ping = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
    .to_string();
    let reply = client(None)
        .post(&url)
        .header("x-api-key", &e.key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(ping.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let challenge = client(None)
        .post(&url)
        .body(ping.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let challenge = challenge.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("https://localhost:"), "{challenge}");
    let old = client(Some(reqwest::tls::Version::TLS_1_2))
        .post(&url)
        .body(ping)
        .send()
        .await;
    assert!(old.is_err(), "a TLS 1.2-only client must not connect");
}
