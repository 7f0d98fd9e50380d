//! `fortress … audit`: verify, query, export and purge the audit trail from a shell.
//!
//! The reference binaries mount [`AuditCommand`] as a subcommand; it needs only the data
//! directory (or a PostgreSQL URL) and the checkpoint key.
//!
//! ```
//! use clap::Parser;
//! use fortress_core::audit::cli::{AuditAction, AuditCommand};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     audit: AuditCommand,
//! }
//! let cli = Cli::parse_from(["fortress", "--data-dir", "/tmp/x", "verify", "--allow-unsigned-tail"]);
//! assert!(matches!(cli.audit.action, AuditAction::Verify { allow_unsigned_tail: true, .. }));
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::anchor::{
    AnchorError, AnchoredStore, CheckpointAnchor, FileAnchor, default_anchor_path, verify_anchors,
};
use super::export::{ExportError, ExportFormat, export, json_lines_record};
use super::keys::{
    Ed25519KeyProvider, KeyError, KeyProvider, SIGNING_KEY_ENV, TrustedKeys, default_key_path,
};
use super::query::{AuditFilter, AuditQuery, Cursor, Order};
use super::retention::cutoff_for;
use super::sink::{DurableAuditSink, SinkConfig};
use super::store::{AuditStore, PostgresAuditStore, SqliteAuditStore, StoreError};
use super::verify::{VerifyError, VerifyOptions, verify_store};
use super::{AuditError, Outcome, SubjectRef};
use crate::decision::Effect;
use crate::subject::SubjectKind;
use crate::tier::Tier;

/// Where the audit trail is and which key signs or verifies it.
#[derive(Debug, clap::Args)]
pub struct AuditCommand {
    /// The data directory holding `audit.sqlite3`.
    #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// A `postgres://` URL to use instead of SQLite.
    #[arg(long, env = "FORTRESS_AUDIT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The checkpoint signing key file (default: `fortress-keys/audit-ed25519.key` beside
    /// the data directory). `FORTRESS_AUDIT_SIGNING_KEY`, when set, takes precedence.
    #[arg(long, env = "FORTRESS_AUDIT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Public keys (hex, one per line) trusted for verification, instead of the signing key's.
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// The external checkpoint anchor (JSON Lines) that writes publish to and `verify`
    /// compares against (default: `fortress-anchors/<data-dir-name>.audit-checkpoints.jsonl`
    /// beside the data directory).
    #[arg(long, env = "FORTRESS_AUDIT_ANCHOR_FILE")]
    pub anchor_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: AuditAction,
}

/// The audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Check the whole chain and every checkpoint signature; name the first bad sequence.
    Verify {
        /// Accept events not yet covered by a checkpoint (a store a gateway is writing to).
        #[arg(long)]
        allow_unsigned_tail: bool,
        /// Fail when the external anchor is missing or empty (instead of noting it).
        #[arg(long)]
        require_anchor: bool,
    },
    /// Print one page of events as JSON lines, then `{"next_cursor": …}`.
    Query {
        /// Which events.
        #[command(flatten)]
        filter: FilterArgs,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<Cursor>,
        /// Oldest first instead of newest first.
        #[arg(long)]
        oldest_first: bool,
    },
    /// Export events (the export is itself audited).
    Export {
        /// `jsonl`, `csv` or `ocsf`.
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Who asked for it (recorded).
        #[arg(long, default_value = "cli")]
        actor: String,
        /// Which events.
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete events past retention, keeping the anchoring checkpoint (the purge is audited).
    Purge {
        /// Purge what this tier no longer keeps.
        #[arg(long, conflicts_with = "before", required_unless_present = "before")]
        tier: Option<Tier>,
        /// Purge events appended before this instant (RFC 3339).
        #[arg(long)]
        before: Option<DateTime<Utc>>,
        /// Who ran it (recorded).
        #[arg(long, default_value = "cli")]
        actor: String,
    },
}

