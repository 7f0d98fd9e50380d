//! Operator commands of `fortress-mcp`: `tools` (tool-definition pinning) and `kill`
//! (kill switches of a running gateway). Keys use the shared
//! [`fortress_core::keys::cli::KeysCommand`].

use std::io::Write;
use std::sync::Arc;

use fortress_core::audit::AuditSink;
use fortress_core::guard::KillTarget;
use fortress_core::guard::kill_file::KillFileEntry;

use crate::config::Config;
use crate::governance::assemble::{kill_file, open_audit, open_pins};

/// Review and approve upstream tool definitions.
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum ToolsCommand {
    /// Approved definitions, one JSON record per line.
    List,
    /// Definitions waiting for approval (new or changed upstream), with what changed.
    Pending,
    /// Approve the pending definition of a tool (`connector/tool`).
    Approve {
        /// The tool, as `connector/tool` (the upstream's name and the tool's own name).
        tool: String,
        /// Approve exactly this hash (default: the latest pending one).
        #[arg(long)]
        hash: Option<String>,
        /// Who approves (recorded in the audit trail).
        #[arg(long, default_value = "admin")]
        by: String,
    },
}

impl ToolsCommand {
    /// Runs the command.
    pub async fn run(self, config: &Config, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let audit = match &self {
            ToolsCommand::Approve { .. } => {
                Some(open_audit(&config.data.dir, &config.audit).await?)
            }
            _ => None,
        };
        let pins = open_pins(config, audit.clone().map(|a| a as Arc<dyn AuditSink>))
            .await?
            .ok_or_else(|| anyhow::anyhow!("tool pinning is off in this configuration"))?;
        match self {
            ToolsCommand::List => {
                for pin in pins.approved().await? {
                    writeln!(out, "{}", serde_json::to_string(&pin)?)?;
                }
            }
            ToolsCommand::Pending => {
                for pin in pins.pending().await? {
                    writeln!(out, "{}", serde_json::to_string(&pin)?)?;
                }
            }
            ToolsCommand::Approve { tool, hash, by } => {
                let hash = pins.approve_pending(&tool, hash.as_deref(), &by).await?;
                writeln!(out, "approved {tool} {hash}")?;
            }
        }
        if let Some(audit) = audit {
            audit.flush().await?;
            audit.shutdown().await?;
        }
        Ok(())
    }
}

/// What a kill switch stops.
#[derive(Debug, clap::Args)]
pub struct KillTargetArgs {
    /// A connector (upstream) name.
    #[arg(long)]
    connector: Option<String>,
    /// A tool of `--connector`.
    #[arg(long, requires = "connector")]
    tool: Option<String>,
    /// A workspace.
    #[arg(long)]
    workspace: Option<String>,
    /// A user of `--workspace`.
    #[arg(long, requires = "workspace")]
    user: Option<String>,
}

impl KillTargetArgs {
    fn target(&self) -> anyhow::Result<KillTarget> {
        Ok(
            match (&self.connector, &self.tool, &self.workspace, &self.user) {
                (Some(c), Some(t), None, None) => KillTarget::tool(c, t),
                (Some(c), None, None, None) => KillTarget::connector(c),
                (None, None, Some(w), Some(u)) => KillTarget::user(w, u),
                (None, None, Some(w), None) => KillTarget::workspace(w.as_str()),
                _ => {
                    anyhow::bail!("name one target: --connector [--tool], or --workspace [--user]")
                }
            },
        )
    }
}

/// Engage or release kill switches (a running gateway applies them within a second).
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum KillCommand {
    /// Stop a connector, tool, workspace or user.
    Engage {
        /// What is stopped.
        #[command(flatten)]
        target: KillTargetArgs,
        /// Why (kept for operators and the audit; never shown to callers).
        #[arg(long)]
        reason: String,
        /// Who.
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Release a switch.
    Release {
        /// What is released.
        #[command(flatten)]
        target: KillTargetArgs,
    },
    /// Engaged switches, one JSON record per line.
    List,
}

impl KillCommand {
    /// Runs the command.
    pub fn run(self, config: &Config, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let file = kill_file(config);
        match self {
            KillCommand::Engage { target, reason, by } => {
                let target = target.target()?;
                file.engage(KillFileEntry::new(target.clone(), by, reason))?;
                writeln!(out, "engaged {target}")?;
            }
            KillCommand::Release { target } => {
                let target = target.target()?;
                if file.release(&target)? {
                    writeln!(out, "released {target}")?;
                } else {
                    writeln!(out, "{target} was not engaged")?;
                }
            }
            KillCommand::List => {
                for entry in file.read()? {
                    writeln!(out, "{}", serde_json::to_string(&entry)?)?;
                }
            }
        }
        Ok(())
    }
}
