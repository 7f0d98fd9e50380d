//! Sealed tokens ended before their expiry (for example a legacy MCP session its client
//! deleted), refused by every replica: a table in the shared database (the source of
//! truth), an announcement on the bus, and each replica's in-memory copy that the request
//! path consults without I/O.
//!
//! Tokens are never stored or announced: only their SHA-256 digest is. An entry is kept
//! for the token's longest lifetime after its revocation, after which the token has
//! expired by itself and the entry is purged.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use fortress_core::cluster::revoked::RevokedTokens;
//! use fortress_core::db::Database;
//!
//! let db = Database::sqlite_memory().await.unwrap();
//! let here = RevokedTokens::open(db.clone(), None, Duration::from_secs(3600)).await.unwrap();
//! let there = RevokedTokens::open(db, None, Duration::from_secs(3600)).await.unwrap();
//! here.revoke("fs1.some-session").await.unwrap();
//! assert!(here.is_revoked("fs1.some-session"));
//! // Another replica learns it from the table (at once when the bus announced it).
//! there.sync().await.unwrap();
//! assert!(there.is_revoked("fs1.some-session"));
//! assert!(!there.is_revoked("fs1.another"));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::{Change, ChangeHandler, ClusterBus};
use crate::db::Database;
use crate::on_database;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fortress_revoked_tokens (
    digest     TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
)";

/// The digest a revoked token is known by (hex SHA-256).
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The shared set of revoked tokens, and this replica's copy of it.
#[derive(Clone, Debug)]
pub struct RevokedTokens {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    bus: Option<ClusterBus>,
    lifetime: Duration,
    /// Digest → expiry (Unix milliseconds).
    local: RwLock<HashMap<String, i64>>,
    /// Digests revoked anywhere, as they become known here.
    revocations: broadcast::Sender<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RevokedTokens {
    /// Opens the table in `db` (creating it if needed) and loads it; revocations are
    /// announced on `bus`. `lifetime` is the longest a token lives (entries are kept that
    /// long after a revocation).
    pub async fn open(
        db: Database,
        bus: Option<ClusterBus>,
        lifetime: Duration,
    ) -> Result<Self, sqlx::Error> {
        db.migrate("fortress_revoked_tokens", SCHEMA).await?;
        let (revocations, _) = broadcast::channel(256);
        let tokens = Self {
            inner: Arc::new(Inner {
                db,
                bus,
                lifetime,
                local: RwLock::new(HashMap::new()),
                revocations,
            }),
        };
        tokens.sync().await?;
        Ok(tokens)
    }

    /// Whether `token` was revoked (as far as this replica knows: no I/O).
    pub fn is_revoked(&self, token: &str) -> bool {
        let local = self.inner.local.read().unwrap_or_else(|e| e.into_inner());
        // Checked on every request of a legacy session: nothing revoked, nothing to hash.
        if local.is_empty() {
            return false;
        }
        local
            .get(&token_digest(token))
            .is_some_and(|&expires| expires > now_ms())
    }

    /// When a revocation made now ends: when the token would have expired by itself.
    fn expiry(&self) -> i64 {
        let lifetime = i64::try_from(self.inner.lifetime.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_add(lifetime)
    }

    /// Revokes `token` everywhere: here at once, in the table, then announced.
    pub async fn revoke(&self, token: &str) -> Result<(), sqlx::Error> {
        let digest = token_digest(token);
        let expires = self.expiry();
        self.remember(&digest, expires);
        on_database!(&self.inner.db, pool => sqlx::query(
            "INSERT INTO fortress_revoked_tokens (digest, expires_ms) VALUES ($1, $2)
             ON CONFLICT (digest) DO UPDATE SET expires_ms = excluded.expires_ms",
        )
        .bind(&digest)
        .bind(expires)
        .execute(pool)
        .await
        .map(drop))?;
        if let Some(bus) = &self.inner.bus {
            bus.publish(&Change::TokenRevoked { digest }).await;
        }
        Ok(())
    }

    /// Re-reads the table (and purges entries whose tokens have expired by themselves).
    pub async fn sync(&self) -> Result<(), sqlx::Error> {
        let now = now_ms();
        on_database!(&self.inner.db, pool => sqlx::query(
            "DELETE FROM fortress_revoked_tokens WHERE expires_ms <= $1",
        )
        .bind(now)
        .execute(pool)
        .await
        .map(drop))?;
        let rows: Vec<(String, i64)> = on_database!(&self.inner.db, pool => sqlx::query_as(
            "SELECT digest, expires_ms FROM fortress_revoked_tokens",
        )
        .fetch_all(pool)
        .await)?;
        // A union: revocations are never undone, and one made here may not be in the
        // rows yet (it is remembered before it is written).
        let mut fresh = Vec::new();
        {
            let mut local = self.inner.local.write().unwrap_or_else(|e| e.into_inner());
            local.retain(|_, expires| *expires > now);
            for (digest, expires) in rows {
                if local.insert(digest.clone(), expires).is_none() {
                    fresh.push(digest);
                }
            }
        }
        for digest in fresh {
            let _ = self.inner.revocations.send(digest);
        }
        Ok(())
    }

    /// The digests of tokens revoked from now on (here or on another replica), so that
    /// what a replica holds for them can be closed.
    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.inner.revocations.subscribe()
    }

    /// The handler that keeps this replica's copy current; run it with
    /// [`follow`](super::follow).
    pub fn follower(&self) -> Arc<dyn ChangeHandler> {
        Arc::new(Follower {
            tokens: self.clone(),
        })
    }

    fn remember(&self, digest: &str, expires: i64) {
        let known = self
            .inner
            .local
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.to_owned(), expires)
            .is_some();
        if !known {
            let _ = self.inner.revocations.send(digest.to_owned());
        }
    }
}

