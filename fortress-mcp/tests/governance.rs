//! Governance end to end: the real `fortress-mcp serve` binary with the default engines on
//! (Cedar policy, SQLite audit trail, redaction, tool pinning, kill switch, API keys and
//! OAuth), an upstream built with the official Python `mcp` SDK over stdio
//! (`tests/interop/governed_server.py`), and the official Python SDK client
//! (`tests/interop/governed_client.py`). Dependencies come from `scripts/setup-test-deps.sh`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fortress_core::audit::{AuditEvent, AuditStore, Outcome, SqliteAuditStore};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The Python interpreter of the project's test environment (set up once per process).
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = root().join("scripts/setup-test-deps.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run setup");
        assert!(
            output.status.success(),
            "test dependencies could not be installed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        root().join(".venv/bin/python")
    })
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A configured gateway: its directory, config file, and (once started) its URL.
struct Gateway {
    dir: tempfile::TempDir,
    config: PathBuf,
}

const POLICY: &str = r#"
@id("lists")
permit (principal, action in [Action::"tools/list", Action::"resources/list", Action::"prompts/list"], resource is Workspace);

@id("support-crm")
@reason("support agents use the CRM")
permit (principal in Group::"support", action in [Action::"tools/list", Action::"tools/call"], resource in Connector::"crm");

@id("no-deletes")
@reason("accounts are never deleted through assistants")
forbid (principal, action in [Action::"tools/list", Action::"tools/call"], resource == Tool::"crm/delete_account");

@id("refund-limit")
@reason("refunds over 100 need a human")
forbid (principal, action == Action::"tools/call", resource == Tool::"crm/refund")
unless { context has tool_arguments && context.tool_arguments has amount && context.tool_arguments.amount <= 100 };
"#;

const ARGUMENTS: &str = "type ToolArguments = { amount?: Long, customer?: String };";

impl Gateway {
    fn new(auth: &str, pinning: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("main.cedar"), POLICY).unwrap();
        std::fs::write(policies.join("arguments.cedarschema"), ARGUMENTS).unwrap();
        let server = interop_dir().join("governed_server.py");
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[data]
dir = {data:?}

[auth]
{auth}

[policy]
dir = {policies:?}
show_reasons = true

[pinning]
mode = "{pinning}"

[kill_switch]
poll_ms = 100

[[upstream]]
name = "crm"
command = {python:?}
args = [{server:?}]
env = {{ TOOL_VERSION_FILE = {version:?} }}
"#,
            data = dir.path().join("data"),
            python = python(),
            version = dir.path().join("tool-version.txt"),
        );
        let path = dir.path().join("fortress.toml");
        std::fs::write(&path, config).unwrap();
        Self { dir, config: path }
    }

    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
            .args(&args[..1])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
            .output()
            .expect("run fortress-mcp");
        assert!(
            output.status.success(),
            "fortress-mcp {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn create_key(&self, groups: &[&str]) -> String {
        let mut args = vec![
            "keys",
            "create",
            "--workspace",
            "acme",
            "--subject",
            "alice",
        ];
        for g in groups {
            args.extend(["--group", g]);
        }
        let out = self.cli(&args);
        out.lines()
            .find_map(|l| l.strip_prefix("key: "))
            .expect("a key line")
            .to_owned()
    }

    fn serve(&self) -> (Proc, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fortress-mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("fortress-mcp never listened");
        (Proc(child), url)
    }

    async fn audit_events(&self) -> Vec<AuditEvent> {
        let store = SqliteAuditStore::open_in(&self.dir.path().join("data"))
            .await
            .expect("audit store");
        store
            .events_after(0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event().unwrap())
            .collect()
    }
}

/// Runs one step of the Python SDK client.
fn client(url: &str, token: Option<&str>, mode: &str, step: &[&str]) -> Value {
    let mut command = Command::new(python());
    command
        .arg(interop_dir().join("governed_client.py"))
        .arg("--mode")
        .arg(mode);
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    let output = command.arg(url).args(step).output().expect("run client");
    assert!(
        output.status.success(),
        "client {step:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn error_of(outcome: &Value) -> &str {
    outcome["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {outcome}"))
}

