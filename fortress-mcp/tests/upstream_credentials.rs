//! Vault credentials injected into MCP upstreams, per call and per user: an HTTP upstream
//! that refuses requests without the caller's bearer token, and a stdio upstream that learns
//! its caller from an environment variable. The credentials are canaries: they must appear
//! in no answer, error, audit record or log line.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::call::Call;
use fortress_core::keys::{KeyFormat, KeyStore, NewKey};
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use fortress_mcp::auth::Authenticator;
use fortress_mcp::governance::{Governance, McpResultRedaction};
use fortress_mcp::pinning::{PinMode, PinStore};
use fortress_mcp::seam::{CREDENTIAL_UNAVAILABLE, DescribeLayer, JsonRpcResponder};
use fortress_mcp::server::{McpServer, ServerConfig};
use fortress_mcp::upstream::Upstream;
use fortress_mcp::upstream::credential::{CredentialSource, HeaderTemplate};
use fortress_mcp::upstream::credentialed::CredentialedStdio;
use fortress_mcp::upstream::http::{HttpConfig, HttpUpstream};
use fortress_mcp::upstream::stdio::StdioConfig;
use fortress_mcp::virtual_server::{Naming, VirtualServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ALICE_CANARY: &str = "alice-CANARY-5b2e9d71c3";
const ALICE_ROTATED: &str = "alice2-CANARY-0e44a1f9b8";
const CAROL_CANARY: &str = "carol-CANARY-9a7c20e6d4";

/// Every log line of this test binary, Fortress at trace level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,fortress_mcp=trace,fortress_core=trace",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in [ALICE_CANARY, ALICE_ROTATED, CAROL_CANARY] {
        assert!(!text.contains(canary), "a credential leaked into {what}");
    }
}

/// What the authenticated upstream saw: the `Authorization` header of every request.
#[derive(Default)]
struct Seen(Mutex<Vec<Option<String>>>);

/// A legacy-era Streamable HTTP MCP server that refuses every request without a bearer
/// token and answers `whoami` with the part of the token before its first `-`.
async fn authenticated_upstream() -> (String, Arc<Seen>) {
    async fn mcp(
        State(seen): State<Arc<Seen>>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen.0.lock().unwrap().push(auth.clone());
        let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
            return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")]).into_response();
        };
        let who = token.split('-').next().unwrap_or_default().to_owned();
        let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let outcome = match message["method"].as_str().unwrap_or_default() {
            "initialize" => json!({"result": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "authenticated", "version": "1"}}}),
            "tools/list" => json!({"result": {"tools": [
                {"name": "whoami", "inputSchema": {"type": "object"}}]}}),
            "tools/call" => json!({"result": {"content": [
                {"type": "text", "text": format!("you are {who}")}]}}),
            other => json!({"error": {"code": -32601, "message": format!("no {other}")}}),
        };
        let mut answer = outcome;
        answer["jsonrpc"] = json!("2.0");
        answer["id"] = id;
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response()
    }
    let seen = Arc::new(Seen::default());
    let router = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(mcp).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/mcp"), seen)
}

