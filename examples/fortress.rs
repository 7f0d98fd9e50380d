//! MCP Fortress, PAT Fortress and one dashboard over both, in one process, offline:
//!
//! ```text
//! cargo run -p fortress-examples --example fortress
//! ```
//!
//! Prints the MCP URL with connect commands, the PAT base URL with a gateway key and a
//! curl snippet, and the dashboard URL with the owner's login. Ctrl-C stops everything
//! and makes the audit trail durable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use fortress_examples::launcher::{LaunchOptions, launch};

/// Start MCP Fortress, PAT Fortress and the dashboard together.
#[derive(Parser)]
#[command(name = "fortress")]
struct Cli {
    /// Address of the MCP endpoint.
    #[arg(long, default_value = "127.0.0.1:8765")]
    mcp_listen: SocketAddr,
    /// Address of the Claude API proxy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pat_listen: SocketAddr,
    /// Address of the dashboard.
    #[arg(long, default_value = "127.0.0.1:8081")]
    dashboard_listen: SocketAddr,
    /// Data directory (audit trail, vault, admin accounts, policy).
    #[arg(long, default_value = "fortress-demo-data")]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fortress_core::logging::init(fortress_core::logging::LogFormat::Text, "warn");
    let fortress = launch(LaunchOptions {
        mcp_listen: cli.mcp_listen,
        pat_listen: cli.pat_listen,
        dashboard_listen: cli.dashboard_listen,
        data_dir: cli.data_dir,
    })
    .await?;
    // Printed, not logged: the key and password are for the person who started it.
    println!("{}", fortress.instructions());
    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down; letting open answers finish");
    fortress.shutdown().await
}