struct Follower {
    tokens: RevokedTokens,
}

impl Follower {
    async fn refresh(&self) {
        if let Err(error) = self.tokens.sync().await {
            // The revocations known so far stay in force.
            tracing::error!(%error, "revoked-token table unreadable; known revocations kept");
        }
    }
}

#[async_trait]
impl ChangeHandler for Follower {
    async fn on_change(&self, change: &Change) {
        match change {
            Change::TokenRevoked { digest } => self.tokens.remember(digest, self.tokens.expiry()),
            Change::Resync => self.refresh().await,
            _ => {}
        }
    }

    async fn on_poll(&self) {
        self.refresh().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revocations_reach_other_replicas_and_their_listeners() {
        let db = Database::sqlite_memory().await.unwrap();
        let a = RevokedTokens::open(db.clone(), None, Duration::from_secs(60))
            .await
            .unwrap();
        let b = RevokedTokens::open(db, None, Duration::from_secs(60))
            .await
            .unwrap();
        let mut heard = b.revocations();
        a.revoke("t1").await.unwrap();
        assert!(!b.is_revoked("t1"));
        b.follower().on_poll().await;
        assert!(b.is_revoked("t1"));
        assert_eq!(heard.try_recv().unwrap(), token_digest("t1"));
        // An announcement alone (no table read) is enough too.
        b.follower()
            .on_change(&Change::TokenRevoked {
                digest: token_digest("t2"),
            })
            .await;
        assert!(b.is_revoked("t2"));
        assert_eq!(heard.try_recv().unwrap(), token_digest("t2"));
        // Known once: a later poll does not announce it again.
        b.sync().await.unwrap();
        assert!(heard.try_recv().is_err());
    }

    #[tokio::test]
    async fn entries_end_with_the_tokens_lifetime() {
        let db = Database::sqlite_memory().await.unwrap();
        let short = RevokedTokens::open(db.clone(), None, Duration::ZERO)
            .await
            .unwrap();
        short.revoke("t").await.unwrap();
        // Expired with the token: neither refused nor kept.
        assert!(!short.is_revoked("t"));
        short.sync().await.unwrap();
        let count: i64 = on_database!(&db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM fortress_revoked_tokens",
        )
        .fetch_one(pool)
        .await)
        .unwrap();
        assert_eq!(count, 0);
    }
}
