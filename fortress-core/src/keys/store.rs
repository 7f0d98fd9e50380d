//! The key store: SQLite in the data directory by default, or the PostgreSQL database the
//! replicas share (same SQL through [`Database`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    AuthError, ID_HEX, IssuedKey, KeyFormat, KeyRecord, KeyStoreError, NewKey, SECRET_HEX,
};
use crate::cluster::{Change, ChangeHandler, ClusterBus};
use crate::db::{Database, Dialect};
use crate::on_database;
use crate::secret::Secret;
use crate::subject::SubjectKind;

struct Cached {
    record: KeyRecord,
    mac: Vec<u8>,
    at: Instant,
}

/// The key store.
#[derive(Clone)]
pub struct KeyStore {
    db: Database,
    format: KeyFormat,
    /// HMAC keyed with the pepper, cloned per use (keying once is also faster).
    keyed: Hmac<Sha256>,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    cache_ttl: Duration,
    /// Tells other replicas to drop their cached record of a revoked or rotated key.
    bus: Option<ClusterBus>,
}

/// The stored columns, in `SELECT` order.
type Columns = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

const COLUMNS: &str = "id, workspace, subject_id, subject_kind, team, groups_json, scopes_json, \
     cidrs_json, name, mac, created_at, expires_at, revoked_at, replaced_by";

fn schema(table: &str, dialect: Dialect) -> String {
    let blob = dialect.blob();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    team TEXT,
    groups_json TEXT NOT NULL,
    scopes_json TEXT NOT NULL,
    cidrs_json TEXT NOT NULL,
    name TEXT NOT NULL,
    mac {blob} NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    replaced_by TEXT
)"
    )
}

