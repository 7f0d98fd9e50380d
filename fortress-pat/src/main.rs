//! `fortress-pat`: serve the governed Claude API proxy, run the offline demo, manage keys.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fortress_pat::config::Config;

#[derive(Parser)]
#[command(
    name = "fortress-pat",
    about = "PAT Fortress: a governed Claude API proxy"
)]
struct Cli {
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
    },
    #[command(flatten)]
    Ops(fortress_core::cli::OpsCommand),
    /// Manage gateway keys.
    Keys {
        /// The TOML configuration (for the data directory and pepper).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: fortress_core::keys::cli::KeysCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let service = config.build().await?;
            let tls = match &config.tls {
                Some(files) => Some(fortress_pat::server::tls_config(&files.cert, &files.key)?),
                None => None,
            };
            let listener = fortress_pat::server::bind(config.listen).await?;
            tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving");
            fortress_pat::server::serve(listener, service, tls, shutdown()).await?;
        }
        Command::Demo { listen } => {
            let demo = fortress_pat::demo::build()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let listener = fortress_pat::server::bind(listen).await?;
            let base = format!("http://{}", listener.local_addr()?);
            let key = demo.key.expose_str().context("key is text")?.to_owned();
            println!("{}", fortress_pat::demo::instructions(&base, &key));
            fortress_pat::server::serve(listener, demo.service, None, shutdown()).await?;
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

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down; letting open answers finish");
}