/// Event filters shared by `query` and `export`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Events at or after (RFC 3339).
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// Events before (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Workspace.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Subject id.
    #[arg(long)]
    pub subject: Option<String>,
    /// Action name.
    #[arg(long)]
    pub action: Option<String>,
    /// Connector.
    #[arg(long)]
    pub connector: Option<String>,
    /// Model.
    #[arg(long)]
    pub model: Option<String>,
    /// `allow` or `deny`.
    #[arg(long, value_parser = parse_effect)]
    pub decision: Option<Effect>,
    /// `success`, `denied`, `upstream_error`, `error` or `client_closed`.
    #[arg(long, value_parser = parse_outcome)]
    pub outcome: Option<Outcome>,
}

fn parse_effect(s: &str) -> Result<Effect, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("expected allow or deny, got {s:?}"))
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("expected success, denied, upstream_error, error or client_closed, got {s:?}")
    })
}

impl From<FilterArgs> for AuditFilter {
    fn from(f: FilterArgs) -> Self {
        Self {
            from: f.from,
            until: f.until,
            workspace: f.workspace,
            subject: f.subject,
            action: f.action,
            connector: f.connector,
            model: f.model,
            decision: f.decision,
            outcome: f.outcome,
            kind: None,
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The trail does not verify (or could not be read).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Recording to the audit trail failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Output could not be written.
    #[error("output could not be written")]
    Io(#[from] std::io::Error),
    /// The external checkpoint anchor could not be read.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// `--require-anchor` and the anchor holds no checkpoint.
    #[error("no external checkpoint anchor at {0}")]
    NoAnchor(PathBuf),
}

impl AuditCommand {
    fn signing_key(&self) -> Result<Arc<dyn KeyProvider>, KeyError> {
        if std::env::var_os(SIGNING_KEY_ENV).is_some() {
            return Ok(Arc::new(Ed25519KeyProvider::from_env(SIGNING_KEY_ENV)?));
        }
        let path = self
            .key_file
            .clone()
            .unwrap_or_else(|| default_key_path(&self.data_dir));
        Ok(Arc::new(Ed25519KeyProvider::from_file(&path)?))
    }

    fn trusted(&self) -> Result<TrustedKeys, KeyError> {
        match &self.trusted_keys {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.clone(),
                    source,
                })?;
                TrustedKeys::from_hex_lines(&text, &path.display().to_string())
            }
            None => Ok(TrustedKeys::new([self.signing_key()?.verifying_key()])),
        }
    }

    fn anchor(&self) -> FileAnchor {
        FileAnchor::new(
            self.anchor_file
                .clone()
                .unwrap_or_else(|| default_anchor_path(&self.data_dir)),
        )
    }

    /// The store for writing: its checkpoints are published to the anchor.
    async fn anchored_store(
        &self,
        signer: Arc<dyn KeyProvider>,
    ) -> Result<Arc<dyn AuditStore>, StoreError> {
        let store = self.store(Some(signer)).await?;
        Ok(Arc::new(AnchoredStore::new(store, Arc::new(self.anchor()))))
    }

    async fn store(
        &self,
        signer: Option<Arc<dyn KeyProvider>>,
    ) -> Result<Arc<dyn AuditStore>, StoreError> {
        Ok(match (&self.database_url, signer) {
            (Some(url), Some(key)) => {
                Arc::new(PostgresAuditStore::connect(url).await?.with_signer(key))
            }
            (Some(url), None) => Arc::new(PostgresAuditStore::connect(url).await?),
            (None, Some(key)) => Arc::new(
                SqliteAuditStore::open_in(&self.data_dir)
                    .await?
                    .with_signer(key),
            ),
            (None, None) => Arc::new(SqliteAuditStore::open_in(&self.data_dir).await?),
        })
    }