fn calls<'a>(events: &'a [AuditEvent], tool: &str) -> Vec<&'a AuditEvent> {
    events
        .iter()
        .filter(|e| e.action == "tools/call" && e.resource == format!("tool:crm/{tool}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn governed_calls_through_the_real_binary_with_the_python_sdk() {
    let gateway = Gateway::new("api_keys = true", "require_approval");
    let key = gateway.create_key(&["support"]);
    assert!(key.starts_with("fmk_"));
    let (_proc, url) = gateway.serve();
    let modern = "2026-07-28";

    // Without a key: 401 with a challenge naming the resource metadata, which is public.
    let reply = common::send(
        http::Method::POST,
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 401);
    let challenge = reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    let metadata_url = challenge
        .split('"')
        .nth(1)
        .expect("a quoted metadata URL")
        .to_owned();
    let metadata = common::send(http::Method::GET, &metadata_url, &[], "").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.json()["resource"], url.as_str());

    // Every tool is new: nothing is visible until an admin approves (pinning).
    let seen = client(&url, Some(&key), modern, &["list"]);
    assert_eq!(seen["tools"], json!([]));
    let pending = gateway.cli(&["tools", "pending"]);
    assert!(pending.contains("\"tool\":\"crm/lookup\""), "{pending}");
    assert!(pending.contains("\"tool\":\"crm/refund\""), "{pending}");
    assert!(
        !pending.contains("delete_account"),
        "a tool policy hides is not even offered for approval: {pending}"
    );
    gateway.cli(&["tools", "approve", "crm/lookup", "--by", "ops"]);
    gateway.cli(&["tools", "approve", "crm/refund", "--by", "ops"]);
    let seen = client(
        &url,
        Some(&key),
        modern,
        &["wait-tools", "crm__lookup", "crm__refund"],
    );
    assert_eq!(seen["tools"], json!(["crm__lookup", "crm__refund"]));

    // The scenario in the legacy era too: denied tool invisible and refused, an argument
    // condition allowing one call and denying another, PII masked.
    for mode in [modern, "legacy"] {
        let out = client(&url, Some(&key), mode, &["scenario"]);
        assert_eq!(
            out["tools"],
            json!(["crm__lookup", "crm__refund"]),
            "{mode}"
        );
        let delete = error_of(&out["delete"]);
        assert!(delete.contains("denied by policy"), "{mode}: {delete}");
        assert!(
            delete.contains("accounts are never deleted"),
            "the @reason is shown: {delete}"
        );
        assert!(
            !delete.contains("no-deletes"),
            "policy ids stay internal: {delete}"
        );
        assert_eq!(
            out["small_refund"]["result"]["content"][0]["text"], "refunded 50",
            "{mode}: {}",
            out["small_refund"]
        );
        assert!(error_of(&out["large_refund"]).contains("refunds over 100 need a human"));
        let lookup = out["lookup"]["result"].to_string();
        assert!(lookup.contains("c-1"), "{mode}: {lookup}");
        assert!(
            !lookup.contains("jane.roe") && !lookup.contains("078-05-1120"),
            "{mode}: PII leaked: {lookup}"
        );
        assert!(
            out["lookup"]["result"]["structuredContent"].is_object(),
            "{mode}: structured content kept its shape: {lookup}"
        );
    }

    // The upstream changes `lookup`: hidden and refused until approved again.
    std::fs::write(
        gateway.dir.path().join("tool-version.txt"),
        "Also emails the record out.",
    )
    .unwrap();
    let seen = client(&url, Some(&key), modern, &["wait-tools", "crm__refund"]);
    assert_eq!(seen["tools"], json!(["crm__refund"]));
    let refused = client(
        &url,
        Some(&key),
        modern,
        &["call", "crm__lookup", r#"{"customer":"c-2"}"#],
    );
    assert!(error_of(&refused).contains("not approved"), "{refused}");
    let pending = gateway.cli(&["tools", "pending"]);
    assert!(pending.contains("Also emails the record out."), "{pending}");
    gateway.cli(&["tools", "approve", "crm/lookup"]);
    let seen = client(
        &url,
        Some(&key),
        modern,
        &["wait-tools", "crm__lookup", "crm__refund"],
    );
    assert_eq!(seen["tools"], json!(["crm__lookup", "crm__refund"]));

    // The kill switch stops the next call, with an error naming it.
    gateway.cli(&[
        "kill",
        "engage",
        "--connector",
        "crm",
        "--reason",
        "incident 7",
    ]);
    let stopped = client(
        &url,
        Some(&key),
        modern,
        &[
            "wait-refused",
            "crm__refund",
            r#"{"amount":5}"#,
            "kill switch",
        ],
    );
    assert!(error_of(&stopped).contains("kill switch"), "{stopped}");
    assert!(
        !error_of(&stopped).contains("incident 7"),
        "operator reasons stay internal"
    );

    // The audit trail holds each message's decision, and no response content.
    let events = gateway.audit_events().await;
    let deletes = calls(&events, "delete_account");
    assert_eq!(deletes.len(), 2, "one per era");
    assert!(deletes.iter().all(|e| e.outcome == Outcome::Denied
        && e.decision.as_ref().unwrap().policy_ids == ["no-deletes"]));
    let refunds = calls(&events, "refund");
    assert!(refunds.iter().any(|e| {
        e.outcome == Outcome::Success
            && e.decision
                .as_ref()
                .is_some_and(|d| d.policy_ids == ["support-crm"])
    }));
    assert!(refunds.iter().any(|e| {
        e.outcome == Outcome::Denied
            && e.decision
                .as_ref()
                .is_some_and(|d| d.policy_ids == ["refund-limit"])
    }));
    assert!(
        refunds
            .iter()
            .any(|e| e.denial.as_deref() == Some("kill_switch"))
    );
    let lookups = calls(&events, "lookup");
    assert!(
        lookups
            .iter()
            .any(|e| e.outcome == Outcome::Success && e.redactions.values().sum::<u64>() >= 2)
    );
    assert!(lookups.iter().any(
        |e| e.outcome == Outcome::Denied && e.detail.get("pin") == Some(&json!("not_approved"))
    ));
    assert!(events.iter().all(|e| e.subject.id == "alice"
        || e.action == "authenticate"
        || e.kind != fortress_core::audit::EventKind::Access));
    let admin: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "tool.discovered",
        "tool.changed",
        "tool.approve",
        "kill_switch.engage",
    ] {
        assert!(admin.contains(&action), "{action} audited: {admin:?}");
    }
    let refused = events
        .iter()
        .find(|e| e.action == "authenticate")
        .expect("the request without a key is audited");
    assert_eq!(refused.outcome, Outcome::Denied);
    assert_eq!(refused.client_ip, Some("127.0.0.1".parse().unwrap()));
    let listed = events.iter().find(|e| e.action == "tools/list").unwrap();
    assert!(listed.latency_us > 0);
    let mut files = String::new();
    for entry in std::fs::read_dir(gateway.dir.path().join("data")).unwrap() {
        files.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap_or_default(),
        ));
    }
    assert!(
        !files.contains("078-05-1120"),
        "response content was stored"
    );
}

