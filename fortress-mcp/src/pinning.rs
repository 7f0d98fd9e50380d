//! Tool-definition pinning: an upstream tool is served only in a version an admin approved.
//!
//! Each tool's definition — name, description, input schema and annotations — is hashed
//! (SHA-256 over canonical JSON: keys sorted at every level, no whitespace). An admin
//! approves a hash (`fortress-mcp tools approve`); a tool whose current hash is not the
//! approved one — new, or changed upstream since approval (a "rug pull") — is hidden from
//! `tools/list` and refused on `tools/call`, and the change is recorded as pending and
//! audited, until its new version is approved. With trust-on-first-use, the first version
//! seen of a tool is approved automatically; later changes still wait for an admin.
//!
//! Pins live in `tool-pins.sqlite` in the data directory, shared by the server and the CLI;
//! the server re-reads approvals at most once per [`PinStore::with_refresh`] interval.
//!
//! ```
//! use fortress_mcp::pinning::definition_hash;
//! use serde_json::json;
//!
//! let a = definition_hash(&json!({"name": "t", "inputSchema": {"type": "object", "required": []}}));
//! let b = definition_hash(&json!({"inputSchema": {"required": [], "type": "object"}, "name": "t"}));
//! assert_eq!(a, b); // key order does not matter
//! let c = definition_hash(&json!({"name": "t", "description": "now also exfiltrates"}));
//! assert_ne!(a, c);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use fortress_core::audit::{AuditEvent, AuditSink, EventKind, Outcome, SubjectRef};
use fortress_core::db::Database;
use fortress_core::on_database;
use fortress_core::subject::{SubjectKind, WorkspaceId};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fields of a tool definition that are pinned.
pub const PINNED_FIELDS: [&str; 4] = ["name", "description", "inputSchema", "annotations"];

/// SHA-256 (hex) of the canonical JSON of a tool's pinned fields.
pub fn definition_hash(tool: &Value) -> String {
    let mut pinned = serde_json::Map::new();
    for field in PINNED_FIELDS {
        if let Some(value) = tool.get(field) {
            pinned.insert(field.to_owned(), value.clone());
        }
    }
    // Encoding a `Value` cannot fail (its keys are strings); the fallback keeps this total.
    let canonical =
        fortress_core::audit::canonical::encode_value(&Value::Object(pinned)).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Whether unseen tools need an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinMode {
    /// Every new or changed tool waits for approval.
    #[default]
    RequireApproval,
    /// The first version seen is approved automatically (trust on first use); changes wait.
    TrustOnFirstUse,
}

/// A tool's standing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// Its current definition is the approved one.
    Approved,
    /// Never approved.
    New,
    /// Approved once, but its definition has changed since.
    Changed {
        /// The approved hash.
        approved: String,
    },
}

/// An approved definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovedPin {
    /// `connector/tool`.
    pub tool: String,
    /// The approved hash.
    pub hash: String,
    /// When.
    pub approved_at: DateTime<Utc>,
    /// By whom (`tofu` for trust-on-first-use).
    pub approved_by: String,
}

/// A definition waiting for approval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingPin {
    /// `connector/tool`.
    pub tool: String,
    /// The hash seen.
    pub hash: String,
    /// The approved hash it would replace, if any.
    pub previous: Option<String>,
    /// The definition seen (for review).
    pub definition: Value,
    /// When it was first seen.
    pub first_seen: DateTime<Utc>,
}

