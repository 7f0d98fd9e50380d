//! Policy sets kept in a database ([`Database`]: SQLite or the PostgreSQL replicas share),
//! so every replica serves the same set: each saved set is a new numbered revision of its
//! named set (`pat`, `mcp`, …), and the newest revision is the one in force.
//!
//! Only sets that compile are saved ([`PolicyStore::save`] compiles first), so a replica
//! that loads the newest revision never meets a broken one. Older revisions stay, as the
//! record of what was in force.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::db::Database;
//! use fortress_core::policy::PolicyDocuments;
//! use fortress_core::policy::store::PolicyStore;
//!
//! let store = PolicyStore::open(Database::sqlite_memory().await.unwrap()).await.unwrap();
//! assert!(store.latest("pat").await.unwrap().is_none());
//! let docs = PolicyDocuments::new().with_policies("main.cedar", "permit(principal, action, resource);");
//! assert_eq!(store.save("pat", &docs).await.unwrap(), 1);
//! let stored = store.latest("pat").await.unwrap().unwrap();
//! assert_eq!((stored.revision, stored.documents.version()), (1, docs.version()));
//! # });
//! ```

use serde::{Deserialize, Serialize};

use super::documents::{DocumentKind, PolicyDocuments};
use super::{CompiledSet, PolicyError};
use crate::db::Database;
use crate::on_database;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fortress_policy_sets (
    set_name  TEXT NOT NULL,
    revision  BIGINT NOT NULL,
    version   TEXT NOT NULL,
    documents TEXT NOT NULL,
    saved_ms  BIGINT NOT NULL,
    PRIMARY KEY (set_name, revision)
)";

/// How often a save retries when another replica took the same revision number.
const SAVE_ATTEMPTS: usize = 5;

/// Why the policy store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyStoreError {
    /// The database failed.
    #[error("policy store unavailable")]
    Database(#[from] sqlx::Error),
    /// The set does not compile, so it was not saved.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// A stored revision is unreadable.
    #[error("stored policy set {set:?} revision {revision} is malformed")]
    Malformed {
        /// The set's name.
        set: String,
        /// The revision.
        revision: i64,
    },
}

/// One revision of a stored set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSet {
    /// The revision number (1, 2, …; the newest is in force).
    pub revision: i64,
    /// The documents.
    pub documents: PolicyDocuments,
}

#[derive(Serialize, Deserialize)]
struct StoredDocument {
    kind: StoredKind,
    name: String,
    text: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredKind {
    Policies,
    Schema,
    Limits,
}

impl From<DocumentKind> for StoredKind {
    fn from(kind: DocumentKind) -> Self {
        match kind {
            DocumentKind::Policies => Self::Policies,
            DocumentKind::Schema => Self::Schema,
            DocumentKind::Limits => Self::Limits,
        }
    }
}

impl From<StoredKind> for DocumentKind {
    fn from(kind: StoredKind) -> Self {
        match kind {
            StoredKind::Policies => Self::Policies,
            StoredKind::Schema => Self::Schema,
            StoredKind::Limits => Self::Limits,
        }
    }
}

/// The table of policy-set revisions.
#[derive(Clone, Debug)]
pub struct PolicyStore {
    db: Database,
}

impl PolicyStore {
    /// Opens the table in `db`, creating it if needed.
    pub async fn open(db: Database) -> Result<Self, PolicyStoreError> {
        db.migrate("fortress_policy_sets", SCHEMA).await?;
        Ok(Self { db })
    }

    /// Saves `documents` as the next revision of `set` and returns its number; refuses a
    /// set that does not compile.
    pub async fn save(
        &self,
        set: &str,
        documents: &PolicyDocuments,
    ) -> Result<i64, PolicyStoreError> {
        CompiledSet::compile(documents)?;
        self.save_compiled(set, documents).await
    }

