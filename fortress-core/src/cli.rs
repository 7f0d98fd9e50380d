//! The operator commands both reference binaries mount: `vault`, `policy` and `audit`.
//!
//! A binary flattens [`OpsCommand`] into its own subcommands; the logic lives here once.

use std::io::Write;
use std::sync::Arc;

use crate::audit::cli::AuditCommand;
use crate::audit::keys::{Ed25519KeyProvider, default_key_path};
use crate::audit::AuditSink;
use crate::audit::settings::{AuditSettings, open_trail};
use crate::policy::cli::PolicyCommand;
use crate::vault::cli::{VaultCommand, VaultStorageArgs};

/// Operator commands shared by `fortress-mcp` and `fortress-pat`.
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum OpsCommand {
    /// Manage upstream credentials (values are read from stdin or a file, never echoed).
    Vault {
        /// Where the vault lives.
        #[command(flatten)]
        storage: VaultStorageArgs,
        /// What to do.
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Validate policies, explain a decision, dry-run a candidate set.
    Policy {
        /// What to do.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Verify, query, export and purge the audit trail.
    Audit(AuditCommand),
}

/// An operator command failed; the message says why (never with a secret value).
pub type OpsError = Box<dyn std::error::Error + Send + Sync>;

impl OpsCommand {
    /// Runs the command, writing its report to `out`. Returns `false` when the command
    /// completed but its answer is negative (for example a policy set that does not compile).
    pub async fn run(self, out: &mut (dyn Write + Send)) -> Result<bool, OpsError> {
        match self {
            OpsCommand::Vault { storage, command } => {
                // Credential changes are audited into the deployment's own trail.
                let signer =
                    Ed25519KeyProvider::load_or_create(&default_key_path(&storage.data_dir))?;
                std::fs::create_dir_all(&storage.data_dir)?;
                let audit = open_trail(
                    &storage.data_dir,
                    Some(Arc::new(signer)),
                    &AuditSettings::default(),
                )
                .await?
                .sink;
                let vault = storage.open(audit.clone()).await?;
                let result = command.run(&vault, std::io::stdin(), &mut *out).await;
                audit.flush().await?;
                audit.shutdown().await?;
                result?;
                Ok(true)
            }
            OpsCommand::Policy { command } => Ok(command.run(out)?),
            OpsCommand::Audit(command) => {
                command.run(out).await?;
                Ok(true)
            }
        }
    }
}
