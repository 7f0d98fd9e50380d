//! `keys create|list|revoke|rotate`: the key-management command both binaries mount.
//!
//! The binary opens the [`KeyStore`] (its data directory, pepper and [`KeyFormat`](super::KeyFormat))
//! and hands it to [`KeysCommand::run`].

use std::io::Write;
use std::time::Duration;

use super::{KeyStore, NewKey};
use crate::subject::SubjectKind;

/// Manage gateway API keys.
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum KeysCommand {
    /// Issue a key (printed once).
    Create {
        /// Workspace.
        #[arg(long)]
        workspace: String,
        /// User or app id the key acts as.
        #[arg(long)]
        subject: String,
        /// The subject is an application.
        #[arg(long)]
        app: bool,
        /// Team.
        #[arg(long)]
        team: Option<String>,
        /// Groups (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Scopes (repeatable; default `*`).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Allowed networks (repeatable).
        #[arg(long = "cidr")]
        cidrs: Vec<ipnet::IpNet>,
        /// Days until expiry.
        #[arg(long)]
        expires_days: Option<i64>,
        /// Label.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (never their secrets), one JSON record per line.
    List {
        /// Only this workspace.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Issue a successor; the old key works for the overlap, then expires.
    Rotate {
        /// Key id.
        id: String,
        /// Overlap in seconds.
        #[arg(long, default_value_t = 3600)]
        overlap_secs: u64,
    },
}

/// A key command failed.
pub type KeysError = Box<dyn std::error::Error + Send + Sync>;

impl KeysCommand {
    /// Runs the command against `store`, writing its report to `out`.
    pub async fn run(
        self,
        store: &KeyStore,
        out: &mut (dyn Write + Send),
    ) -> Result<(), KeysError> {
        match self {
            KeysCommand::Create {
                workspace,
                subject,
                app,
                team,
                groups,
                scopes,
                cidrs,
                expires_days,
                name,
            } => {
                let mut new = NewKey::user(&workspace, &subject);
                if app {
                    new.kind = SubjectKind::App;
                }
                new.team = team;
                new.groups = groups;
                if !scopes.is_empty() {
                    new.scopes = scopes;
                }
                new.cidrs = cidrs;
                new.expires_at =
                    expires_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
                new.name = name;
                let issued = store.create(new).await?;
                writeln!(out, "id:  {}", issued.record.id)?;
                writeln!(
                    out,
                    "key: {}",
                    issued.token.expose_str().ok_or("key is text")?
                )?;
                writeln!(
                    out,
                    "(the key is shown once; it is stored only as a keyed hash)"
                )?;
            }
            KeysCommand::List { workspace } => {
                for record in store.list(workspace.as_deref()).await? {
                    writeln!(out, "{}", serde_json::to_string(&record)?)?;
                }
            }
            KeysCommand::Revoke { id } => {
                store.revoke(&id).await?;
                writeln!(out, "revoked {id}")?;
            }
            KeysCommand::Rotate { id, overlap_secs } => {
                let issued = store.rotate(&id, Duration::from_secs(overlap_secs)).await?;
                writeln!(out, "id:  {}", issued.record.id)?;
                writeln!(
                    out,
                    "key: {}",
                    issued.token.expose_str().ok_or("key is text")?
                )?;
                writeln!(out, "(the old key {id} keeps working for {overlap_secs} s)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyFormat;
    use crate::secret::Secret;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: KeysCommand,
    }

    #[tokio::test]
    async fn create_then_list_then_revoke() {
        let store = KeyStore::in_memory(KeyFormat::MCP, Secret::from("p"))
            .await
            .unwrap();
        let mut out = Vec::new();
        let cli = Cli::parse_from([
            "k",
            "create",
            "--workspace",
            "acme",
            "--subject",
            "bob",
            "--group",
            "support",
        ]);
        cli.command.run(&store, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap();
        assert!(key.starts_with("fmk_"));
        let record = store.authenticate(key, None).await.unwrap();
        assert_eq!(record.subject().groups, ["support"]);
        let mut out = Vec::new();
        Cli::parse_from(["k", "list"])
            .command
            .run(&store, &mut out)
            .await
            .unwrap();
        let listed = String::from_utf8(out).unwrap();
        assert!(listed.contains("\"subject_id\":\"bob\"") && !listed.contains(key));
        let mut out = Vec::new();
        Cli::parse_from(["k", "revoke", &record.id])
            .command
            .run(&store, &mut out)
            .await
            .unwrap();
        assert!(store.authenticate(key, None).await.is_err());
    }
}
