//! Everything a new user needs, started together: the MCP Fortress demo (a mock helpdesk
//! behind the Zendesk connector), the PAT Fortress demo (a mock Claude API) and ONE admin
//! dashboard over both, on fixed loopback ports, with the embedded default storage in one
//! data directory (no external services).
//!
//! Both gateways record into the dashboard's audit trail (so its Status Board and Traffic
//! Feed show the calls of both) and consult its kill switch (so one switch stops either or
//! both). Both demos use one workspace ([`DEMO_WORKSPACE`]), so its workspace kill switch
//! stops both and billing counts the users of both. The dashboard manages PAT's gateway
//! keys, Anthropic credential and usage, MCP's connectors (added and removed while
//! serving), and both gateways' policy sets (`pat` and `mcp`).
//!
//! [`DEMO_WORKSPACE`]: fortress_core::admin::embedded::DEMO_WORKSPACE
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use fortress_examples::launcher::{LaunchOptions, launch};
//!
//! let fortress = launch(LaunchOptions::default()).await?;
//! println!("{}", fortress.instructions());
//! tokio::signal::ctrl_c().await?;
//! fortress.shutdown().await
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use fortress_core::admin::AdminServer;
use fortress_core::admin::bootstrap_owner;
use fortress_core::admin::embedded::EmbeddedAdmin;
use fortress_core::admin::mount::SHUTDOWN_GRACE;
use fortress_core::audit::{AuditSink as _, DurableAuditSink};
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_mcp::demo::{DemoHandle, DemoOptions};
use fortress_pat::mock::MockClaude;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The dashboard's owner account.
pub const OWNER: &str = "admin";

/// Where everything listens and keeps its data.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The MCP endpoint (default `127.0.0.1:8765`).
    pub mcp_listen: SocketAddr,
    /// The Claude API proxy (default `127.0.0.1:8080`).
    pub pat_listen: SocketAddr,
    /// The dashboard (default `127.0.0.1:8081`).
    pub dashboard_listen: SocketAddr,
    /// The data directory (default `./fortress-demo-data`).
    pub data_dir: PathBuf,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            mcp_listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            pat_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dashboard_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            data_dir: PathBuf::from("fortress-demo-data"),
        }
    }
}

/// The running gateways and dashboard.
pub struct Fortress {
    /// The MCP endpoint URL.
    pub mcp_url: String,
    /// The Claude API proxy's base URL.
    pub pat_url: String,
    /// The dashboard URL.
    pub dashboard_url: String,
    /// The gateway key issued for the PAT demo user.
    pub pat_key: Secret,
    /// The gateway key issued for the MCP demo user (printed with the connect commands).
    pub mcp_key: Secret,
    /// The owner's password when the account was just created (shown once).
    pub owner_password: Option<Secret>,
    mcp: DemoHandle,
    claude: MockClaude,
    durable: Arc<DurableAuditSink>,
    stop: CancellationToken,
    pat: JoinHandle<Result<(), fortress_pat::server::ServeError>>,
    dashboard: JoinHandle<std::io::Result<()>>,
    retention: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Fortress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fortress")
            .field("mcp_url", &self.mcp_url)
            .field("pat_url", &self.pat_url)
            .field("dashboard_url", &self.dashboard_url)
            .finish_non_exhaustive()
    }
}

