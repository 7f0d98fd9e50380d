//! Gateway keys: issued by the gateway, shown once, stored only as a peppered HMAC.
//!
//! A key reads `fpk_<id>_<secret>`: a recognizable prefix (friendly to secret scanners),
//! a public id (16 hex digits, the database key) and a secret (64 hex digits). The store
//! keeps `HMAC-SHA256(pepper, id ‖ secret)` and compares in constant time, so a stolen
//! database opens nothing without the pepper. Keys carry scopes, an optional expiry and
//! CIDR binding, and can be revoked or rotated with an overlap window during which the old
//! and the new key both work.
//!
//! Storage is SQLite in the data directory (portable SQL, ready for PostgreSQL).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::secret::Secret;
//! use fortress_pat::keys::{KeyStore, NewKey};
//!
//! let store = KeyStore::in_memory(Secret::from("pepper")).await.unwrap();
//! let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
//! let token = issued.token.expose_str().unwrap().to_owned();
//! assert!(token.starts_with("fpk_"));
//! let record = store.authenticate(&token, None).await.unwrap();
//! assert_eq!(record.subject_id, "alice");
//! # });
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use fortress_core::call::Action;
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, SubjectKind, WorkspaceId};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use subtle::ConstantTimeEq;

/// The prefix every gateway key starts with.
pub const KEY_PREFIX: &str = "fpk_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// What a new key is for.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Workspace.
    pub workspace: String,
    /// The user or app id the key acts as.
    pub subject_id: String,
    /// User or app.
    pub kind: SubjectKind,
    /// The team (also added to the subject's groups).
    pub team: Option<String>,
    /// Further groups.
    pub groups: Vec<String>,
    /// Action scopes: `*`, an action name (`messages/create`) or a prefix (`models/*`).
    pub scopes: Vec<String>,
    /// Networks the key may be used from (empty: anywhere).
    pub cidrs: Vec<IpNet>,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// A label for people.
    pub name: String,
}

impl NewKey {
    /// A key for a user with every scope and no expiry.
    pub fn user(workspace: &str, user: &str) -> Self {
        Self {
            workspace: workspace.to_owned(),
            subject_id: user.to_owned(),
            kind: SubjectKind::User,
            team: None,
            groups: Vec::new(),
            scopes: vec!["*".to_owned()],
            cidrs: Vec::new(),
            expires_at: None,
            name: String::new(),
        }
    }
}

/// A stored key, without its secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyRecord {
    /// The public id.
    pub id: String,
    /// Workspace.
    pub workspace: String,
    /// The subject the key acts as.
    pub subject_id: String,
    /// User or app.
    pub kind: SubjectKind,
    /// Team.
    pub team: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// CIDR binding.
    pub cidrs: Vec<IpNet>,
    /// Label.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced this one by rotation.
    pub replaced_by: Option<String>,
}

impl KeyRecord {
    /// The subject this key authenticates.
    pub fn subject(&self) -> Subject {
        let mut groups = self.groups.clone();
        if let Some(team) = &self.team
            && !groups.contains(team)
        {
            groups.push(team.clone());
        }
        let workspace = WorkspaceId::new(self.workspace.clone());
        let subject = match self.kind {
            SubjectKind::User => Subject::user(self.subject_id.clone(), workspace),
            SubjectKind::App => Subject::app(self.subject_id.clone(), workspace),
        };
        subject.with_groups(groups)
    }

