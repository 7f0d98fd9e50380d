//! The PAT service end to end in process: keys, describe, limits, policy, redaction,
//! credential injection and the mock Claude API.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use fortress_core::audit::{MemoryAuditSink, Outcome};
use fortress_core::body;
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use fortress_pat::keys::{KeyStore, NewKey};
use fortress_pat::limits::{BudgetRule, Ledger, LimitsConfig, RateRule, Scope, Window};
use fortress_pat::mock::MockClaude;
use fortress_pat::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use fortress_pat::upstream::{Upstream, UpstreamConfig};
use http_body_util::Full;
use serde_json::{Value, json};

const UPSTREAM_KEY: &str = "sk-ant-canary-7f3a9c1e5b";

struct Gateway {
    service: PatService,
    key: String,
    mock: MockClaude,
    audit: Arc<MemoryAuditSink>,
    keys: KeyStore,
}

async fn gateway(limits: LimitsConfig) -> Gateway {
    let mock = MockClaude::start(UPSTREAM_KEY, 4).await.unwrap();
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), ANTHROPIC_CONNECTOR);
    vault.put(&slot, Secret::from(UPSTREAM_KEY)).await.unwrap();
    let keys = KeyStore::in_memory(fortress_pat::keys::FORMAT, Secret::from("pepper"))
        .await
        .unwrap();
    let issued = keys.create(NewKey::user("acme", "alice")).await.unwrap();
    let policy = AllowListPolicy::new([
        AllowRule::anyone("*", "model:claude-sonnet*"),
        AllowRule::anyone("*", "model:claude-haiku*"),
        AllowRule::anyone("*", "model:mock-*"),
        AllowRule::anyone("*", "workspace:*"),
    ]);
    let audit = Arc::new(MemoryAuditSink::new());
    let service = PatService::new(PatParts {
        keys: keys.clone(),
        ledger: Arc::new(Ledger::new(limits)),
        policy: Arc::new(policy),
        vault: Arc::new(vault),
        redactor: Arc::new(PatternRedactor::basic()),
        audit: audit.clone(),
        upstream: Upstream::new(&UpstreamConfig::new(mock.base_url())).unwrap(),
        archive: None,
    })
    .unwrap();
    Gateway {
        service,
        key: issued.token.expose_str().unwrap().to_owned(),
        mock,
        audit,
        keys,
    }
}

fn request(method: &str, path: &str, key: Option<&str>, body: Value) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("x-api-key", key);
    }
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    builder.body(Full::new(bytes)).unwrap()
}

fn message(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

async fn send(gw: &Gateway, req: http::Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let response = gw.service.handle(req, Some(ip)).await;
    let (parts, body) = response.into_parts();
    (parts, body::collect(body).await.unwrap())
}

fn error_type(bytes: &Bytes) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(v["type"], "error");
    v["error"]["type"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn messages_are_redacted_and_the_credential_is_injected_not_forwarded() {
    let gw = gateway(LimitsConfig::default()).await;
    let mut req = request(
        "POST",
        "/v1/messages",
        None,
        message("claude-sonnet-4-5", "I am bob@example.com", false),
    );
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", gw.key).parse().unwrap(),
    );
    req.headers_mut()
        .insert("anthropic-beta", "tools-2024-04-04".parse().unwrap());
    let (parts, bytes) = send(&gw, req).await;
    assert_eq!(parts.status, 200, "{bytes:?}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["content"][0]["text"], "Echo: I am [EMAIL]");
    assert!(parts.headers.contains_key("request-id"));
    let seen = gw.mock.recorded();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["x-api-key"], UPSTREAM_KEY);
    assert!(
        last.headers.get("authorization").is_none(),
        "client auth never forwarded"
    );
    assert_eq!(last.headers["anthropic-beta"], "tools-2024-04-04");
    assert_eq!(last.headers["anthropic-version"], "2023-06-01");
    // The canary upstream key appears in no answer and no audit record.
    assert!(!String::from_utf8_lossy(&bytes).contains(UPSTREAM_KEY));
    let events = gw.audit.events();
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains(UPSTREAM_KEY));
    assert!(!dump.contains(&gw.key));
    assert_eq!(events.last().unwrap().outcome, Outcome::Success);
}