    /// [`save`](Self::save) for documents already known to compile (the live set, or a
    /// candidate the caller has just compiled): they are not compiled a second time.
    pub(crate) async fn save_compiled(
        &self,
        set: &str,
        documents: &PolicyDocuments,
    ) -> Result<i64, PolicyStoreError> {
        let encoded = encode(documents);
        let version = documents.version();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let saved: Result<i64, sqlx::Error> = on_database!(&self.db, pool => {
                sqlx::query_scalar(
                    "INSERT INTO fortress_policy_sets (set_name, revision, version, documents, saved_ms)
                     SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4
                     FROM fortress_policy_sets WHERE set_name = $1
                     RETURNING revision",
                )
                .bind(set)
                .bind(&version)
                .bind(&encoded)
                .bind(chrono::Utc::now().timestamp_millis())
                .fetch_one(pool)
                .await
            });
            match saved {
                Ok(revision) => return Ok(revision),
                // Two replicas saving at once pick the same number; the loser takes the next.
                Err(sqlx::Error::Database(e))
                    if e.is_unique_violation() && attempt < SAVE_ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The number of the newest revision of `set` (0 when none was saved): a cheap check
    /// before reading the documents.
    pub async fn latest_revision(&self, set: &str) -> Result<i64, PolicyStoreError> {
        let revision: Option<i64> = on_database!(&self.db, pool =>
            sqlx::query_scalar("SELECT MAX(revision) FROM fortress_policy_sets WHERE set_name = $1")
                .bind(set)
                .fetch_one(pool)
                .await)?;
        Ok(revision.unwrap_or(0))
    }

    /// The newest revision of `set`, if any was saved.
    pub async fn latest(&self, set: &str) -> Result<Option<StoredSet>, PolicyStoreError> {
        let row: Option<(i64, String)> = on_database!(&self.db, pool =>
            sqlx::query_as(
                "SELECT revision, documents FROM fortress_policy_sets
                 WHERE set_name = $1 ORDER BY revision DESC LIMIT 1",
            )
            .bind(set)
            .fetch_optional(pool)
            .await)?;
        row.map(|(revision, text)| {
            decode(&text)
                .map(|documents| StoredSet {
                    revision,
                    documents,
                })
                .ok_or_else(|| PolicyStoreError::Malformed {
                    set: set.to_owned(),
                    revision,
                })
        })
        .transpose()
    }
}

fn encode(documents: &PolicyDocuments) -> String {
    let stored: Vec<StoredDocument> = documents
        .documents()
        .iter()
        .map(|d| StoredDocument {
            kind: d.kind.into(),
            name: d.name.clone(),
            text: d.text.clone(),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into())
}

fn decode(text: &str) -> Option<PolicyDocuments> {
    let stored: Vec<StoredDocument> = serde_json::from_str(text).ok()?;
    Some(stored.into_iter().fold(PolicyDocuments::new(), |docs, d| {
        docs.with(d.kind.into(), d.name, d.text)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revisions_count_up_per_set_and_broken_sets_are_refused() {
        let store = PolicyStore::open(Database::sqlite_memory().await.unwrap())
            .await
            .unwrap();
        let permit = PolicyDocuments::new()
            .with_policies("main.cedar", "permit(principal, action, resource);")
            .with_limits("");
        let forbid = PolicyDocuments::new()
            .with_policies("main.cedar", "forbid(principal, action, resource);");
        assert_eq!(store.save("pat", &permit).await.unwrap(), 1);
        assert_eq!(store.save("pat", &forbid).await.unwrap(), 2);
        assert_eq!(store.save("mcp", &permit).await.unwrap(), 1);
        let latest = store.latest("pat").await.unwrap().unwrap();
        assert_eq!(latest.revision, 2);
        assert_eq!(store.latest_revision("pat").await.unwrap(), 2);
        assert_eq!(store.latest_revision("none").await.unwrap(), 0);
        assert_eq!(latest.documents, forbid);
        // Kinds survive the round trip, so the version (a content hash) does too.
        assert_eq!(
            store
                .latest("mcp")
                .await
                .unwrap()
                .unwrap()
                .documents
                .version(),
            permit.version()
        );
        let broken = PolicyDocuments::new().with_policies("main.cedar", "permit(");
        assert!(matches!(
            store.save("pat", &broken).await,
            Err(PolicyStoreError::Invalid(_))
        ));
        assert_eq!(store.latest("pat").await.unwrap().unwrap().revision, 2);
    }
}