fn ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn from_ts(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

impl KeyStore {
    /// Opens (creating if needed) `keys.sqlite` in `data_dir`.
    pub async fn open(
        data_dir: &Path,
        format: KeyFormat,
        pepper: Secret,
    ) -> Result<Self, KeyStoreError> {
        let db = Database::sqlite_file(&data_dir.join("keys.sqlite")).await?;
        Self::with_database(db, format, pepper).await
    }

    /// A store in memory (tests, the demo).
    pub async fn in_memory(format: KeyFormat, pepper: Secret) -> Result<Self, KeyStoreError> {
        Self::with_database(Database::sqlite_memory().await?, format, pepper).await
    }

    /// A store in `db` (SQLite or the PostgreSQL database replicas share), creating its
    /// table if needed.
    pub async fn with_database(
        db: Database,
        format: KeyFormat,
        pepper: Secret,
    ) -> Result<Self, KeyStoreError> {
        db.migrate(format.table, &schema(format.table, db.dialect()))
            .await?;
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(pepper.expose())
            .map_err(|_| KeyStoreError::Corrupt("pepper".into()))?;
        Ok(Self {
            db,
            format,
            keyed,
            cache: Arc::new(Mutex::new(HashMap::new())),
            cache_ttl: Duration::from_secs(2),
            bus: None,
        })
    }

    /// Announces revocations and rotations on `bus`, so other replicas drop their cached
    /// record at once instead of after the cache lifetime.
    #[must_use]
    pub fn with_bus(mut self, bus: ClusterBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// How long a verified key record is reused before the database is asked again
    /// (revocations made through this store take effect at once).
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    fn mac(&self, id: &str, secret: &str) -> Vec<u8> {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Issues a key.
    pub async fn create(&self, new: NewKey) -> Result<IssuedKey, KeyStoreError> {
        let mut rng = rand::thread_rng();
        let mut id = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = zeroize::Zeroizing::new(hex::encode(secret));
        let mac = self.mac(&id, &secret);
        let record = KeyRecord {
            id: id.clone(),
            workspace: new.workspace,
            subject_id: new.subject_id,
            kind: new.kind,
            team: new.team,
            groups: new.groups,
            scopes: new.scopes,
            cidrs: new.cidrs,
            name: new.name,
            created_at: Utc::now(),
            expires_at: new.expires_at,
            revoked_at: None,
            replaced_by: None,
        };
        let json = |v: &dyn erased::ToJson| v.to_json();
        let insert = format!(
            "INSERT INTO {} (id, workspace, subject_id, subject_kind, team, groups_json,
             scopes_json, cidrs_json, name, mac, created_at, expires_at, revoked_at, replaced_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL)",
            self.format.table
        );
        on_database!(&self.db, pool => sqlx::query(&insert)
            .bind(&record.id)
            .bind(&record.workspace)
            .bind(&record.subject_id)
            .bind(record.kind.as_str())
            .bind(&record.team)
            .bind(json(&record.groups))
            .bind(json(&record.scopes))
            .bind(json(&record.cidrs))
            .bind(&record.name)
            .bind(&mac)
            .bind(record.created_at.timestamp_millis())
            .bind(ts(record.expires_at))
            .execute(pool)
            .await
            .map(drop))?;
        let token = Secret::from_text(format!("{}{id}_{}", self.format.prefix, secret.as_str()));
        Ok(IssuedKey { token, record })
    }

    async fn fetch(&self, id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>, KeyStoreError> {
        let select = format!("SELECT {COLUMNS} FROM {} WHERE id = $1", self.format.table);
        let row: Option<Columns> = on_database!(&self.db, pool => sqlx::query_as(&select)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        row.map(read_row).transpose()
    }

    /// Lists keys (of one workspace, or all).
    pub async fn list(&self, workspace: Option<&str>) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let table = self.format.table;
        let rows: Vec<Columns> = match workspace {
            Some(w) => {
                let select = format!(
                    "SELECT {COLUMNS} FROM {table} WHERE workspace = $1 ORDER BY created_at, id"
                );
                on_database!(&self.db, pool => sqlx::query_as(&select).bind(w).fetch_all(pool).await)?
            }
            None => {
                let select = format!("SELECT {COLUMNS} FROM {table} ORDER BY created_at, id");
                on_database!(&self.db, pool => sqlx::query_as(&select).fetch_all(pool).await)?
            }
        };
        rows.into_iter()
            .map(|row| read_row(row).map(|(record, _)| record))
            .collect()
    }

    /// Revokes a key at once.
    pub async fn revoke(&self, id: &str) -> Result<(), KeyStoreError> {
        let update = format!(
            "UPDATE {} SET revoked_at = $1 WHERE id = $2",
            self.format.table
        );
        let affected = on_database!(&self.db, pool => sqlx::query(&update)
            .bind(Utc::now().timestamp_millis())
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        self.forget(id);
        self.announce(id).await;
        if affected == 0 {
            return Err(KeyStoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Issues a successor with the same attributes; the old key keeps working for
    /// `overlap`, then expires.
    pub async fn rotate(&self, id: &str, overlap: Duration) -> Result<IssuedKey, KeyStoreError> {
        let Some((old, _)) = self.fetch(id).await? else {
            return Err(KeyStoreError::NotFound(id.to_owned()));
        };
        let issued = self
            .create(NewKey {
                workspace: old.workspace.clone(),
                subject_id: old.subject_id.clone(),
                kind: old.kind,
                team: old.team.clone(),
                groups: old.groups.clone(),
                scopes: old.scopes.clone(),
                cidrs: old.cidrs.clone(),
                expires_at: old.expires_at,
                name: old.name.clone(),
            })
            .await?;
        let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::zero());
        let until = Utc::now() + overlap;
        let expires = old.expires_at.map_or(until, |t| t.min(until));
        let update = format!(
            "UPDATE {} SET expires_at = $1, replaced_by = $2 WHERE id = $3",
            self.format.table
        );
        on_database!(&self.db, pool => sqlx::query(&update)
            .bind(expires.timestamp_millis())
            .bind(&issued.record.id)
            .bind(id)
            .execute(pool)
            .await
            .map(drop))?;
        self.forget(id);
        self.announce(id).await;
        Ok(issued)
    }

    /// The key format this store issues and accepts.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// Drops the cached record of key `id` (the next use reads the database again).
    pub fn forget(&self, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Drops every cached record (after a gap in change announcements).
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A [`ChangeHandler`] (for [`crate::cluster::follow`]) that drops this store's cached
    /// records when another replica revokes or rotates a key.
    pub fn follower(&self) -> Arc<dyn ChangeHandler> {
        Arc::new(KeyFollower(self.clone()))
    }

    async fn announce(&self, id: &str) {
        if let Some(bus) = &self.bus {
            bus.publish(&Change::KeyChanged { id: id.to_owned() }).await;
        }
    }

    /// Checks a presented key: shape, id, secret (constant time), revocation, expiry and
    /// network binding.
    pub async fn authenticate(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<KeyRecord, AuthError> {
        let (id, secret) = self.format.parse(token).ok_or(AuthError::Invalid)?;
        let presented = self.mac(id, secret);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(id)
                .filter(|c| c.at.elapsed() < self.cache_ttl)
                .map(|c| (c.record.clone(), c.mac.clone()))
        };
        let (record, mac) = match cached {
            Some(hit) => hit,
            None => {
                let fetched = self.fetch(id).await.map_err(|error| {
                    tracing::warn!(%error, "key store lookup failed");
                    AuthError::Store
                })?;
                let Some((record, mac)) = fetched else {
                    return Err(AuthError::Invalid);
                };
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    id.to_owned(),
                    Cached {
                        record: record.clone(),
                        mac: mac.clone(),
                        at: Instant::now(),
                    },
                );
                (record, mac)
            }
        };
        if !bool::from(presented.ct_eq(&mac)) {
            return Err(AuthError::Invalid);
        }
        record.check(Utc::now(), client_ip)?;
        Ok(record)
    }
}

/// Drops cached key records that another replica announced as changed.
struct KeyFollower(KeyStore);

#[async_trait::async_trait]
impl ChangeHandler for KeyFollower {
    async fn on_change(&self, change: &Change) {
        match change {
            Change::KeyChanged { id } => self.0.forget(id),
            Change::Resync => self.0.forget_all(),
            _ => {}
        }
    }

    // Without announcements the cache lifetime bounds staleness.
    async fn on_poll(&self) {}
}

mod erased {
    /// Serializes a column value to JSON text.
    pub(super) trait ToJson {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> ToJson for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "[]".to_owned())
        }
    }
}

fn read_row(row: Columns) -> Result<(KeyRecord, Vec<u8>), KeyStoreError> {
    let (
        id,
        workspace,
        subject_id,
        kind,
        team,
        groups,
        scopes,
        cidrs,
        name,
        mac,
        created_at,
        expires_at,
        revoked_at,
        replaced_by,
    ) = row;
    let corrupt = || KeyStoreError::Corrupt(id.clone());
    let list = |text: &str| -> Result<Vec<String>, KeyStoreError> {
        serde_json::from_str(text).map_err(|_| corrupt())
    };
    let cidrs: Vec<IpNet> = serde_json::from_str(&cidrs).map_err(|_| corrupt())?;
    let kind = match kind.as_str() {
        "user" => SubjectKind::User,
        "app" => SubjectKind::App,
        _ => return Err(corrupt()),
    };
    let record = KeyRecord {
        id: id.clone(),
        workspace,
        subject_id,
        kind,
        team,
        groups: list(&groups)?,
        scopes: list(&scopes)?,
        cidrs,
        name,
        created_at: from_ts(Some(created_at)).ok_or_else(corrupt)?,
        expires_at: from_ts(expires_at),
        revoked_at: from_ts(revoked_at),
        replaced_by,
    };
    Ok((record, mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Action;
    use crate::keys::token_of;

    async fn store() -> KeyStore {
        KeyStore::in_memory(KeyFormat::PAT, Secret::from("test-pepper"))
            .await
            .unwrap()
    }

    fn token(issued: &IssuedKey) -> String {
        issued.token.expose_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn keys_authenticate_and_wrong_secrets_do_not() {
        let store = store().await;
        let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
        let good = token(&issued);
        assert!(KeyFormat::PAT.parse(&good).is_some());
        assert_eq!(
            store.authenticate(&good, None).await.unwrap().id,
            issued.record.id
        );
        let mut bad = good.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            store.authenticate(&bad, None).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            store.authenticate("sk-ant-x", None).await,
            Err(AuthError::Invalid)
        );
        // The same token under another pepper does not verify.
        let other =
            KeyStore::with_database(store.db.clone(), KeyFormat::PAT, Secret::from("other"))
                .await
                .unwrap();
        assert_eq!(
            other.authenticate(&good, None).await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn the_database_never_holds_the_secret() {
        let store = store().await;
        let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
        let (_, secret) = KeyFormat::PAT
            .parse(issued.token.expose_str().unwrap())
            .unwrap();
        use sqlx::Row;
        let crate::db::Database::Sqlite(pool) = &store.db else {
            unreachable!()
        };
        let rows = sqlx::query("SELECT * FROM pat_keys")
            .fetch_all(pool)
            .await
            .unwrap();
        for row in rows {
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    assert!(!text.contains(secret));
                }
                if let Ok(bytes) = row.try_get::<Vec<u8>, _>(i) {
                    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
                }
            }
        }
    }

    #[tokio::test]
    async fn revoke_expiry_scopes_and_cidr() {
        let store = store().await;
        let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
        store.revoke(&issued.record.id).await.unwrap();
        assert_eq!(
            store.authenticate(&token(&issued), None).await,
            Err(AuthError::Revoked)
        );

        let mut new = NewKey::user("acme", "bob");
        new.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        let expired = store.create(new).await.unwrap();
        assert_eq!(
            store.authenticate(&token(&expired), None).await,
            Err(AuthError::Expired)
        );

        let mut new = NewKey::user("acme", "carol");
        new.cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        new.scopes = vec!["models/*".into(), "messages/count_tokens".into()];
        let bound = store.create(new).await.unwrap();
        let inside = Some("10.1.2.3".parse().unwrap());
        let outside = Some("192.168.1.1".parse().unwrap());
        let record = store.authenticate(&token(&bound), inside).await.unwrap();
        assert_eq!(
            store.authenticate(&token(&bound), outside).await,
            Err(AuthError::Network)
        );
        assert!(record.allows(&Action::ListModels));
        assert!(record.allows(&Action::CountTokens));
        assert!(!record.allows(&Action::CreateMessage));
    }

    #[tokio::test]
    async fn rotation_overlaps_then_the_old_key_expires() {
        let store = store().await;
        let old = store.create(NewKey::user("acme", "alice")).await.unwrap();
        let new = store
            .rotate(&old.record.id, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(store.authenticate(&token(&old), None).await.is_ok());
        assert!(store.authenticate(&token(&new), None).await.is_ok());
        let zero = store.rotate(&new.record.id, Duration::ZERO).await.unwrap();
        assert_eq!(
            store.authenticate(&token(&new), None).await,
            Err(AuthError::Expired)
        );
        assert!(store.authenticate(&token(&zero), None).await.is_ok());
        let listed = store.list(Some("acme")).await.unwrap();
        assert_eq!(listed.len(), 3);
        // Keys created in the same millisecond list in id order, so find the first one by id.
        let first = listed.iter().find(|k| k.id == old.record.id).unwrap();
        assert_eq!(first.replaced_by.as_deref(), Some(new.record.id.as_str()));
    }

    #[tokio::test]
    async fn a_key_of_one_gateway_is_not_accepted_by_the_other() {
        let pat = store().await;
        let mcp = KeyStore::in_memory(KeyFormat::MCP, Secret::from("test-pepper"))
            .await
            .unwrap();
        let pat_key = pat.create(NewKey::user("acme", "alice")).await.unwrap();
        let mcp_key = mcp.create(NewKey::user("acme", "alice")).await.unwrap();
        assert!(token(&mcp_key).starts_with("fmk_"));
        assert_eq!(
            mcp.authenticate(&token(&pat_key), None).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            pat.authenticate(&token(&mcp_key), None).await,
            Err(AuthError::Invalid)
        );
        assert!(mcp.authenticate(&token(&mcp_key), None).await.is_ok());
    }

    #[test]
    fn tokens_come_from_either_header() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer fpk_x".parse().unwrap());
        assert_eq!(token_of(&h), Some("fpk_x"));
        h.insert("x-api-key", "fpk_y".parse().unwrap());
        assert_eq!(token_of(&h), Some("fpk_y"));
    }
}