#[tokio::test]
async fn streams_are_redacted_and_metered() {
    let gw = gateway(LimitsConfig::default()).await;
    let req = request(
        "POST",
        "/v1/messages",
        Some(&gw.key),
        message("claude-haiku-4-5", "mail me: carol@example.org ok", true),
    );
    let (parts, bytes) = send(&gw, req).await;
    assert_eq!(parts.status, 200);
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(!text.contains("carol@"), "{text}");
    assert!(text.contains("[EMAIL]"));
    assert!(text.contains("event: message_stop"));
    let meter = gw.service.ledger().meter().await.unwrap();
    assert_eq!(meter.len(), 1);
    assert_eq!(meter[0].0.model, "claude-haiku-4-5");
    assert!(meter[0].1.output_tokens > 0 && meter[0].1.input_tokens > 0);
}

#[tokio::test]
async fn authentication_and_policy_refusals_have_the_claude_shape() {
    let gw = gateway(LimitsConfig::default()).await;
    let body = message("claude-sonnet-4-5", "hi", false);
    let (p, b) = send(&gw, request("POST", "/v1/messages", None, body.clone())).await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (401, "authentication_error")
    );
    // A wrong last digit (never the right one, or the key would be valid).
    let last = if gw.key.ends_with('0') { '1' } else { '0' };
    let bad = format!("{}{last}", &gw.key[..gw.key.len() - 1]);
    let (p, b) = send(
        &gw,
        request("POST", "/v1/messages", Some(&bad), body.clone()),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (401, "authentication_error")
    );
    let denied = message("claude-opus-4-1", "hi", false);
    let (p, b) = send(&gw, request("POST", "/v1/messages", Some(&gw.key), denied)).await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (403, "permission_error")
    );
    assert_eq!(gw.audit.events().last().unwrap().outcome, Outcome::Denied);
    let (p, b) = send(&gw, request("GET", "/v1/files", Some(&gw.key), Value::Null)).await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (403, "permission_error")
    );
    let (p, b) = send(
        &gw,
        request("POST", "/v1/messages", Some(&gw.key), json!({"model": 5})),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (400, "invalid_request_error")
    );
    let small = gw.service.clone().with_max_body(64);
    let big = message("claude-sonnet-4-5", &"x".repeat(200), false);
    let resp = small
        .handle(request("POST", "/v1/messages", Some(&gw.key), big), None)
        .await;
    assert_eq!(resp.status(), 413);
    // Revoked keys stop at once.
    let id = gw.keys.list(None).await.unwrap()[0].id.clone();
    gw.keys.revoke(&id).await.unwrap();
    let (p, _) = send(&gw, request("POST", "/v1/messages", Some(&gw.key), body)).await;
    assert_eq!(p.status, 401);
}