/// Starts both gateways and the dashboard; returns once all three are listening.
pub async fn launch(options: LaunchOptions) -> anyhow::Result<Fortress> {
    let data_dir = options.data_dir.clone();
    // One dashboard: its audit trail and kill switch are shared by both gateways. Both
    // demos live in one workspace, whose keys, credentials and connectors it manages (so
    // its workspace kill switch stops both, and billing counts the users of both).
    let embedded = EmbeddedAdmin::open(
        &data_dir,
        WorkspaceId::new(fortress_core::admin::embedded::DEMO_WORKSPACE),
    )
    .await
    .with_context(|| format!("cannot open the dashboard stores in {}", data_dir.display()))?;
    let shared = embedded.shared();

    let pat = fortress_pat::demo::build_shared(shared.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("the PAT demo could not start")?;
    let mcp = fortress_mcp::demo::start(DemoOptions {
        listen: options.mcp_listen,
        data_dir: data_dir.clone(),
        shared: Some(shared),
        // One vault: the dashboard's credential page and connector removal reach both.
        vault: Some(pat.managed.vault.clone()),
    })
    .await
    .context("the MCP demo could not start")?;

    let state = fortress_pat::dashboard::manage(embedded.state, pat.managed.clone())
        .with_connectors(mcp.connectors())
        .with_policy_set(mcp.policy_set());
    fortress_pat::demo::sample_contract(&state);
    let owner_password = bootstrap_owner(&state.accounts, OWNER)
        .await
        .context("cannot create the dashboard owner")?;
    let server = AdminServer::new(state);
    let retention = server.spawn_retention(Duration::from_secs(3600));

    let stop = CancellationToken::new();
    let dashboard_listener = tokio::net::TcpListener::bind(options.dashboard_listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.dashboard_listen))?;
    let dashboard_url = format!("http://{}/", dashboard_listener.local_addr()?);
    let dashboard = tokio::spawn(server.serve(dashboard_listener, stop.clone().cancelled_owned()));

    let pat_listener = fortress_pat::server::bind(options.pat_listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.pat_listen))?;
    let pat_url = format!("http://{}", pat_listener.local_addr()?);
    let pat_task = tokio::spawn(fortress_pat::server::serve(
        pat_listener,
        pat.service,
        None,
        stop.clone().cancelled_owned(),
    ));

    Ok(Fortress {
        mcp_url: mcp.url().to_owned(),
        pat_url,
        dashboard_url,
        pat_key: pat.key,
        mcp_key: mcp.api_key().clone(),
        owner_password,
        mcp,
        claude: pat.mock,
        durable: embedded.durable,
        stop,
        pat: pat_task,
        dashboard,
        retention,
    })
}

impl Fortress {
    /// What to print for the user: the three URLs, how to connect, the PAT key, the
    /// dashboard login.
    pub fn instructions(&self) -> String {
        let key = self.pat_key.expose_str().unwrap_or_default();
        let login = match self.owner_password.as_ref().and_then(|p| p.expose_str()) {
            Some(password) => format!("user {OWNER} / password {password}  (shown once)"),
            None => format!(
                "user {OWNER} (password printed on the first start with this data directory)"
            ),
        };
        format!(
            "Fortress is running (offline; data in {data}). Ctrl-C stops everything.\n\n\
             ── MCP Fortress ─────────────────────────────────────────────\n{mcp}\n\
             ── PAT Fortress ─────────────────────────────────────────────\n{pat}\n\
             ── Dashboard (both gateways) ────────────────────────────────\n\
             Dashboard: {dashboard}\nLogin: {login}\n\
             Traffic shows the calls of both gateways; Management → Kill switches stops them.\n",
            data = self.mcp.data_dir().display(),
            mcp = self.mcp.connect_instructions(),
            pat = fortress_pat::demo::instructions(&self.pat_url, key),
            dashboard = self.dashboard_url,
        )
    }

    /// Stops accepting, lets open answers finish (up to a grace period), and makes the
    /// audit trail durable.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.pat
            .await
            .context("the PAT server task failed")?
            .context("the PAT server failed")?;
        // An open Traffic Feed keeps its event stream open: give it the grace period.
        let mut dashboard = self.dashboard;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut dashboard).await {
            Ok(served) => served
                .context("the dashboard task failed")?
                .context("the dashboard failed")?,
            Err(_) => dashboard.abort(),
        }
        if let Some(retention) = self.retention {
            retention.abort();
        }
        self.mcp.shutdown().await.context("the MCP demo")?;
        self.claude.stop();
        self.durable.flush().await.context("audit flush")?;
        self.durable.shutdown().await.context("audit shutdown")?;
        Ok(())
    }
}
