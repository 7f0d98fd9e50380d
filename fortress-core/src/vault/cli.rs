//! The `vault` command of the reference binaries: put, list, rotate, revoke and delete
//! credentials. Values are read from standard input or a file and are never echoed, printed
//! or passed on the command line (where `ps` and shell history would see them).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use clap::Parser;
//! use fortress_core::vault::MemoryVault;
//! use fortress_core::vault::cli::VaultCommand;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     vault: VaultCommand,
//! }
//!
//! let vault = MemoryVault::new();
//! let cli = Cli::parse_from(["fortress", "put", "acme", "zendesk"]);
//! let mut out = Vec::new();
//! cli.vault.run(&vault, &b"token-123\n"[..], &mut out).await.unwrap();
//! let printed = String::from_utf8(out).unwrap();
//! assert!(printed.contains("acme/zendesk version 1"));
//! assert!(!printed.contains("token-123"));
//! # });
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::keys::{KeyProvider, ManagedKeys};
use super::{CredentialSlot, CredentialState, EnvelopeVault, Vault, VaultError};
use crate::audit::AuditSink;
use crate::secret::Secret;
use crate::subject::WorkspaceId;

/// Credential management commands.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum VaultCommand {
    /// Store a credential (a new version if the slot exists). The value is read from stdin
    /// or --from-file and never echoed.
    Put(ValueArgs),
    /// List a workspace's credentials (slots, versions, states; never values).
    List {
        /// The workspace.
        workspace: String,
    },
    /// Replace an existing credential with a new value (read from stdin or --from-file).
    Rotate(ValueArgs),
    /// Revoke a credential: it is never handed out again.
    Revoke(SlotArgs),
    /// Permanently delete a credential and its key material.
    Delete(SlotArgs),
    /// Permanently delete every credential of a workspace (account termination).
    DeleteWorkspace {
        /// The workspace.
        workspace: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// Which credential.
#[derive(Debug, Clone, Args)]
pub struct SlotArgs {
    /// The workspace.
    pub workspace: String,
    /// The connector (or upstream, such as `anthropic`).
    pub connector: String,
    /// A user's personal credential instead of the workspace's.
    #[arg(long)]
    pub user: Option<String>,
}

impl SlotArgs {
    fn slot(&self) -> CredentialSlot {
        let workspace = WorkspaceId::new(self.workspace.clone());
        match &self.user {
            Some(user) => CredentialSlot::user(workspace, self.connector.clone(), user.clone()),
            None => CredentialSlot::workspace(workspace, self.connector.clone()),
        }
    }
}

/// Which credential, and where its value comes from.
#[derive(Debug, Clone, Args)]
pub struct ValueArgs {
    #[command(flatten)]
    /// Which credential.
    pub slot: SlotArgs,
    /// Read the value from this file instead of standard input (`-` means stdin).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
}

/// Where the vault lives: the data directory (SQLite) or a PostgreSQL URL, and the master key.
#[derive(Debug, Clone, Args)]
pub struct VaultStorageArgs {
    /// Data directory holding `vault.sqlite3`.
    #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// A `postgres://` URL; when set, credentials are stored in PostgreSQL instead.
    #[arg(long, env = "FORTRESS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the master key (64 hex digits or base64); otherwise the
    /// `FORTRESS_MASTER_KEY` environment variable.
    #[arg(long, env = "FORTRESS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

impl VaultStorageArgs {
    /// Opens the SOHO envelope vault these arguments describe.
    pub async fn open(&self, audit: Arc<dyn AuditSink>) -> Result<EnvelopeVault, VaultError> {
        if let Some(file) = &self.master_key_file {
            refuse_key_inside(file, &self.data_dir)?;
        }
        let keys: Arc<dyn KeyProvider> =
            Arc::new(ManagedKeys::load(self.master_key_file.as_deref())?);
        EnvelopeVault::open(&self.data_dir, self.database_url.as_deref(), keys, audit).await
    }
}

/// The master key must never sit next to the data it protects: a copy of the data directory
/// would then carry its own key. (Also used for directories of customer keys.)
pub fn refuse_key_inside(key_file: &Path, data_dir: &Path) -> Result<(), VaultError> {
    let (Ok(key), Ok(dir)) = (key_file.canonicalize(), data_dir.canonicalize()) else {
        return Ok(());
    };
    if key.starts_with(&dir) {
        return Err(VaultError::Config(
            "the master key file must not be inside the data directory".into(),
        ));
    }
    Ok(())
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultCliError {
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The value could not be read, or the output written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command is missing something.
    #[error("{0}")]
    Usage(String),
}

impl VaultCommand {
    /// Runs the command against `vault`, reading a value from `stdin` when needed and
    /// writing a one-line confirmation (never the value) to `out`.
    pub async fn run(
        self,
        vault: &dyn Vault,
        stdin: impl Read,
        mut out: impl Write,
    ) -> Result<(), VaultCliError> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| VaultCliError::Io { context, source }
        };
        match self {
            Self::Put(args) => {
                let secret = read_value(args.from_file.as_deref(), stdin)?;
                let info = vault.put(&args.slot.slot(), secret).await?;
                writeln!(out, "stored {} version {}", info.slot, info.version)
                    .map_err(io("writing output"))?;
            }
            Self::Rotate(args) => {
                let secret = read_value(args.from_file.as_deref(), stdin)?;
                let info = vault.rotate(&args.slot.slot(), secret).await?;
                writeln!(out, "rotated {} to version {}", info.slot, info.version)
                    .map_err(io("writing output"))?;
            }
            Self::List { workspace } => {
                for info in vault.list(&WorkspaceId::new(workspace)).await? {
                    let state = match info.state {
                        CredentialState::Active => "active",
                        CredentialState::Revoked => "revoked",
                    };
                    writeln!(
                        out,
                        "{}\tversion {}\t{}\t{}",
                        info.slot,
                        info.version,
                        state,
                        info.updated_at.to_rfc3339()
                    )
                    .map_err(io("writing output"))?;
                }
            }
            Self::Revoke(args) => {
                let slot = args.slot();
                vault.revoke(&slot).await?;
                writeln!(out, "revoked {slot}").map_err(io("writing output"))?;
            }
            Self::Delete(args) => {
                let slot = args.slot();
                vault.delete(&slot).await?;
                writeln!(out, "deleted {slot}").map_err(io("writing output"))?;
            }
            Self::DeleteWorkspace { workspace, yes } => {
                if !yes {
                    return Err(VaultCliError::Usage(format!(
                        "deleting every credential of {workspace} is permanent; pass --yes to confirm"
                    )));
                }
                let n = vault
                    .delete_workspace(&WorkspaceId::new(workspace.clone()))
                    .await?;
                writeln!(out, "deleted {n} credentials of {workspace}")
                    .map_err(io("writing output"))?;
            }
        }
        Ok(())
    }
}

/// Reads a value into zeroizing memory and trims one trailing newline.
fn read_value(file: Option<&Path>, mut stdin: impl Read) -> Result<Secret, VaultCliError> {
    let mut bytes = Zeroizing::new(Vec::new());
    match file {
        Some(path) if path != Path::new("-") => {
            let mut f = std::fs::File::open(path).map_err(|source| VaultCliError::Io {
                context: format!("cannot open {}", path.display()),
                source,
            })?;
            f.read_to_end(&mut bytes)
                .map_err(|source| VaultCliError::Io {
                    context: format!("cannot read {}", path.display()),
                    source,
                })?;
        }
        _ => {
            stdin
                .read_to_end(&mut bytes)
                .map_err(|source| VaultCliError::Io {
                    context: "cannot read the value from standard input".into(),
                    source,
                })?;
        }
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(VaultCliError::Usage("the credential value is empty".into()));
    }
    Ok(Secret::new(std::mem::take(&mut *bytes)))
}
