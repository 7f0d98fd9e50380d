//! `fortress-mcp demo`: the embedded default, offline and in one process.
//!
//! - a data directory (SQLite vault and hash-chained audit trail, the demo policy);
//! - a mock helpdesk: [`MockZendesk`] on `127.0.0.1`, seeded with tickets containing PII;
//! - the built-in Zendesk connector, whose API token is stored in the vault and injected
//!   per call by the governance stack;
//! - the default core stack: Cedar policy (a file written for the demo), the default
//!   redactor, the durable audit trail;
//! - a gateway API key (`fmk_…`) issued at every start for the demo user [`DEMO_USER`],
//!   stored hashed in the data directory's key store (the previous start's key is revoked);
//!   the endpoint accepts nothing else (a request without it gets `401`);
//! - the MCP endpoint on `127.0.0.1` (port from [`DemoOptions::listen`]), with the admin
//!   dashboard under `/admin/` on the same listener (owner `admin`, password printed on
//!   first start): its Traffic Feed shows every call, its kill switch stops them, and its
//!   connector list is [`DemoConnectors`].
//!
//! Another binary can start the same thing in-process with [`start`] and serve it until it
//! calls [`DemoHandle::shutdown`]. Given [`DemoOptions::shared`], the demo records into a
//! dashboard shared with other gateways and obeys its kill switch, and mounts none itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fortress_core::admin::embedded::{EmbeddedAdmin, SharedAdmin};
use fortress_core::admin::mount::MountedAdmin;
use fortress_core::admin::policy_editor::{PolicyEditor, PolicySet};
use fortress_core::admin::{AdminServer, bootstrap_owner};
use fortress_core::audit::{AuditSink, DurableAuditSink};
use fortress_core::keys::{KeyFormat, KeyStore, NewKey, load_or_create_pepper};
use fortress_core::policy::{CedarEngine, PolicyDocuments};
use fortress_core::redact::DefaultRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::keys::{MASTER_KEY_ENV, ManagedKeys, RootKey};
use fortress_core::vault::{EnvelopeVault, Vault};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::mock::MockZendesk;
use crate::server::{McpServer, ServerConfig};
use crate::virtual_server::{Naming, VirtualServer};

mod directory;

pub use directory::{CONNECTORS_FILE, DemoConnectors, Helpdesk};

/// The connector (and namespace) name of the demo helpdesk.
pub const DEMO_CONNECTOR: &str = "zendesk";
/// The workspace of the demo's user: the same as the PAT demo's, so a dashboard watching
/// both counts the same users and its workspace kill switch stops both.
pub const DEMO_WORKSPACE: &str = fortress_core::admin::embedded::DEMO_WORKSPACE;
/// The user the demo's API key acts as (the principal of the demo policy).
pub const DEMO_USER: &str = "demo";
/// The label of the demo's API keys in the key store.
pub const DEMO_KEY_NAME: &str = "fortress-mcp demo";
/// The environment variable that may hold the key store's pepper (otherwise a file in the
/// data directory).
pub const DEMO_PEPPER_ENV: &str = "FORTRESS_MCP_KEY_PEPPER";
/// The helpdesk agent the demo's API token belongs to.
pub const DEMO_AGENT_EMAIL: &str = "agent@helpdesk.example";

/// The Cedar policy written for the demo: the demo key's user may list and call the
/// helpdesk tools, except closing a ticket.
pub const DEMO_POLICY: &str = r#"// The fortress-mcp demo policy. Edit it in the dashboard (Management → Policy, set "mcp"):
// validate, dry-run, apply; applied edits take effect at once and are written back here.

@id("demo-helpdesk")
@reason("the demo user may use the helpdesk")
permit (
  principal == User::"demo",
  action in Action::"mcp",
  resource in Workspace::"demo"
);

@id("demo-no-closing")
@reason("assistants may not close tickets")
forbid (
  principal,
  action == Action::"tools/call",
  resource == Tool::"zendesk/update_ticket"
)
when {
  context has tool_arguments &&
  context.tool_arguments has status &&
  context.tool_arguments.status == "closed"
};
"#;

/// The tool arguments the demo policy may look at.
pub const DEMO_TOOL_ARGUMENTS: &str = r#"// Tool arguments visible to policies (fields of the helpdesk tools).
type ToolArguments = {
  query?: String,
  sort_by?: String,
  sort_order?: String,
  page?: Long,
  per_page?: Long,
  ticket_id?: Long,
  body?: String,
  public?: Bool,
  status?: String,
  priority?: String,
  type?: String,
  assignee_id?: Long,
  tags?: Set<String>,
  comment?: String,
};
"#;

