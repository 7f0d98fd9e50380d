//! End to end with the official `anthropic` Python SDK against a real PAT server on an
//! ephemeral port. Needs `.venv-pat/` from `scripts/setup-pat-test-deps.sh`; without it
//! the test fails with instructions rather than passing silently.

use std::path::PathBuf;
use std::sync::Arc;

use fortress_core::audit::MemoryAuditSink;
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use fortress_pat::keys::{KeyStore, NewKey};
use fortress_pat::limits::{Ledger, LimitsConfig, RateRule, Scope};
use fortress_pat::mock::MockClaude;
use fortress_pat::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use fortress_pat::upstream::{Upstream, UpstreamConfig};
use tokio_util::sync::CancellationToken;

const SCRIPT: &str = r#"
import sys, anthropic
base, key = sys.argv[1], sys.argv[2]
c = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
user = [{"role": "user", "content": "I am bob@example.com"}]

m = c.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=user)
assert m.content[0].text == "Echo: I am [EMAIL]", m.content[0].text
assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0

with c.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=user) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
assert text == "Echo: I am [EMAIL]", text
assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"

n = c.messages.count_tokens(model="claude-sonnet-4-5", messages=user)
assert n.input_tokens > 0

ids = [model.id for model in c.models.list()]
assert ids == ["claude-sonnet-4-5", "claude-haiku-4-5"], ids

batch = c.messages.batches.create(requests=[
    {"custom_id": "r1", "params": {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": user}},
    {"custom_id": "r2", "params": {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": user}},
])
assert c.messages.batches.retrieve(batch.id).processing_status == "ended"
results = list(c.messages.batches.results(batch.id))
assert [r.custom_id for r in results] == ["r1", "r2"], results
assert all(r.result.type == "succeeded" for r in results), results
assert results[0].result.message.content[0].text == "Echo: I am [EMAIL]"
print("BATCH-TOKENS", sum(r.result.message.usage.input_tokens + r.result.message.usage.output_tokens for r in results))

bearer = anthropic.Anthropic(base_url=base, auth_token=key, max_retries=0)
assert bearer.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=user).id

try:
    c.messages.create(model="claude-opus-4-1", max_tokens=8, messages=user)
    raise SystemExit("denied model: no error")
except anthropic.PermissionDeniedError as e:
    assert e.body["error"]["type"] == "permission_error", e.body

bad = anthropic.Anthropic(base_url=base, api_key="fpk_0123456789abcdef_" + "0" * 64, max_retries=0)
try:
    bad.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=user)
    raise SystemExit("bad key: no error")
except anthropic.AuthenticationError:
    pass

for _ in range(10):
    try:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=user)
    except anthropic.RateLimitError as e:
        assert int(e.response.headers["retry-after"]) >= 1
        assert e.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        break
else:
    raise SystemExit("no RateLimitError")
print("SDK-E2E-OK")
"#;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv-pat/bin/python");
    assert!(
        python.exists(),
        "the anthropic SDK is not installed: run scripts/setup-pat-test-deps.sh ({} missing)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_through_the_gateway() {
    let python = python();
    let upstream_key = "sk-ant-upstream-e2e-secret";
    let mock = MockClaude::start(upstream_key, 3).await.unwrap();
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), ANTHROPIC_CONNECTOR);
    vault.put(&slot, Secret::from(upstream_key)).await.unwrap();
    let keys = KeyStore::in_memory(fortress_pat::keys::FORMAT, Secret::from("pepper"))
        .await
        .unwrap();
    let key = keys.create(NewKey::user("acme", "alice")).await.unwrap();
    let ledger = Arc::new(Ledger::new(LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(11),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    }));
    let service = PatService::new(PatParts {
        keys,
        ledger: ledger.clone(),
        policy: Arc::new(AllowListPolicy::new([
            AllowRule::anyone("*", "model:claude-sonnet*"),
            AllowRule::anyone("*", "model:claude-haiku*"),
            AllowRule::anyone("*", "workspace:*"),
        ])),
        vault: Arc::new(vault),
        redactor: Arc::new(PatternRedactor::basic()),
        audit: Arc::new(MemoryAuditSink::new()),
        upstream: Upstream::new(&UpstreamConfig::new(mock.base_url())).unwrap(),
        archive: None,
    })
    .unwrap();
    let listener = fortress_pat::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let token = stop.clone();
    let server = tokio::spawn(async move {
        fortress_pat::server::serve(listener, service, None, token.cancelled_owned()).await
    });
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&base)
        .arg(key.token.expose_str().unwrap())
        .output()
        .await
        .unwrap();
    stop.cancel();
    server.await.unwrap().unwrap();
    mock.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("SDK-E2E-OK"),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    // The batch's two requests were metered from the results the SDK read (beside the
    // one streamed haiku message).
    let batch_tokens: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BATCH-TOKENS "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the script reports the batch's usage");
    let meter = ledger.meter().await.unwrap();
    let haiku: Vec<_> = meter
        .iter()
        .filter(|(k, _)| k.model == "claude-haiku-4-5")
        .collect();
    assert_eq!(haiku.len(), 1, "{meter:?}");
    assert_eq!(haiku[0].1.requests, 3);
    assert!(haiku[0].1.tokens() > batch_tokens);
}