/// The governed gateway in front of `upstream`: API keys for alice, bob and carol (all
/// in workspace `acme`), a permit-all policy, an in-memory audit trail.
struct Gateway {
    url: String,
    keys: Vec<String>,
    audit: Arc<MemoryAuditSink>,
    stop: CancellationToken,
    _pins: Option<tempfile::TempDir>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Gateway {
    async fn start(upstream: Arc<dyn Upstream>) -> Self {
        Self::start_with(upstream, false).await
    }

    /// With `pinned`, the seam also runs the item gate with tool pinning (trust on first
    /// use), which reads tool definitions from the upstream on the caller's behalf.
    async fn start_with(upstream: Arc<dyn Upstream>, pinned: bool) -> Self {
        let store = KeyStore::in_memory(KeyFormat::MCP, Secret::from("pepper"))
            .await
            .unwrap();
        let mut keys = Vec::new();
        for user in ["alice", "bob", "carol"] {
            let issued = store.create(NewKey::user("acme", user)).await.unwrap();
            keys.push(issued.token.expose_str().unwrap().to_owned());
        }
        let audit = Arc::new(MemoryAuditSink::new());
        let stack = GovernanceStack::builder()
            .audit(audit.clone())
            .policy(Arc::new(AllowListPolicy::new([AllowRule::anyone(
                "*", "*",
            )])))
            .redactor(Arc::new(PatternRedactor::basic()))
            .body_redaction(Arc::new(McpResultRedaction::default()))
            .vault(Arc::new(MemoryVault::new()))
            .credential_slots(Arc::new(|_: &Call| None::<CredentialSlot>))
            .responder(Arc::new(JsonRpcResponder))
            .build()
            .unwrap();
        let naming = Naming {
            prefix: false,
            ..Naming::default()
        };
        let server = Arc::new(VirtualServer::new(vec![upstream], naming).unwrap());
        let (seam, pins_dir) = if pinned {
            let dir = tempfile::tempdir().unwrap();
            let pins = PinStore::open(dir.path(), PinMode::TrustOnFirstUse)
                .await
                .unwrap();
            let policy = Arc::new(AllowListPolicy::new([AllowRule::anyone("*", "*")]));
            let governance = Governance::new(stack.clone(), policy, Some(pins));
            let describe = DescribeLayer::anonymous(server.clone());
            (governance.seam(server.clone(), describe), Some(dir))
        } else {
            let seam = fortress_mcp::seam::seam_service(server.clone(), Some(&stack));
            (seam, None)
        };
        let auth = Authenticator::builder().api_keys(store).build();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = McpServer::new(ServerConfig::default(), server, seam)
            .with_authenticator(Arc::new(auth));
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(async move { endpoint.serve(listener, signal).await });
        Self {
            url: format!("http://{addr}/mcp"),
            keys,
            audit,
            stop,
            _pins: pins_dir,
        }
    }

    /// A modern-era request as user `who` (0 alice, 1 bob, 2 carol).
    async fn rpc(&self, who: usize, id: i64, method: &str, params: Value) -> Value {
        let name = params["name"].as_str().map(str::to_owned);
        let mut headers = vec![
            ("x-api-key", self.keys[who].as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if let Some(name) = &name {
            headers.push(("mcp-name", name.as_str()));
        }
        let reply = common::post(&self.url, &headers, common::modern(method, id, params)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_no_canary("an answer", &reply.body);
        reply.json()
    }

    async fn whoami(&self, who: usize, id: i64) -> Value {
        self.rpc(
            who,
            id,
            "tools/call",
            json!({"name": "whoami", "arguments": {}}),
        )
        .await
    }
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {answer}"))
}

fn user_slot(user: &str) -> CredentialSlot {
    CredentialSlot::user(WorkspaceId::new("acme"), "svc", user)
}

/// The audit trail and the logs hold no credential, and the call events name the slot.
fn assert_audited_without_credentials(gateway: &Gateway) {
    let events = gateway.audit.events();
    let recorded = serde_json::to_string(&events).unwrap();
    assert_no_canary("the audit trail", &recorded);
    let alice_call = events
        .iter()
        .find(|e| e.subject.id == "alice" && e.action == "tools/call")
        .expect("alice's call is audited");
    let slot = alice_call.detail["credential"]["slot"].as_str().unwrap();
    assert!(slot.contains("alice") && slot.contains("svc"), "{slot}");
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert_no_canary("the logs", &logs);
}

#[tokio::test]
async fn an_http_upstream_gets_each_callers_own_bearer_token_per_call() {
    logs();
    let (upstream_url, seen) = authenticated_upstream().await;
    let vault = Arc::new(MemoryVault::new());
    vault
        .put(&user_slot("alice"), Secret::from(ALICE_CANARY))
        .await
        .unwrap();
    vault
        .put(&user_slot("carol"), Secret::from(CAROL_CANARY))
        .await
        .unwrap();
    let source = CredentialSource::new(vault.clone() as Arc<dyn Vault>, "svc").per_user(true);
    let template = HeaderTemplate::parse("authorization", "Bearer {credential}").unwrap();
    let upstream = HttpUpstream::new("svc", HttpConfig::new(upstream_url))
        .unwrap()
        .with_credential(source, template);
    let gateway = Gateway::start(Arc::new(upstream)).await;

    // Listing connects with the caller's credential (the upstream refuses anything else).
    let tools = gateway.rpc(0, 1, "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "whoami", "{tools}");
    assert_eq!(text_of(&gateway.whoami(0, 2).await), "you are alice");
    assert_eq!(text_of(&gateway.whoami(2, 3).await), "you are carol");

    // Bob has no credential: refused before the upstream is reached, naming only the connector.
    let before = seen.0.lock().unwrap().len();
    let refused = gateway.whoami(1, 4).await;
    assert_eq!(
        refused["error"]["code"], CREDENTIAL_UNAVAILABLE,
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("svc")
    );
    assert_eq!(seen.0.lock().unwrap().len(), before);

    // A rotated credential is used from the next call on.
    vault
        .put(&user_slot("alice"), Secret::from(ALICE_ROTATED))
        .await
        .unwrap();
    assert_eq!(text_of(&gateway.whoami(0, 5).await), "you are alice2");

    // Every request the upstream saw carried a caller's token.
    let seen = seen.0.lock().unwrap().clone();
    assert!(seen.len() >= 5, "{} requests", seen.len());
    for header in &seen {
        let header = header.as_deref().expect("every request is authenticated");
        assert!(
            [ALICE_CANARY, ALICE_ROTATED, CAROL_CANARY]
                .iter()
                .any(|t| header == format!("Bearer {t}")),
            "unexpected header"
        );
    }
    assert_audited_without_credentials(&gateway);
}

/// With tool pinning, a call not preceded by a listing has its tool's definition read from
/// the upstream on the caller's behalf — with the caller's credential, which this upstream
/// demands — and then runs.
#[tokio::test]
async fn pinned_tools_of_a_credentialed_upstream_are_checked_with_the_callers_credential() {
    logs();
    let (upstream_url, seen) = authenticated_upstream().await;
    let vault = Arc::new(MemoryVault::new());
    vault
        .put(&user_slot("alice"), Secret::from(ALICE_CANARY))
        .await
        .unwrap();
    let source = CredentialSource::new(vault as Arc<dyn Vault>, "svc").per_user(true);
    let template = HeaderTemplate::parse("authorization", "Bearer {credential}").unwrap();
    let upstream = HttpUpstream::new("svc", HttpConfig::new(upstream_url))
        .unwrap()
        .with_credential(source, template);
    let gateway = Gateway::start_with(Arc::new(upstream), true).await;
    assert_eq!(text_of(&gateway.whoami(0, 1).await), "you are alice");
    assert!(seen.0.lock().unwrap().iter().all(Option::is_some));
}

fn env_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/env_server.py")
}

#[tokio::test]
async fn a_stdio_upstream_runs_one_child_per_user_with_the_credential_in_its_environment() {
    logs();
    let vault = Arc::new(MemoryVault::new());
    vault
        .put(&user_slot("alice"), Secret::from(ALICE_CANARY))
        .await
        .unwrap();
    vault
        .put(&user_slot("carol"), Secret::from(CAROL_CANARY))
        .await
        .unwrap();
    let source = CredentialSource::new(vault.clone() as Arc<dyn Vault>, "svc").per_user(true);
    let config = StdioConfig::new("python3", [env_server().display().to_string()]);
    let upstream = Arc::new(CredentialedStdio::new(
        "svc",
        config,
        "SERVICE_TOKEN",
        source,
    ));
    let gateway = Gateway::start(upstream.clone()).await;

    let tools = gateway.rpc(0, 1, "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "whoami", "{tools}");
    assert_eq!(text_of(&gateway.whoami(0, 2).await), "you are alice");
    assert_eq!(text_of(&gateway.whoami(2, 3).await), "you are carol");
    assert_eq!(text_of(&gateway.whoami(0, 4).await), "you are alice");
    assert_eq!(upstream.children().await, 2);

    let refused = gateway.whoami(1, 5).await;
    assert_eq!(
        refused["error"]["code"], CREDENTIAL_UNAVAILABLE,
        "{refused}"
    );
    assert_eq!(upstream.children().await, 2);

    // Rotation: alice's next call runs in a child started with the new credential.
    vault
        .put(&user_slot("alice"), Secret::from(ALICE_ROTATED))
        .await
        .unwrap();
    assert_eq!(text_of(&gateway.whoami(0, 6).await), "you are alice2");
    assert_eq!(upstream.children().await, 2);
    assert_audited_without_credentials(&gateway);
}

/// `[[upstream]] credential` in the configuration file, and its mistakes.
#[tokio::test]
async fn upstream_credentials_are_configured_in_toml() {
    let vault: Arc<dyn Vault> = Arc::new(MemoryVault::new());
    let config: fortress_mcp::config::Config = toml::from_str(
        r#"
        [[upstream]]
        name = "remote"
        url = "http://127.0.0.1:9/mcp"
        credential = { header = "authorization", value = "Bearer {credential}", per_user = true }
        "#,
    )
    .unwrap();
    assert!(config.virtual_server_with(Some(vault.clone())).is_ok());
    let error = config.virtual_server().map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("vault"), "{error}");

    for (upstream, expected) in [
        (
            r#"url = "http://127.0.0.1:9/mcp"
            credential = { env = "TOKEN" }"#,
            "not `env`",
        ),
        (
            r#"url = "http://127.0.0.1:9/mcp"
            credential = { header = "authorization", value = "Bearer" }"#,
            "{credential}",
        ),
        (
            r#"command = "true"
            credential = { header = "authorization" }"#,
            "not a header",
        ),
        (
            r#"command = "true"
            credential = { per_user = true }"#,
            "credential.env",
        ),
        (
            r#"kind = "rest"
            definition = "salesforce"
            credential = { env = "TOKEN" }"#,
            "only `per_user`",
        ),
    ] {
        let text = format!("[[upstream]]\nname = \"x\"\n{upstream}\n");
        let config: fortress_mcp::config::Config = toml::from_str(&text).unwrap();
        let error = config
            .virtual_server_with(Some(vault.clone()))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{upstream}: {error}");
    }
}
