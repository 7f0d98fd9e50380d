//! `fortress-pat`: serve the governed Claude API proxy, run the offline demo, manage keys.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fortress_pat::config::Config;

#[derive(Parser)]
#[command(
    name = "fortress-pat",
    about = "PAT Fortress: a governed Claude API proxy"
)]
struct Cli {
    /// Log format: `text` or `json` (one JSON object per line, for log shippers).
    #[arg(
        long,
        global = true,
        env = "FORTRESS_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: fortress_core::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the operator-command variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve with a configuration file.
    Serve {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run an offline demo with a local Claude API mock.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Serve the dashboard on its own address instead of under /admin.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
        /// Where the demo keeps its audit trail and admin accounts (default: a fresh
        /// temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    #[command(flatten)]
    Ops(fortress_core::cli::OpsCommand),
    /// Archive maintenance: purge by retention, retry spooled objects.
    Archive {
        /// The TOML configuration (with an `[archive]` section).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: ArchiveAction,
    },
    /// Manage gateway keys.
    Keys {
        /// The TOML configuration (for the data directory and pepper).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: fortress_core::keys::cli::KeysCommand,
    },
}

#[derive(Subcommand)]
enum ArchiveAction {
    /// Delete archived calls older than their workspace's retention, now.
    Purge,
    /// Deliver spooled objects to the store now.
    Retry,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fortress_core::logging::init(cli.log_format, "info");
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let gateway = config.build_gateway().await?;
            let _maintenance = gateway
                .archive
                .as_ref()
                .map(|archive| archive.spawn_maintenance(config.archive_maintenance()));
            let tls = match &config.tls {
                Some(files) => Some(fortress_pat::server::tls_config(&files.cert, &files.key)?),
                None => None,
            };
            let listeners =
                fortress_core::workers::bind_reuseport(config.listen, config.workers.get())
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
            let addr = listeners[0].local_addr()?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let base = format!("{scheme}://{addr}");
            tracing::info!(%addr, tls = tls.is_some(), workers = config.workers.get(), "serving");
            // Scripts read the bound address from this line.
            println!("listening on {base}");
            let mounted = match &gateway.dashboard {
                Some(dashboard) => start_dashboard(dashboard, &base).await?,
                None => None,
            };
            let ledger = gateway.service.ledger().clone();
            if config.workers.per_worker() {
                fortress_pat::server::serve_on_workers(
                    listeners,
                    gateway.service,
                    mounted,
                    tls,
                    shutdown(),
                )
                .await?;
            } else {
                let listener = tokio::net::TcpListener::from_std(
                    listeners.into_iter().next().context("no listener")?,
                )?;
                fortress_pat::server::serve_with_admin(
                    listener,
                    gateway.service,
                    mounted,
                    tls,
                    shutdown(),
                )
                .await?;
            }
            // Connections are drained: write what they handed over, then exit.
            if let Some(archive) = &gateway.archive {
                archive.flush().await;
            }
            if let Err(error) = ledger.flush().await {
                tracing::error!(%error, "metering flush at exit failed");
            }
            if let Some(dashboard) = gateway.dashboard {
                close_audit(&dashboard).await;
            }
            tracing::info!("stopped");
        }
        Command::Demo {
            listen,
            admin_listen,
            data_dir,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("fortress-pat-demo-{}", uuid::Uuid::new_v4()))
            });
            let demo = fortress_pat::demo::build(&data_dir)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut dashboard = demo.dashboard.context("the demo has its own dashboard")?;
            dashboard.section.listen = admin_listen;
            let listener = fortress_pat::server::bind(listen).await?;
            let base = format!("http://{}", listener.local_addr()?);
            let key = demo.key.expose_str().context("key is text")?.to_owned();
            println!("{}", fortress_pat::demo::instructions(&base, &key));
            let mounted = start_dashboard(&dashboard, &base).await?;
            println!("(demo data in {})", data_dir.display());
            fortress_pat::server::serve_with_admin(
                listener,
                demo.service,
                mounted,
                None,
                shutdown(),
            )
            .await?;
            close_audit(&dashboard).await;
            demo.mock.stop();
        }
        Command::Ops(command) => {
            if !command
                .run(&mut std::io::stdout())
                .await
                .map_err(|e| anyhow::anyhow!(e))?
            {
                std::process::exit(1);
            }
        }
        Command::Archive { config, action } => {
            let config = Config::load(&config)?;
            let keys = config.key_provider()?;
            let audit = std::sync::Arc::new(fortress_core::audit::MemoryAuditSink::new());
            let vault = config.open_vault(keys.clone(), audit).await?;
            let archive = config
                .archive(keys, &vault)
                .await?
                .context("the configuration has no [archive] section")?;
            match action {
                ArchiveAction::Purge => {
                    let report = archive.purge(chrono::Utc::now().date_naive()).await?;
                    println!(
                        "purged {} objects in {} day folders",
                        report.objects, report.days
                    );
                }
                ArchiveAction::Retry => {
                    let moved = archive.retry_pending().await?;
                    println!(
                        "delivered {moved} spooled objects; {} still pending",
                        archive.pending()
                    );
                }
            }
        }
        Command::Keys { config, action } => {
            let config = Config::load(&config)?;
            let store = config.key_store().await?;
            action
                .run(&store, &mut std::io::stdout())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    Ok(())
}

/// Starts the dashboard on its own listener, or returns it to mount under its path on
/// the gateway's; prints where it is and, on first start, the owner's password.
async fn start_dashboard(
    dashboard: &fortress_pat::dashboard::PatDashboard,
    base: &str,
) -> anyhow::Result<Option<fortress_pat::server::MountedAdmin>> {
    let password = dashboard
        .owner_password
        .as_ref()
        .and_then(|p| p.expose_str())
        .map(str::to_owned);
    let _retention = dashboard.server.spawn_retention(Duration::from_secs(3600));
    let (url, mounted) = match dashboard.section.listen {
        Some(addr) => {
            let listener = fortress_pat::server::bind(addr).await?;
            let url = format!("http://{}/", listener.local_addr()?);
            tokio::spawn(dashboard.server.clone().serve(listener, shutdown()));
            (url, None)
        }
        None => {
            let prefix = dashboard.section.path.trim_end_matches('/').to_owned();
            let url = format!("{base}{prefix}/");
            let mounted = fortress_pat::server::MountedAdmin {
                prefix,
                server: dashboard.server.clone(),
            };
            (url, Some(mounted))
        }
    };
    // Printed, not logged: the password is shown once, to the person who started it.
    println!(
        "{}",
        fortress_pat::demo::dashboard_instructions(&url, &dashboard.owner, password.as_deref())
    );
    Ok(mounted)
}

async fn close_audit(dashboard: &fortress_pat::dashboard::PatDashboard) {
    use fortress_core::audit::AuditSink;
    if let Err(error) = dashboard.durable.flush().await {
        tracing::error!(%error, "audit flush at exit failed");
    }
    if let Err(error) = dashboard.durable.shutdown().await {
        tracing::error!(%error, "audit shutdown failed");
    }
}

/// Completes on SIGINT or SIGTERM: the server then stops accepting and lets open answers
/// finish.
async fn shutdown() {
    fortress_core::workers::shutdown_signal().await;
    tracing::info!("shutting down; letting open answers finish");
}