#[tokio::test]
async fn models_are_filtered_by_policy_and_batches_governed_per_request() {
    let gw = gateway(LimitsConfig::default()).await;
    let (p, b) = send(
        &gw,
        request("GET", "/v1/models", Some(&gw.key), Value::Null),
    )
    .await;
    assert_eq!(p.status, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    let ids: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["claude-sonnet-4-5", "claude-haiku-4-5"]);
    assert_eq!(v["last_id"], "claude-haiku-4-5");
    let (p, _) = send(
        &gw,
        request(
            "GET",
            "/v1/models/claude-opus-4-1",
            Some(&gw.key),
            Value::Null,
        ),
    )
    .await;
    assert_eq!(p.status, 403);
    let (p, _) = send(
        &gw,
        request(
            "GET",
            "/v1/models/claude-sonnet-4-5",
            Some(&gw.key),
            Value::Null,
        ),
    )
    .await;
    assert_eq!(p.status, 200);
    let (p, b) = send(&gw, request("POST", "/v1/messages/count_tokens", Some(&gw.key),
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello there"}]}))).await;
    assert_eq!(p.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&b).unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let batch = |model: &str| {
        json!({"requests": [
        {"custom_id": "a", "params": {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}},
        {"custom_id": "b", "params": {"model": model, "max_tokens": 10, "messages": []}}]})
    };
    let before = gw.mock.recorded().len();
    let (p, b) = send(
        &gw,
        request(
            "POST",
            "/v1/messages/batches",
            Some(&gw.key),
            batch("claude-opus-4-1"),
        ),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (403, "permission_error")
    );
    assert_eq!(
        gw.mock.recorded().len(),
        before,
        "a denied batch never reaches upstream"
    );
    let (p, _) = send(
        &gw,
        request(
            "POST",
            "/v1/messages/batches",
            Some(&gw.key),
            batch("claude-haiku-4-5"),
        ),
    )
    .await;
    assert_eq!(p.status, 200);
}

#[tokio::test]
async fn upstream_failures_pass_through_in_shape() {
    let gw = gateway(LimitsConfig::default()).await;
    let (p, b) = send(
        &gw,
        request(
            "POST",
            "/v1/messages",
            Some(&gw.key),
            message("mock-overloaded", "hi", false),
        ),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (529, "overloaded_error")
    );
    let (p, b) = send(
        &gw,
        request(
            "POST",
            "/v1/messages",
            Some(&gw.key),
            message("mock-truncate", "hi", true),
        ),
    )
    .await;
    assert_eq!(p.status, 200);
    let text = String::from_utf8(b.to_vec()).unwrap();
    assert!(
        text.trim_end().ends_with("}") && text.contains("event: error"),
        "{text}"
    );
    assert_eq!(
        gw.audit.events().last().unwrap().outcome,
        Outcome::UpstreamError
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_headers() {
    let limits = LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(2),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    };
    let gw = gateway(limits).await;
    for _ in 0..2 {
        let (p, _) = send(
            &gw,
            request(
                "POST",
                "/v1/messages",
                Some(&gw.key),
                message("claude-sonnet-4-5", "hi", false),
            ),
        )
        .await;
        assert_eq!(p.status, 200);
        assert!(
            p.headers
                .contains_key("anthropic-ratelimit-requests-remaining")
        );
    }
    let (p, b) = send(
        &gw,
        request(
            "POST",
            "/v1/messages",
            Some(&gw.key),
            message("claude-sonnet-4-5", "hi", false),
        ),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (429, "rate_limit_error")
    );
    let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry));
    assert_eq!(p.headers["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(p.headers["anthropic-ratelimit-requests-limit"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_never_overshoot_the_budget() {
    // Each call reserves ~400 tokens (body bytes + max_tokens) and uses ~30, so the budget
    // refuses some calls however the 100 interleave.
    const BUDGET: u64 = 1_000;
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::Workspace,
            window: Window::Day,
            max_tokens: Some(BUDGET),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    let gw = Arc::new(gateway(limits).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("request number {i} with some padding text to count");
            let (p, _) = send(
                &gw,
                request(
                    "POST",
                    "/v1/messages",
                    Some(&gw.key),
                    message("claude-sonnet-4-5", &text, i % 2 == 0),
                ),
            )
            .await;
            p.status.as_u16()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + limited, 100);
    assert!(
        ok > 0 && limited > 0,
        "the budget admits some and refuses others ({ok} ok)"
    );
    let (used, reserved) = gw
        .service
        .ledger()
        .budget_tokens(Scope::Workspace, "acme", Window::Day)
        .await;
    assert_eq!(reserved, 0, "every reservation settled");
    assert!(used <= BUDGET, "used {used} > budget {BUDGET}");
    let meter = gw.service.ledger().meter().await.unwrap();
    let metered: u64 = meter
        .iter()
        .map(|(_, r)| r.input_tokens + r.output_tokens)
        .sum();
    assert_eq!(metered, used, "metering matches the budget's usage");
    assert_eq!(meter[0].1.requests, ok);
}

#[tokio::test]
async fn key_scope_refusals_are_audited_without_the_key() {
    let gw = gateway(LimitsConfig::default()).await;
    let mut limited = NewKey::user("acme", "bob");
    limited.scopes = vec!["no-such-action".into()];
    let limited = gw.keys.create(limited).await.unwrap();
    let token = limited.token.expose_str().unwrap().to_owned();
    let before = gw.audit.events().len();

    let (p, b) = send(
        &gw,
        request(
            "POST",
            "/v1/messages",
            Some(&token),
            message("claude-sonnet-4-5", "hi", false),
        ),
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), error_type(&b).as_str()),
        (403, "permission_error")
    );
    let events = gw.audit.events();
    assert_eq!(events.len(), before + 1, "the refusal is recorded once");
    let refusal = events.last().unwrap();
    assert_eq!(refusal.outcome, Outcome::Denied);
    assert_eq!(refusal.subject.id, "bob");
    assert_eq!(refusal.detail["refused_by"], "key_scope");
    assert_eq!(refusal.detail["key_scopes"], json!(["no-such-action"]));
    let recorded = serde_json::to_string(&events).unwrap();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!recorded.contains(secret), "the key leaked into {recorded}");
    assert!(
        gw.mock.recorded().is_empty(),
        "nothing reached the upstream"
    );
}