/// A tiny HTTP server answering every request with `body` (the issuer's JWKS).
fn serve_jwks(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/jwks")
}

/// An ES256 signing key and its public JWK.
fn signing_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use base64::Engine as _;
    let pair = rcgen::KeyPair::generate().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..]),
    });
    (encoding, jwk)
}

fn token(key: &jsonwebtoken::EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_access_tokens_are_checked_against_the_issuers_jwks() {
    const ISSUER: &str = "https://idp.test";
    const AUDIENCE: &str = "https://mcp.test/mcp";
    let (key, jwk) = signing_key("k1");
    let (forged, _) = signing_key("k1");
    let jwks = serve_jwks(json!({ "keys": [jwk] }).to_string());
    let gateway = Gateway::new(
        &format!(
            "api_keys = false\nresource = {AUDIENCE:?}\n[auth.oauth]\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\njwks_url = {jwks:?}"
        ),
        "trust_on_first_use",
    );
    let (_proc, url) = gateway.serve();
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, exp: i64| {
        json!({"iss": ISSUER, "aud": aud, "sub": "ada", "exp": exp, "iat": now,
               "workspace": "acme", "groups": ["support"]})
    };

    // A valid token: the subject and groups come from its claims, so policy lets ada see
    // the CRM tools (approved on first sight here).
    let good = token(&key, "k1", claims(AUDIENCE, now + 300));
    let seen = client(&url, Some(&good), "2026-07-28", &["list"]);
    assert_eq!(seen["tools"], json!(["crm__lookup", "crm__refund"]));
    let done = client(
        &url,
        Some(&good),
        "legacy",
        &["call", "crm__refund", r#"{"amount":7}"#],
    );
    assert_eq!(done["result"]["content"][0]["text"], "refunded 7", "{done}");

    // Wrong audience, expired, or signed by another key: 401 with the challenge.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for (what, bad) in [
        (
            "audience",
            token(&key, "k1", claims("https://other.test", now + 300)),
        ),
        ("expiry", token(&key, "k1", claims(AUDIENCE, now - 600))),
        (
            "signature",
            token(&forged, "k1", claims(AUDIENCE, now + 300)),
        ),
        ("not a token", "garbage".to_owned()),
    ] {
        let auth = format!("Bearer {bad}");
        let reply = common::send(http::Method::POST, &url, &[("authorization", &auth)], ping).await;
        assert_eq!(reply.status, 401, "{what}");
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    let reply = common::send(http::Method::POST, &url, &[], ping).await;
    assert_eq!(reply.status, 401);
    let metadata_url = reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_owned();
    let metadata = common::send(http::Method::GET, &metadata_url, &[], "").await;
    assert_eq!(metadata.json()["authorization_servers"], json!([ISSUER]));
    assert_eq!(metadata.json()["resource"], AUDIENCE);

    let events = gateway.audit_events().await;
    assert!(
        events.iter().any(|e| e.action == "tools/call"
            && e.subject.id == "ada"
            && e.outcome == Outcome::Success),
        "{:?}",
        events
            .iter()
            .map(|e| (&e.action, &e.subject.id, e.outcome))
            .collect::<Vec<_>>()
    );
}