    /// Runs the command, writing results to `out`. A trail that fails verification is an
    /// error naming the first bad sequence number.
    pub async fn run(self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        match &self.action {
            AuditAction::Verify {
                allow_unsigned_tail,
                require_anchor,
            } => {
                let trusted = self.trusted()?;
                let store = self.store(None).await?;
                let options = VerifyOptions {
                    allow_unsigned_tail: *allow_unsigned_tail,
                };
                let report = verify_store(store.as_ref(), &trusted, options).await?;
                let anchor = self.anchor();
                let anchored = anchor.published().await?;
                if anchored.is_empty() && *require_anchor {
                    return Err(CliError::NoAnchor(anchor.path().to_owned()));
                }
                let anchors = verify_anchors(&store.checkpoints().await?, &anchored, &trusted)
                    .map_err(VerifyError::Tampered)?;
                writeln!(
                    out,
                    "audit trail verified: {} events ({}..{}), {} signed checkpoints, anchor {}, unsigned tail {}",
                    report.events,
                    report.first_seq.unwrap_or(0),
                    report.last_seq.unwrap_or(0),
                    report.checkpoints,
                    report
                        .anchor
                        .map_or_else(|| "none".to_owned(), |a| a.to_string()),
                    report.unsigned_tail,
                )?;
                if anchored.is_empty() {
                    writeln!(
                        out,
                        "no external checkpoint anchor at {} (truncation of the newest events cannot be ruled out)",
                        anchor.path().display()
                    )?;
                } else {
                    writeln!(
                        out,
                        "external anchor {}: {} checkpoints match, {} purged by retention, {} not yet anchored",
                        anchor.path().display(),
                        anchors.matched,
                        anchors.purged,
                        anchors.unanchored,
                    )?;
                }
            }
            AuditAction::Query {
                filter,
                limit,
                cursor,
                oldest_first,
            } => {
                let store = self.store(None).await?;
                let query = AuditQuery {
                    filter: AuditFilter::from(filter.clone()),
                    order: if *oldest_first {
                        Order::OldestFirst
                    } else {
                        Order::NewestFirst
                    },
                    limit: *limit,
                    cursor: *cursor,
                };
                let page = store.query(&query).await?;
                for row in &page.events {
                    let event = row.event().map_err(StoreError::Encode)?;
                    serde_json::to_writer(&mut *out, &json_lines_record(row, &event))
                        .map_err(std::io::Error::other)?;
                    writeln!(out)?;
                }
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "next_cursor": page.next.map(|c| c.to_string()) })
                )?;
            }
            AuditAction::Export {
                format,
                output,
                actor,
                filter,
            } => {
                let store = self.anchored_store(self.signing_key()?).await?;
                let sink = DurableAuditSink::start(store.clone(), SinkConfig::default());
                let filter = AuditFilter::from(filter.clone());
                let actor = SubjectRef {
                    id: actor.clone(),
                    kind: SubjectKind::User,
                };
                let result = match output {
                    Some(path) => {
                        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                        let n =
                            export(store.as_ref(), &filter, *format, &mut file, &sink, actor).await;
                        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                        n
                    }
                    None => export(store.as_ref(), &filter, *format, out, &sink, actor).await,
                };
                sink.shutdown().await?;
                let written = result?;
                if output.is_some() {
                    writeln!(out, "exported {written} events")?;
                }
            }
            AuditAction::Purge {
                tier,
                before,
                actor,
            } => {
                let cutoff = match (tier, before) {
                    (Some(tier), _) => cutoff_for(*tier, Utc::now()),
                    (None, Some(before)) => *before,
                    (None, None) => Utc::now(),
                };
                let store = self.anchored_store(self.signing_key()?).await?;
                let actor = SubjectRef {
                    id: actor.clone(),
                    kind: SubjectKind::User,
                };
                let report = store.purge_before(cutoff, actor).await?;
                writeln!(
                    out,
                    "purged {} events and {} checkpoints before {}; anchor {}",
                    report.deleted_events,
                    report.deleted_checkpoints,
                    cutoff.to_rfc3339(),
                    report
                        .anchor
                        .map_or_else(|| "none".to_owned(), |a| a.to_string()),
                )?;
            }
        }
        Ok(())
    }
}