/// Where and how the demo runs.
#[derive(Clone)]
pub struct DemoOptions {
    /// Address of the MCP endpoint (default `127.0.0.1:8765`).
    pub listen: SocketAddr,
    /// The data directory (default `./fortress-demo-data`).
    pub data_dir: PathBuf,
    /// A dashboard shared with other gateways (its audit sink and kill switch); `None`:
    /// the demo opens its own, under `/admin/` on its listener.
    pub shared: Option<SharedAdmin>,
    /// A vault shared with other gateways under one dashboard (so the dashboard's
    /// credential page and connector removal reach the helpdesk token); `None`: the demo
    /// opens its own in the data directory.
    pub vault: Option<Arc<dyn Vault>>,
}

impl std::fmt::Debug for DemoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoOptions")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("shared", &self.shared.is_some())
            .field("vault", &self.vault.is_some())
            .finish()
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            data_dir: PathBuf::from("fortress-demo-data"),
            shared: None,
            vault: None,
        }
    }
}

/// Where the standalone demo mounts its dashboard.
pub const DASHBOARD_PATH: &str = "/admin";
/// The owner account of the standalone demo's dashboard.
pub const DASHBOARD_OWNER: &str = "admin";

/// The demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Files or sockets.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// An engine could not be set up.
    #[error("{0}")]
    Setup(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError::Setup(format!("{what}: {e}"))
}

/// The standalone demo's own dashboard.
struct OwnDashboard {
    url: String,
    password: Option<Secret>,
    durable: Arc<DurableAuditSink>,
}