/// The pin database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The database failed.
    #[error("tool pin database failed")]
    Database(#[from] sqlx::Error),
    /// Nothing pending for that tool (and no hash given).
    #[error("no pending definition of {0}")]
    NothingPending(String),
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tool_pins (
        tool TEXT PRIMARY KEY, hash TEXT NOT NULL, approved_at BIGINT NOT NULL, approved_by TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tool_pending (
        tool TEXT NOT NULL, hash TEXT NOT NULL, previous TEXT, definition TEXT NOT NULL,
        first_seen BIGINT NOT NULL, PRIMARY KEY (tool, hash));";

struct Approved {
    hashes: HashMap<String, String>,
    loaded: Instant,
}

/// The pin store.
#[derive(Clone)]
pub struct PinStore {
    db: Database,
    mode: PinMode,
    audit: Option<Arc<dyn AuditSink>>,
    approved: Arc<Mutex<Option<Approved>>>,
    refresh: Duration,
}

impl std::fmt::Debug for PinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinStore")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl PinStore {
    /// Opens (creating) `tool-pins.sqlite` in `data_dir`.
    pub async fn open(data_dir: &Path, mode: PinMode) -> Result<Self, PinError> {
        let db = Database::sqlite_file(&data_dir.join("tool-pins.sqlite")).await?;
        Self::with_database(db, mode).await
    }

    /// A store in memory (tests).
    pub async fn in_memory(mode: PinMode) -> Result<Self, PinError> {
        Self::with_database(Database::sqlite_memory().await?, mode).await
    }

    /// A store in `db` (SQLite, or the PostgreSQL database replicas share, so an approval
    /// applies on every replica), creating its tables if needed.
    pub async fn with_database(db: Database, mode: PinMode) -> Result<Self, PinError> {
        db.migrate("tool_pins", SCHEMA).await?;
        Ok(Self {
            db,
            mode,
            audit: None,
            approved: Arc::new(Mutex::new(None)),
            refresh: Duration::from_secs(1),
        })
    }

    /// Records discoveries and changes in `audit`.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// How long approvals read from the database are reused (default 1 s), so approvals made
    /// by the CLI in another process take effect within that time.
    #[must_use]
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The mode.
    pub fn mode(&self) -> PinMode {
        self.mode
    }

    async fn approved_hashes(&self) -> Result<HashMap<String, String>, PinError> {
        {
            let cache = self.approved.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.as_ref().filter(|c| c.loaded.elapsed() < self.refresh) {
                return Ok(c.hashes.clone());
            }
        }
        let rows: Vec<(String, String)> = on_database!(&self.db, pool =>
            sqlx::query_as("SELECT tool, hash FROM tool_pins").fetch_all(pool).await)?;
        let hashes: HashMap<String, String> = rows.into_iter().collect();
        *self.approved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Approved {
            hashes: hashes.clone(),
            loaded: Instant::now(),
        });
        Ok(hashes)
    }

    fn forget_cache(&self) {
        *self.approved.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Checks the definitions `(connector/tool, definition)` seen upstream: approved ones
    /// pass; new or changed ones are recorded as pending (audited once per version) — or,
    /// under trust-on-first-use, new ones are approved. Returns each tool's status, in order.
    pub async fn check(&self, seen: &[(String, &Value)]) -> Result<Vec<PinStatus>, PinError> {
        let approved = self.approved_hashes().await?;
        let mut statuses = Vec::with_capacity(seen.len());
        for (tool, definition) in seen {
            let hash = definition_hash(definition);
            let status = match approved.get(tool) {
                Some(h) if *h == hash => PinStatus::Approved,
                Some(h) => PinStatus::Changed {
                    approved: h.clone(),
                },
                None if self.mode == PinMode::TrustOnFirstUse => {
                    self.approve(tool, &hash, "tofu").await?;
                    self.audit_event("tool.approve", tool, None, &hash, "tofu")
                        .await;
                    PinStatus::Approved
                }
                None => PinStatus::New,
            };
            if status != PinStatus::Approved {
                let previous = match &status {
                    PinStatus::Changed { approved } => Some(approved.clone()),
                    _ => None,
                };
                self.record_pending(tool, &hash, previous, definition)
                    .await?;
            }
            statuses.push(status);
        }
        Ok(statuses)
    }

    async fn record_pending(
        &self,
        tool: &str,
        hash: &str,
        previous: Option<String>,
        definition: &Value,
    ) -> Result<(), PinError> {
        let inserted = on_database!(&self.db, pool => sqlx::query(
            "INSERT INTO tool_pending (tool, hash, previous, definition, first_seen)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tool, hash) DO NOTHING",
        )
        .bind(tool)
        .bind(hash)
        .bind(&previous)
        .bind(definition.to_string())
        .bind(Utc::now().timestamp_millis())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if inserted > 0 {
            let action = if previous.is_some() {
                "tool.changed"
            } else {
                "tool.discovered"
            };
            tracing::warn!(tool, hash, ?previous, "unapproved tool definition blocked");
            self.audit_event(action, tool, previous.as_deref(), hash, "fortress")
                .await;
        }
        Ok(())
    }

    async fn audit_event(
        &self,
        action: &str,
        tool: &str,
        previous: Option<&str>,
        hash: &str,
        actor: &str,
    ) {
        let Some(audit) = &self.audit else { return };
        let mut event = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("*"),
            SubjectRef {
                id: actor.to_owned(),
                kind: SubjectKind::App,
            },
            action,
            format!("tool:{tool}"),
        );
        event.connector = tool.split_once('/').map(|(c, _)| c.to_owned());
        event.outcome = if action == "tool.approve" {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        event.detail.insert("hash".into(), Value::from(hash));
        if let Some(previous) = previous {
            event
                .detail
                .insert("previous_hash".into(), Value::from(previous));
        }
        if let Err(error) = audit.record(event).await {
            tracing::error!(%error, tool, "tool pin event was not audited");
        }
    }

    /// Approves `hash` for `tool` (replacing any earlier approval).
    pub async fn approve(&self, tool: &str, hash: &str, by: &str) -> Result<(), PinError> {
        on_database!(&self.db, pool => sqlx::query(
            "INSERT INTO tool_pins (tool, hash, approved_at, approved_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tool) DO UPDATE SET hash = excluded.hash,
             approved_at = excluded.approved_at, approved_by = excluded.approved_by",
        )
        .bind(tool)
        .bind(hash)
        .bind(Utc::now().timestamp_millis())
        .bind(by)
        .execute(pool)
        .await
        .map(drop))?;
        on_database!(&self.db, pool => sqlx::query("DELETE FROM tool_pending WHERE tool = $1 AND hash = $2")
            .bind(tool)
            .bind(hash)
            .execute(pool)
            .await
            .map(drop))?;
        self.forget_cache();
        Ok(())
    }

    /// Approves the pending definition of `tool` (the latest seen, or the one with `hash`);
    /// returns the approved hash. The approval is audited as `by`.
    pub async fn approve_pending(
        &self,
        tool: &str,
        hash: Option<&str>,
        by: &str,
    ) -> Result<String, PinError> {
        let pending = self.pending().await?;
        let chosen = pending
            .iter()
            .filter(|p| p.tool == tool && hash.is_none_or(|h| p.hash == h))
            .max_by_key(|p| p.first_seen)
            .ok_or_else(|| PinError::NothingPending(tool.to_owned()))?;
        let hash = chosen.hash.clone();
        self.approve(tool, &hash, by).await?;
        self.audit_event("tool.approve", tool, chosen.previous.as_deref(), &hash, by)
            .await;
        Ok(hash)
    }

    /// Every approved definition.
    pub async fn approved(&self) -> Result<Vec<ApprovedPin>, PinError> {
        let rows: Vec<(String, String, i64, String)> = on_database!(&self.db, pool =>
            sqlx::query_as("SELECT tool, hash, approved_at, approved_by FROM tool_pins ORDER BY tool")
                .fetch_all(pool)
                .await)?;
        Ok(rows
            .into_iter()
            .map(|(tool, hash, at, by)| ApprovedPin {
                tool,
                hash,
                approved_at: from_ms(at),
                approved_by: by,
            })
            .collect())
    }

    /// Every definition waiting for approval.
    pub async fn pending(&self) -> Result<Vec<PendingPin>, PinError> {
        let rows: Vec<(String, String, Option<String>, String, i64)> = on_database!(&self.db, pool =>
            sqlx::query_as(
                "SELECT tool, hash, previous, definition, first_seen FROM tool_pending ORDER BY tool, first_seen",
            )
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(tool, hash, previous, definition, first_seen)| PendingPin {
                    tool,
                    hash,
                    previous,
                    definition: serde_json::from_str(&definition).unwrap_or(Value::Null),
                    first_seen: from_ms(first_seen),
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::audit::MemoryAuditSink;
    use serde_json::json;

    #[tokio::test]
    async fn changed_tools_are_blocked_until_approved() {
        let audit = Arc::new(MemoryAuditSink::new());
        let store = PinStore::in_memory(PinMode::RequireApproval)
            .await
            .unwrap()
            .with_audit(audit.clone());
        let v1 = json!({"name": "search", "description": "Search tickets"});
        let tool = "zendesk/search".to_owned();
        assert_eq!(
            store.check(&[(tool.clone(), &v1)]).await.unwrap(),
            [PinStatus::New]
        );
        // Seeing the same version again records nothing new.
        store.check(&[(tool.clone(), &v1)]).await.unwrap();
        assert_eq!(store.pending().await.unwrap().len(), 1);
        let hash = store.approve_pending(&tool, None, "ops").await.unwrap();
        assert_eq!(hash, definition_hash(&v1));
        assert_eq!(
            store.check(&[(tool.clone(), &v1)]).await.unwrap(),
            [PinStatus::Approved]
        );
        let v2 = json!({"name": "search", "description": "Search tickets and email them out"});
        assert_eq!(
            store.check(&[(tool.clone(), &v2)]).await.unwrap(),
            [PinStatus::Changed {
                approved: hash.clone()
            }]
        );
        let pending = store.pending().await.unwrap();
        assert_eq!(pending[0].previous.as_deref(), Some(hash.as_str()));
        let actions: Vec<String> = audit.events().iter().map(|e| e.action.clone()).collect();
        assert_eq!(actions, ["tool.discovered", "tool.approve", "tool.changed"]);
    }

    #[tokio::test]
    async fn trust_on_first_use_approves_only_the_first_version() {
        let store = PinStore::in_memory(PinMode::TrustOnFirstUse).await.unwrap();
        let v1 = json!({"name": "t", "inputSchema": {"type": "object"}});
        let v2 = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"x": {}}}});
        assert_eq!(
            store.check(&[("c/t".into(), &v1)]).await.unwrap(),
            [PinStatus::Approved]
        );
        assert!(matches!(
            store.check(&[("c/t".into(), &v2)]).await.unwrap()[0],
            PinStatus::Changed { .. }
        ));
    }

    #[test]
    fn only_pinned_fields_count() {
        let a = json!({"name": "t", "description": "d", "_meta": {"x": 1}, "title": "T"});
        let b = json!({"name": "t", "description": "d"});
        assert_eq!(definition_hash(&a), definition_hash(&b));
    }
}
