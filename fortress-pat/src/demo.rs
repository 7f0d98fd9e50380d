//! `fortress-pat demo`: a complete gateway in one process, offline — an in-memory key
//! store, the mock Claude API as upstream, an allow-list that permits two models and
//! denies the third, a per-key rate limit — and a key with copy-paste snippets.

use std::sync::Arc;

use fortress_core::audit::MemoryAuditSink;
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};

use crate::keys::{KeyStore, NewKey};
use crate::limits::{Ledger, LimitsConfig, RateRule, Scope};
use crate::mock::MockClaude;
use crate::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use crate::upstream::{Upstream, UpstreamConfig};

/// A running demo's parts.
pub struct Demo {
    /// The service to serve.
    pub service: PatService,
    /// The gateway key issued for the demo user.
    pub key: Secret,
    /// The mock upstream.
    pub mock: MockClaude,
}

/// Builds the demo gateway.
pub async fn build() -> Result<Demo, Box<dyn std::error::Error + Send + Sync>> {
    let upstream_key = format!("sk-ant-demo-{}", uuid::Uuid::new_v4().simple());
    let mock = MockClaude::start(&upstream_key, 8).await?;
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new("demo"), ANTHROPIC_CONNECTOR);
    vault.put(&slot, Secret::from_text(upstream_key)).await?;
    let mut pepper = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut pepper);
    let keys = KeyStore::in_memory(crate::keys::FORMAT, Secret::new(pepper.to_vec())).await?;
    let issued = keys.create(NewKey::user("demo", "demo-user")).await?;
    let policy = AllowListPolicy::new([
        AllowRule::anyone("*", "model:claude-sonnet*"),
        AllowRule::anyone("*", "model:claude-haiku*"),
        AllowRule::anyone("*", "workspace:*"),
    ]);
    let limits = LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(30),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    };
    let service = PatService::new(PatParts {
        keys,
        ledger: Arc::new(Ledger::new(limits)),
        policy: Arc::new(policy),
        vault: Arc::new(vault),
        redactor: Arc::new(PatternRedactor::basic()),
        audit: Arc::new(MemoryAuditSink::new()),
        upstream: Upstream::new(&UpstreamConfig::new(mock.base_url()))?,
        archive: None,
    })?;
    Ok(Demo {
        service,
        key: issued.token,
        mock,
    })
}

/// The snippets printed for the user.
pub fn instructions(base_url: &str, key: &str) -> String {
    format!(
        r#"PAT Fortress demo is listening on {base_url}
(offline: the upstream is a local Claude API mock; claude-sonnet-4-5 and claude-haiku-4-5
are allowed, claude-opus-4-1 is denied by policy; 30 requests per minute per key)

Your gateway key: {key}

curl:
  curl {base_url}/v1/messages \
    -H "x-api-key: {key}" -H "anthropic-version: 2023-06-01" -H "content-type: application/json" \
    -d '{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"Hi, I am bob@example.com"}}]}}'

Python (pip install anthropic):
  import anthropic
  client = anthropic.Anthropic(base_url="{base_url}", api_key="{key}")
  msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                               messages=[{{"role": "user", "content": "Hi, I am bob@example.com"}}])
  print(msg.content[0].text)   # the e-mail address comes back redacted
"#
    )
}