    /// Whether a scope of the key covers `action`.
    pub fn allows(&self, action: &Action) -> bool {
        let name = action.as_str();
        self.scopes.iter().any(|scope| {
            scope == "*"
                || scope == name
                || scope
                    .strip_suffix('*')
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }

    /// Whether the key is usable now from `ip`.
    fn check(&self, now: DateTime<Utc>, ip: Option<IpAddr>) -> Result<(), AuthError> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        if !self.cidrs.is_empty() {
            let Some(ip) = ip else {
                return Err(AuthError::Network);
            };
            if !self.cidrs.iter().any(|net| net.contains(&ip)) {
                return Err(AuthError::Network);
            }
        }
        Ok(())
    }
}

/// A key just issued: the token is shown once and never stored.
#[derive(Debug)]
pub struct IssuedKey {
    /// The full key (`fpk_<id>_<secret>`).
    pub token: Secret,
    /// Its record.
    pub record: KeyRecord,
}

/// Why a key was not accepted. Callers see only "invalid API key" (or the network
/// refusal), never which check failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No key in `x-api-key` or `Authorization: Bearer`.
    #[error("no API key was given")]
    Missing,
    /// Not a gateway key, unknown id or wrong secret.
    #[error("invalid API key")]
    Invalid,
    /// Past its expiry.
    #[error("API key expired")]
    Expired,
    /// Revoked.
    #[error("API key revoked")]
    Revoked,
    /// Used from outside its bound networks.
    #[error("API key not permitted from this address")]
    Network,
    /// The key store failed.
    #[error("key store unavailable")]
    Store,
}

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The database failed.
    #[error("key database failed")]
    Database(#[source] sqlx::Error),
    /// No such key.
    #[error("no key with id {0}")]
    NotFound(String),
    /// A stored row is unreadable.
    #[error("corrupt key record {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for KeyStoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Splits `fpk_<id>_<secret>` into id and secret, checking the shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// The key of a request: `x-api-key`, else `Authorization: Bearer`.
pub fn token_of(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

struct Cached {
    record: KeyRecord,
    mac: Vec<u8>,
    at: Instant,
}

/// The key store.
#[derive(Clone)]
pub struct KeyStore {
    pool: SqlitePool,
    /// HMAC keyed with the pepper, cloned per use (keying once is also faster).
    keyed: Hmac<Sha256>,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    cache_ttl: Duration,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pat_keys (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    team TEXT,
    groups_json TEXT NOT NULL,
    scopes_json TEXT NOT NULL,
    cidrs_json TEXT NOT NULL,
    name TEXT NOT NULL,
    mac BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    replaced_by TEXT
)";

fn ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn from_ts(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

impl KeyStore {
    /// Opens (creating if needed) `keys.sqlite` in `data_dir`.
    pub async fn open(data_dir: &Path, pepper: Secret) -> Result<Self, KeyStoreError> {
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("keys.sqlite"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::with_pool(pool, pepper).await
    }

    /// A store in memory (tests, the demo).
    pub async fn in_memory(pepper: Secret) -> Result<Self, KeyStoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every connection to `:memory:` is a different database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Self::with_pool(pool, pepper).await
    }

    async fn with_pool(pool: SqlitePool, pepper: Secret) -> Result<Self, KeyStoreError> {
        sqlx::query(SCHEMA).execute(&pool).await?;
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(pepper.expose())
            .map_err(|_| KeyStoreError::Corrupt("pepper".into()))?;
        Ok(Self {
            pool,
            keyed,
            cache: Arc::new(Mutex::new(HashMap::new())),
            cache_ttl: Duration::from_secs(2),
        })
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
        sqlx::query(
            "INSERT INTO pat_keys (id, workspace, subject_id, subject_kind, team, groups_json,
             scopes_json, cidrs_json, name, mac, created_at, expires_at, revoked_at, replaced_by)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        )
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
        .execute(&self.pool)
        .await?;
        let token = Secret::from_text(format!("{KEY_PREFIX}{id}_{}", secret.as_str()));
        Ok(IssuedKey { token, record })
    }

    async fn fetch(&self, id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>, KeyStoreError> {
        let row = sqlx::query("SELECT * FROM pat_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| read_row(&row)).transpose()
    }

    /// Lists keys (of one workspace, or all).
    pub async fn list(&self, workspace: Option<&str>) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let rows = match workspace {
            Some(w) => {
                sqlx::query("SELECT * FROM pat_keys WHERE workspace = ? ORDER BY created_at")
                    .bind(w)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM pat_keys ORDER BY created_at")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| read_row(row).map(|(record, _)| record))
            .collect()
    }

    /// Revokes a key at once.
    pub async fn revoke(&self, id: &str) -> Result<(), KeyStoreError> {
        let done = sqlx::query("UPDATE pat_keys SET revoked_at = ? WHERE id = ?")
            .bind(Utc::now().timestamp_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.forget(id);
        if done.rows_affected() == 0 {
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
        sqlx::query("UPDATE pat_keys SET expires_at = ?, replaced_by = ? WHERE id = ?")
            .bind(expires.timestamp_millis())
            .bind(&issued.record.id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.forget(id);
        Ok(issued)
    }

    fn forget(&self, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Checks a presented key: shape, id, secret (constant time), revocation, expiry and
    /// network binding.
    pub async fn authenticate(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<KeyRecord, AuthError> {
        let (id, secret) = parse_token(token).ok_or(AuthError::Invalid)?;
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

fn read_row(row: &sqlx::sqlite::SqliteRow) -> Result<(KeyRecord, Vec<u8>), KeyStoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = || KeyStoreError::Corrupt(id.clone());
    let list = |col: &str| -> Result<Vec<String>, KeyStoreError> {
        let text: String = row.try_get(col)?;
        serde_json::from_str(&text).map_err(|_| corrupt())
    };
    let cidrs: Vec<IpNet> = {
        let text: String = row.try_get("cidrs_json")?;
        serde_json::from_str(&text).map_err(|_| corrupt())?
    };
    let kind = match row.try_get::<String, _>("subject_kind")?.as_str() {
        "user" => SubjectKind::User,
        "app" => SubjectKind::App,
        _ => return Err(corrupt()),
    };
    let record = KeyRecord {
        id: id.clone(),
        workspace: row.try_get("workspace")?,
        subject_id: row.try_get("subject_id")?,
        kind,
        team: row.try_get("team")?,
        groups: list("groups_json")?,
        scopes: list("scopes_json")?,
        cidrs,
        name: row.try_get("name")?,
        created_at: from_ts(Some(row.try_get("created_at")?)).ok_or_else(corrupt)?,
        expires_at: from_ts(row.try_get("expires_at")?),
        revoked_at: from_ts(row.try_get("revoked_at")?),
        replaced_by: row.try_get("replaced_by")?,
    };
    let mac: Vec<u8> = row.try_get("mac")?;
    Ok((record, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> KeyStore {
        KeyStore::in_memory(Secret::from("test-pepper"))
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
        assert!(parse_token(&good).is_some());
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
        let other = KeyStore::with_pool(store.pool.clone(), Secret::from("other"))
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
        let (_, secret) = parse_token(issued.token.expose_str().unwrap()).unwrap();
        let rows = sqlx::query("SELECT * FROM pat_keys")
            .fetch_all(&store.pool)
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
        assert_eq!(
            listed[0].replaced_by.as_deref(),
            Some(new.record.id.as_str())
        );
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
