//! The `fortress-mcp` binary: configuration, tracing, and the library's server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fortress-mcp",
    version,
    about = "MCP Fortress: a governed, dual-era MCP gateway"
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
    /// Serve the MCP endpoint described by a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the offline demo: a mock helpdesk behind the Zendesk connector, fully governed.
    Demo {
        /// Address of the MCP endpoint.
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: std::net::SocketAddr,
        /// Data directory (vault, audit trail, demo policy).
        #[arg(long, default_value = "fortress-demo-data")]
        data_dir: PathBuf,
    },
    /// Bridge stdio to a Streamable HTTP MCP endpoint (for stdio-only clients).
    Connect {
        /// The endpoint URL, e.g. http://127.0.0.1:8080/mcp.
        url: String,
        /// A header sent on every request, as `Name: value` (repeatable), e.g.
        /// `--header "x-api-key: fmk_…"` or `--header "Authorization: Bearer …"`.
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Manage gateway API keys (`fmk_…`).
    Keys {
        /// The TOML configuration (for the data directory and pepper).
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: fortress_core::keys::cli::KeysCommand,
    },
    /// Review and approve upstream tool definitions (pinning).
    Tools {
        /// The TOML configuration (for the data directory).
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: fortress_mcp::cli::ToolsCommand,
    },
    /// Engage or release kill switches of a running gateway.
    Kill {
        /// The TOML configuration (for the kill-switch file).
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: fortress_mcp::cli::KillCommand,
    },
    #[command(flatten)]
    Ops(fortress_core::cli::OpsCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fortress_core::logging::init(cli.log_format, "info");
    match cli.command {
        Command::Serve { config } => {
            let config = fortress_mcp::config::Config::load(&config)?;
            let governed = fortress_mcp::governance::assemble::assemble(&config).await?;
            let server = Arc::new(config.virtual_server_with(Some(governed.vault.clone()))?);
            let describe = fortress_mcp::seam::DescribeLayer::anonymous(server.clone());
            let seam = governed.governance.seam(server.clone(), describe);
            let tls = match &config.server.tls {
                Some(files) => Some(fortress_core::tls::server_config(&files.cert, &files.key)?),
                None => None,
            };
            let workers = config.server.workers;
            let listeners =
                fortress_core::workers::bind_reuseport(config.server.listen, workers.get())
                    .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            let addr = listeners[0].local_addr()?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, path = %config.server.path, tls = tls.is_some(), "fortress-mcp listening");
            // Tests and scripts read the bound address from this line.
            println!("listening on {scheme}://{addr}{}", config.server.path);
            let endpoint =
                fortress_mcp::server::McpServer::new(config.server_config(), server, seam)
                    .with_authenticator(Arc::new(governed.authenticator.clone()))
                    .with_session_sealer(governed.session_sealer.clone())
                    .with_revoked_sessions(governed.revoked_sessions.clone());
            let served = if workers.per_worker() {
                endpoint
                    .serve_on_workers(listeners, tls, fortress_core::workers::shutdown_signal())
                    .await
            } else {
                let listener = tokio::net::TcpListener::from_std(
                    listeners.into_iter().next().context("no listener")?,
                )?;
                match tls {
                    Some(tls) => {
                        endpoint
                            .serve_tls(listener, tls, fortress_core::workers::shutdown_signal())
                            .await
                    }
                    None => {
                        endpoint
                            .serve(listener, fortress_core::workers::shutdown_signal())
                            .await
                    }
                }
            };
            governed.shutdown().await;
            served?;
        }
        Command::Keys { config, command } => {
            let config = fortress_mcp::config::Config::load(&config)?;
            let shared = fortress_mcp::governance::assemble::open_shared(&config).await?;
            let store = fortress_mcp::governance::assemble::open_keys(&config, &shared).await?;
            command
                .run(&store, &mut std::io::stdout())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::Tools { config, command } => {
            let config = fortress_mcp::config::Config::load(&config)?;
            command.run(&config, &mut std::io::stdout()).await?;
        }
        Command::Kill { config, command } => {
            let config = fortress_mcp::config::Config::load(&config)?;
            command.run(&config, &mut std::io::stdout()).await?;
        }
        Command::Demo { listen, data_dir } => {
            let demo = fortress_mcp::demo::start(fortress_mcp::demo::DemoOptions {
                listen,
                data_dir,
                ..fortress_mcp::demo::DemoOptions::default()
            })
            .await
            .context("the demo could not start")?;
            // Tests and scripts read the URL from the first line.
            println!("{}", demo.instructions());
            fortress_core::workers::shutdown_signal().await;
            demo.shutdown().await?;
        }
        Command::Connect { url, headers } => {
            fortress_mcp::bridge::run_with_headers(&url, &headers).await?
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
    }
    Ok(())
}
