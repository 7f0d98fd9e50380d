//! `fortress-pat demo`: a complete gateway in one process, offline — an in-memory key
//! store, the mock Claude API as upstream, a Cedar policy that permits two models and
//! denies the third, a per-key rate limit, and the admin dashboard over an embedded audit
//! store in a fresh data directory — with a key, an owner account and copy-paste snippets.
//!
//! [`build_shared`] builds the same gateway for a dashboard that watches other gateways
//! too: it records into that dashboard's audit sink, consults its kill switch, and hands
//! back what the dashboard manages ([`Demo::managed`]) instead of opening its own.

use std::path::Path;
use std::sync::Arc;

use fortress_core::admin::api::AdminState;
use fortress_core::admin::billing::Money;
use fortress_core::admin::embedded::SharedAdmin;
use fortress_core::admin::policy_editor::PolicyEditor;
use fortress_core::policy::{CedarEngine, PolicyDocuments};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};

use crate::dashboard::{AdminSection, PatDashboard, PatManaged, mount};
use crate::keys::{KeyStore, NewKey};
use crate::limits::{Ledger, LimitsConfig, RateRule, Scope};
use crate::mock::MockClaude;
use crate::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use crate::upstream::{Upstream, UpstreamConfig};

/// The demo's policy: two models allowed, `claude-opus-4-1` denied (default deny), and
/// the workspace's listings allowed.
pub const DEMO_POLICY: &str = r#"// Edit me in the dashboard (Management → Policy), dry-run, then apply.
permit (principal, action, resource == Model::"claude-sonnet-4-5");
permit (principal, action, resource == Model::"claude-haiku-4-5");
permit (principal, action, resource is Workspace);
"#;

/// The demo's workspace (the same as the MCP demo's, so one dashboard covers both).
pub const DEMO_WORKSPACE: &str = fortress_core::admin::embedded::DEMO_WORKSPACE;

/// A running demo's parts.
pub struct Demo {
    /// The service to serve.
    pub service: PatService,
    /// The gateway key issued for the demo user.
    pub key: Secret,
    /// The mock upstream.
    pub mock: MockClaude,
    /// Its own dashboard ([`build`]); `None` when it shares another one ([`build_shared`]).
    pub dashboard: Option<PatDashboard>,
    /// What a dashboard manages in this gateway: keys, vault, policy editor, usage.
    pub managed: PatManaged,
}

/// A demo failure (setup of one of its parts).
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the demo gateway with its own dashboard, keeping the dashboard's stores in
/// `data_dir`.
pub async fn build(data_dir: &Path) -> Result<Demo, DemoError> {
    let parts = parts().await?;
    let dashboard = mount(
        data_dir,
        AdminSection {
            owner: "admin".into(),
            workspace: DEMO_WORKSPACE.into(),
            ..AdminSection::default()
        },
        parts.managed.clone(),
    )
    .await?;
    sample_contract(dashboard.server.state());
    let shared = SharedAdmin {
        audit: dashboard.audit.clone(),
        kill_switch: dashboard.kill_switch.clone(),
    };
    parts.into_demo(shared, Some(dashboard))
}

/// Builds the demo gateway for a dashboard shared with other gateways: calls are recorded
/// into `shared.audit` and refused while `shared.kill_switch` stops them. The caller gives
/// the dashboard [`Demo::managed`] (see [`crate::dashboard::manage`]).
pub async fn build_shared(shared: SharedAdmin) -> Result<Demo, DemoError> {
    parts().await?.into_demo(shared, None)
}

/// A sample contract, so the Billing page has something to compute with.
pub fn sample_contract(state: &AdminState) {
    let mut settings = state.settings.write().unwrap_or_else(|e| e.into_inner());
    settings.contract.pack_size = 10;
    settings.contract.base_rate = Money::from_cents(2_500);
    settings.monthly_fee = Money::from_cents(25_000);
}

/// Everything but the audit sink and the kill switch.
struct Parts {
    key: Secret,
    mock: MockClaude,
    managed: PatManaged,
    policy: Arc<CedarEngine>,
    ledger: Arc<Ledger>,
    upstream: Upstream,
}

impl Parts {
    fn into_demo(
        self,
        shared: SharedAdmin,
        dashboard: Option<PatDashboard>,
    ) -> Result<Demo, DemoError> {
        let service = PatService::with_kill_switch(
            PatParts {
                keys: self.managed.keys.clone(),
                ledger: self.ledger,
                policy: self.policy,
                vault: self.managed.vault.clone(),
                redactor: Arc::new(PatternRedactor::basic()),
                audit: shared.audit,
                upstream: self.upstream,
                archive: None,
            },
            Some(shared.kill_switch),
        )?;
        Ok(Demo {
            service,
            key: self.key,
            mock: self.mock,
            dashboard,
            managed: self.managed,
        })
    }
}

async fn parts() -> Result<Parts, DemoError> {
    let upstream_key = format!("sk-ant-demo-{}", uuid::Uuid::new_v4().simple());
    let mock = MockClaude::start(&upstream_key, 8).await?;
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new(DEMO_WORKSPACE), ANTHROPIC_CONNECTOR);
    vault.put(&slot, Secret::from_text(upstream_key)).await?;
    let vault: Arc<dyn Vault> = Arc::new(vault);
    let mut pepper = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut pepper);
    let keys = KeyStore::in_memory(crate::keys::FORMAT, Secret::new(pepper.to_vec())).await?;
    let issued = keys
        .create(NewKey::user(DEMO_WORKSPACE, "demo-user"))
        .await?;
    let limits = LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(30),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    };
    let ledger = Arc::new(Ledger::new(limits));
    let docs = PolicyDocuments::new().with_policies("demo.cedar", DEMO_POLICY);
    let policy = Arc::new(CedarEngine::new(&docs)?);
    let upstream = Upstream::new(&UpstreamConfig::new(mock.base_url()))?;
    let managed = PatManaged {
        keys,
        vault,
        policy: Some(Arc::new(PolicyEditor::new(policy.clone(), docs))),
        tls: false,
        ledger: Some(ledger.clone()),
        archive: None,
    };
    Ok(Parts {
        key: issued.token,
        mock,
        managed,
        policy,
        ledger,
        upstream,
    })
}

/// The dashboard lines printed for the user.
pub fn dashboard_instructions(url: &str, owner: &str, password: Option<&str>) -> String {
    let login = match password {
        Some(password) => format!("Dashboard owner: {owner} / password: {password}"),
        None => format!("Dashboard owner: {owner} (password set on first start)"),
    };
    format!("Dashboard: {url}\n{login}\n")
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