/// A running demo.
pub struct DemoHandle {
    url: String,
    key: Secret,
    data_dir: PathBuf,
    mock: MockZendesk,
    audit: Arc<dyn AuditSink>,
    dashboard: Option<OwnDashboard>,
    connectors: Arc<DemoConnectors>,
    policy: Arc<PolicyEditor>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for DemoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoHandle")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Starts the demo: data directory, mock helpdesk, vault, connector, stack, endpoint.
pub async fn start(options: DemoOptions) -> Result<DemoHandle, DemoError> {
    let data_dir = options.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(io(format!("cannot create {}", data_dir.display())))?;
    let policy_dir = write_policy(&data_dir)?;

    // The audit trail and kill switch: a shared dashboard's, or the embedded dashboard's
    // own (hash-chained in the data dir, checkpoints signed with the deployment's key).
    let (shared, embedded) = match options.shared.clone() {
        Some(shared) => (shared, None),
        None => {
            let embedded = EmbeddedAdmin::open(&data_dir, WorkspaceId::new(DEMO_WORKSPACE))
                .await
                .map_err(setup("dashboard stores"))?;
            (embedded.shared(), Some(embedded))
        }
    };
    let audit = shared.audit.clone();

    // The vault. The master key never sits next to the data: it comes from
    // FORTRESS_MASTER_KEY, or lives only as long as this process (the demo stores its
    // helpdesk token again at every start).
    let vault: Arc<dyn Vault> = match options.vault.clone() {
        Some(vault) => vault,
        None => {
            let master = if std::env::var_os(MASTER_KEY_ENV).is_some() {
                RootKey::from_env(MASTER_KEY_ENV).map_err(setup("master key"))?
            } else {
                RootKey::generate()
            };
            Arc::new(
                EnvelopeVault::open_sqlite(
                    &data_dir,
                    Arc::new(ManagedKeys::new(master)),
                    audit.clone(),
                )
                .await
                .map_err(setup("vault"))?,
            )
        }
    };

    // The helpdesk and its API token, known only to the mock and the vault.
    let token = Secret::from_text(format!("zd-demo-{}", uuid::Uuid::new_v4().simple()));
    let mock = MockZendesk::start(DEMO_AGENT_EMAIL, token.expose_str().unwrap_or_default())
        .await
        .map_err(io("cannot start the mock helpdesk"))?;

    // The connectors the dashboard manages: kept in the data dir (the helpdesk alone on
    // first start), served by a virtual server whose set changes while it serves.
    let server = Arc::new(
        VirtualServer::managed(Vec::new(), Naming::default()).map_err(setup("virtual server"))?,
    );
    let connectors = Arc::new(
        DemoConnectors::open(
            &data_dir,
            server.clone(),
            vault.clone(),
            WorkspaceId::new(DEMO_WORKSPACE),
            Helpdesk {
                base_url: mock.base_url(),
                email: DEMO_AGENT_EMAIL.into(),
                token,
            },
        )
        .await
        .map_err(setup("connectors"))?,
    );

    // The policy the dashboard's editor edits (set `mcp`): applied edits are written back
    // to the policy directory and swapped into this engine.
    let documents = PolicyDocuments::from_dir(&policy_dir).map_err(setup("demo policy"))?;
    let policy = Arc::new(CedarEngine::new(&documents).map_err(setup("demo policy"))?);
    let editor = Arc::new(PolicyEditor::new(policy.clone(), documents).persist_to(&policy_dir));
    // The guard is the dashboard's kill switch: an engaged switch refuses the next call.
    let stack = GovernanceStack::builder()
        .audit(audit.clone())
        .guard(shared.kill_switch.clone())
        .policy(policy)
        .redactor(Arc::new(DefaultRedactor::new()))
        .vault(vault.clone())
        .responder(Arc::new(crate::seam::JsonRpcResponder))
        .build()
        .map_err(setup("governance stack"))?;
    // The endpoint accepts the demo's API key only; refusals (no key, a bad key) are
    // audited like every call.
    let keys = KeyStore::open(
        &data_dir,
        KeyFormat::MCP,
        load_or_create_pepper(&data_dir, DEMO_PEPPER_ENV).map_err(io("key pepper"))?,
    )
    .await
    .map_err(setup("key store"))?;
    let key = issue_demo_key(&keys).await?;
    let authenticator = Authenticator::builder()
        .api_keys(keys)
        .audit(audit.clone())
        .build();
    let seam = crate::seam::seam_service(server.clone(), Some(&stack));

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(io(format!("cannot listen on {}", options.listen)))?;
    let addr = listener.local_addr().map_err(io("local address"))?;
    let config = ServerConfig::default();
    let url = format!("http://{addr}{}", config.path);
    let (mounted, dashboard) = match embedded {
        Some(embedded) => {
            let state = embedded
                .state
                .with_vault(vault)
                .with_connectors(connectors.clone())
                .with_policy_set(policy_set(editor.clone()));
            let password = bootstrap_owner(&state.accounts, DASHBOARD_OWNER)
                .await
                .map_err(setup("dashboard owner"))?;
            let server = AdminServer::new(state);
            let own = OwnDashboard {
                url: format!("http://{addr}{DASHBOARD_PATH}/"),
                password,
                durable: embedded.durable,
            };
            (Some(MountedAdmin::new(DASHBOARD_PATH, server)), Some(own))
        }
        None => (None, None),
    };
    let handler = McpServer::new(config, server, seam)
        .with_authenticator(Arc::new(authenticator))
        .handler();
    let gateway = move |request, peer| {
        let handler = handler.clone();
        async move { handler.handle(request, Some(peer)).await }
    };
    let stop = CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let task = tokio::spawn(fortress_core::admin::mount::serve(
        listener, mounted, None, gateway, signal,
    ));
    tracing::info!(%url, data_dir = %data_dir.display(), "fortress-mcp demo listening");
    Ok(DemoHandle {
        url,
        key,
        data_dir,
        mock,
        audit,
        dashboard,
        connectors,
        policy: editor,
        stop,
        task,
    })
}

/// Issues this start's demo key (shown once, stored hashed) and revokes the ones issued
/// before, so exactly the printed key works.
async fn issue_demo_key(keys: &KeyStore) -> Result<Secret, DemoError> {
    for old in keys
        .list(Some(DEMO_WORKSPACE))
        .await
        .map_err(setup("key store"))?
    {
        if old.name == DEMO_KEY_NAME && old.revoked_at.is_none() {
            keys.revoke(&old.id).await.map_err(setup("key store"))?;
        }
    }
    let mut new = NewKey::user(DEMO_WORKSPACE, DEMO_USER);
    new.name = DEMO_KEY_NAME.to_owned();
    let issued = keys.create(new).await.map_err(setup("key store"))?;
    Ok(issued.token)
}

/// The demo policy exactly as earlier versions wrote it (for the anonymous local subject in
/// the workspace `local`): replaced, since no request is anonymous any more and the demo
/// workspace is shared with PAT's.
fn anonymous_era_policy() -> &'static str {
    r#"// The fortress-mcp demo policy. Edit it and restart the demo to see decisions change.

@id("demo-helpdesk")
@reason("the local demo user may use the helpdesk")
permit (
  principal == User::"anonymous",
  action in Action::"mcp",
  resource in Workspace::"local"
);

@id("demo-no-closing")
@reason("assistants may not close tickets")
forbid (
  principal,
  action == Action::"tools/call",
  resource == Tool::"zendesk/update_ticket"
)
when {
  context has tool_arguments &&
  context.tool_arguments has status &&
  context.tool_arguments.status == "closed"
};
"#
}

/// The MCP gateway's policy set for a dashboard: named `mcp`, dry-run over MCP calls.
fn policy_set(editor: Arc<PolicyEditor>) -> PolicySet {
    PolicySet::new(crate::MCP_POLICY_SET, editor).for_actions(crate::MCP_ACTIONS)
}

