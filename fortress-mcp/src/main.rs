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
            let server = Arc::new(config.virtual_server()?);
            let seam = fortress_mcp::seam::seam_service(server.clone(), None);
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, path = %config.server.path, "fortress-mcp listening");
            // Tests and scripts read the bound address from this line.
            println!("listening on http://{addr}{}", config.server.path);
            let endpoint =
                fortress_mcp::server::McpServer::new(config.server_config(), server, seam);
            endpoint.serve(listener, shutdown_signal()).await?;
        }
        Command::Demo { listen, data_dir } => {
            let demo = fortress_mcp::demo::start(fortress_mcp::demo::DemoOptions {
                listen,
                data_dir,
                shared: None,
            })
            .await
            .context("the demo could not start")?;
            // Tests and scripts read the URL from the first line.
            println!("{}", demo.instructions());
            shutdown_signal().await;
            demo.shutdown().await?;
        }
        Command::Connect { url } => fortress_mcp::bridge::run(&url).await?,
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