/// Writes the demo policy unless the user already has one (so edits survive restarts).
fn write_policy(data_dir: &Path) -> Result<PathBuf, DemoError> {
    let dir = data_dir.join("policy");
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    for (name, text) in [
        ("demo.cedar", DEMO_POLICY),
        ("tool_arguments.cedarschema", DEMO_TOOL_ARGUMENTS),
    ] {
        let path = dir.join(name);
        let outdated = name == "demo.cedar"
            && std::fs::read_to_string(&path).is_ok_and(|t| t == anonymous_era_policy());
        if !path.exists() || outdated {
            std::fs::write(&path, text).map_err(io(format!("cannot write {}", path.display())))?;
        }
    }
    Ok(dir)
}

impl DemoHandle {
    /// The MCP endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The API key clients connect with (issued at this start).
    pub fn api_key(&self) -> &Secret {
        &self.key
    }

    /// The mock helpdesk behind the connector.
    pub fn helpdesk(&self) -> &MockZendesk {
        &self.mock
    }

    /// The connectors, as a dashboard manages them.
    pub fn connectors(&self) -> Arc<DemoConnectors> {
        self.connectors.clone()
    }

    /// The demo policy as a dashboard's policy editor edits it (set `mcp`, over the MCP
    /// calls in the audit trail).
    pub fn policy_set(&self) -> PolicySet {
        policy_set(self.policy.clone())
    }

    /// The URL of the demo's own dashboard (`None` when it shares another one).
    pub fn dashboard_url(&self) -> Option<&str> {
        self.dashboard.as_ref().map(|d| d.url.as_str())
    }

    /// What to print for the user: the URL and copy-paste commands to connect, then the
    /// demo's own dashboard and (on first start only) its owner's password.
    pub fn instructions(&self) -> String {
        let mut text = self.connect_instructions();
        if let Some(dashboard) = &self.dashboard {
            let login = match dashboard.password.as_ref().and_then(|p| p.expose_str()) {
                Some(password) => format!("owner {DASHBOARD_OWNER} / password {password}"),
                None => format!("owner {DASHBOARD_OWNER} (password printed on first start)"),
            };
            text.push_str(&format!(
                "\nDashboard: {}\nDashboard login: {login}\n",
                dashboard.url
            ));
        }
        text
    }

    /// The URL, the API key and copy-paste commands to connect.
    pub fn connect_instructions(&self) -> String {
        let url = &self.url;
        let key = self.key.expose_str().unwrap_or_default();
        let data = self.data_dir.display();
        format!(
            r#"MCP Fortress demo is listening on {url}
(offline: the helpdesk is a local mock of the Zendesk API with a few seeded tickets; its API
token is encrypted in the vault under {data}, every call is audited there, and the policy is
{data}/policy/demo.cedar — e-mail addresses and phone numbers in answers are masked)

API key (user "{DEMO_USER}", valid until the demo restarts): {key}

Connect:
  MCP Inspector:   npx @modelcontextprotocol/inspector   (transport "Streamable HTTP", URL {url},
                   header x-api-key: {key})
  Claude Code:     claude mcp add --transport http fortress-demo {url} --header "x-api-key: {key}"
  stdio clients:   fortress-mcp connect {url} --header "x-api-key: {key}"

Try the tools zendesk__search_tickets {{"query": "refund"}}, zendesk__get_ticket {{"ticket_id": 1}},
zendesk__add_comment, and zendesk__update_ticket with "status": "closed" (denied by policy).
"#
        )
    }

    /// Stops the endpoint and the helpdesk, and makes the audit trail durable.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        self.stop.cancel();
        let served = self
            .task
            .await
            .map_err(|e| DemoError::Setup(format!("the endpoint task failed: {e}")))?;
        served.map_err(io("serving"))?;
        self.mock.stop();
        self.audit.flush().await.map_err(setup("audit flush"))?;
        // A shared sink is shut down by the one who opened it.
        if let Some(dashboard) = self.dashboard {
            dashboard
                .durable
                .shutdown()
                .await
                .map_err(setup("audit shutdown"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anonymous_era_policy_is_replaced_and_edits_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy/demo.cedar");
        std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
        std::fs::write(&policy, anonymous_era_policy()).unwrap();
        write_policy(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&policy).unwrap(), DEMO_POLICY);

        let edited = DEMO_POLICY.replace("closed", "solved");
        std::fs::write(&policy, &edited).unwrap();
        write_policy(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&policy).unwrap(), edited);
    }
}

#[cfg(test)]
mod workspace_tests {
    use super::*;

    #[test]
    fn the_demo_policy_permits_the_shared_demo_workspace() {
        assert!(DEMO_POLICY.contains(&format!("resource in Workspace::\"{DEMO_WORKSPACE}\"")));
        assert_eq!(
            DEMO_WORKSPACE,
            fortress_core::admin::embedded::DEMO_WORKSPACE
        );
    }
}
