//! Admin accounts, login sessions and API tokens, stored in SQLite or in the PostgreSQL
//! database replicas share (so a session opened on one replica is valid on all).
//!
//! Passwords are hashed with Argon2id. Session ids, CSRF tokens and API tokens are 256-bit
//! random values; only their SHA-256 digests are stored, so a copy of the database opens no
//! session. A session lasts [`SESSION_TTL`]; API tokens last until revoked.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rbac::Role;
use crate::db::Database;
use crate::on_database;
use crate::secret::Secret;

/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Why an account operation failed. Never carries a password or token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Unknown user or wrong password (deliberately not told apart).
    #[error("invalid username or password")]
    InvalidLogin,
    /// The account exists already.
    #[error("account {0:?} already exists")]
    Exists(String),
    /// No such account or token.
    #[error("{0} not found")]
    NotFound(String),
    /// The input is unacceptable (empty name, short password, …).
    #[error("{0}")]
    Invalid(String),
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash,
    /// Storage failed.
    #[error("account storage failed")]
    Storage(#[source] sqlx::Error),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Storage(e)
    }
}

/// How a principal authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AuthMethod {
    /// A browser session (cookie); unsafe methods need the CSRF token.
    Session,
    /// An API token for automation.
    Token {
        /// The token's public id.
        id: String,
    },
}

/// An authenticated admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminPrincipal {
    /// The account name (for tokens: the account that created it).
    pub name: String,
    /// The role in force.
    pub role: Role,
    /// How they authenticated.
    pub method: AuthMethod,
}

/// A new login session: the cookie value and the CSRF token, shown once.
#[derive(Debug)]
pub struct NewSession {
    /// Goes into the `HttpOnly` session cookie.
    pub session: Secret,
    /// Must accompany every unsafe request in the `x-csrf-token` header.
    pub csrf: Secret,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// Who logged in.
    pub principal: AdminPrincipal,
}

/// An account, without its password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The name.
    pub username: String,
    /// The role.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An API token, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's public id (the part after `fat_` and before the second `_`).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rngs::OsRng, buf.as_mut_slice());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hash_password(password: &Secret) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AccountError::Hash)
}

fn verify_password(password: &Secret, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.expose(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The admin account store.
#[derive(Clone)]
pub struct AccountStore {
    db: Database,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS admin_accounts (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_sessions (
    session_digest TEXT PRIMARY KEY,
    csrf_digest TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES admin_accounts(username) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);
";

impl AccountStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<Self, AccountError> {
        Self::with_database(Database::sqlite_file(path).await?).await
    }

    /// A store that lives in memory (tests and demos).
    pub async fn in_memory() -> Result<Self, AccountError> {
        Self::with_database(Database::sqlite_memory().await?).await
    }

    /// A store in `db` (SQLite or the PostgreSQL database replicas share), creating its
    /// tables if needed.
    pub async fn with_database(db: Database) -> Result<Self, AccountError> {
        db.migrate("admin_accounts", SCHEMA).await?;
        Ok(Self { db })
    }

    /// Creates an account. Passwords need at least 12 characters.
    pub async fn create_account(
        &self,
        username: &str,
        password: &Secret,
        role: Role,
    ) -> Result<AccountInfo, AccountError> {
        let username = username.trim();
        if username.is_empty() || username.len() > 128 {
            return Err(AccountError::Invalid(
                "username must have 1 to 128 characters".into(),
            ));
        }
        if password.len() < 12 {
            return Err(AccountError::Invalid(
                "password must have at least 12 characters".into(),
            ));
        }
        let hash = {
            let password = password.clone();
            tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|_| AccountError::Hash)??
        };
        let now = Utc::now();
        let inserted = on_database!(&self.db, pool => sqlx::query(
            "INSERT INTO admin_accounts (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(username) DO NOTHING",
        )
        .bind(username)
        .bind(hash)
        .bind(role.as_str())
        .bind(now.to_rfc3339())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if inserted == 0 {
            return Err(AccountError::Exists(username.to_owned()));
        }
        Ok(AccountInfo {
            username: username.to_owned(),
            role,
            created_at: now,
        })
    }

    /// Every account.
    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, AccountError> {
        let rows: Vec<(String, String, String)> = on_database!(&self.db, pool =>
            sqlx::query_as("SELECT username, role, created_at FROM admin_accounts ORDER BY username")
                .fetch_all(pool)
                .await)?;
        rows.into_iter().map(account_from_row).collect()
    }

    /// Whether any account exists (a fresh install has none).
    pub async fn is_empty(&self) -> Result<bool, AccountError> {
        let n: i64 = on_database!(&self.db, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM admin_accounts")
                .fetch_one(pool)
                .await)?;
        Ok(n == 0)
    }

    /// Changes an account's role.
    pub async fn set_role(&self, username: &str, role: Role) -> Result<(), AccountError> {
        let done = on_database!(&self.db, pool =>
            sqlx::query("UPDATE admin_accounts SET role = $1 WHERE username = $2")
                .bind(role.as_str())
                .bind(username)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(AccountError::NotFound(format!("account {username:?}")));
        }
        Ok(())
    }

    /// Removes an account and its sessions.
    pub async fn delete_account(&self, username: &str) -> Result<(), AccountError> {
        // Sessions first: PostgreSQL enforces the reference; SQLite cascades anyway.
        on_database!(&self.db, pool =>
            sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
                .bind(username)
                .execute(pool)
                .await
                .map(drop))?;
        let done = on_database!(&self.db, pool =>
            sqlx::query("DELETE FROM admin_accounts WHERE username = $1")
                .bind(username)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(AccountError::NotFound(format!("account {username:?}")));
        }
        Ok(())
    }

    /// Checks a password and opens a session.
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<NewSession, AccountError> {
        let row: Option<(String, String)> = on_database!(&self.db, pool =>
            sqlx::query_as("SELECT password_hash, role FROM admin_accounts WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await)?;
        // Verify against a fixed hash when the user is unknown, so timing does not reveal it.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Ke2Lv7UXw4GYX+x0j8pN2vkP2qSy8f2z0k2E8cX2sGA";
        let (hash, role) = match row {
            Some((hash, role)) => (hash, Some(role)),
            None => (DUMMY.to_owned(), None),
        };
        let ok = {
            let password = password.clone();
            tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .map_err(|_| AccountError::Hash)?
        };
        let role = match (ok, role) {
            (true, Some(role)) => Role::from_str(&role).map_err(|_| AccountError::InvalidLogin)?,
            _ => return Err(AccountError::InvalidLogin),
        };
        let session = random_token(32);
        let csrf = random_token(32);
        let expires_at = Utc::now() + chrono::Duration::from_std(SESSION_TTL).unwrap_or_default();
        on_database!(&self.db, pool =>
            sqlx::query("INSERT INTO admin_sessions (session_digest, csrf_digest, username, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(digest(&session))
                .bind(digest(&csrf))
                .bind(username)
                .bind(expires_at.to_rfc3339())
                .execute(pool)
                .await
                .map(drop))?;
        Ok(NewSession {
            session: Secret::from(session),
            csrf: Secret::from(csrf),
            expires_at,
            principal: AdminPrincipal {
                name: username.to_owned(),
                role,
                method: AuthMethod::Session,
            },
        })
    }

    /// The principal of a live session, checking the CSRF token when `csrf` is given.
    ///
    /// Returns `None` for unknown or expired sessions and for a wrong CSRF token.
    pub async fn session(
        &self,
        session: &str,
        csrf: Option<&str>,
    ) -> Result<Option<AdminPrincipal>, AccountError> {
        let row: Option<(String, String, String, String)> = on_database!(&self.db, pool => sqlx::query_as(
            "SELECT s.csrf_digest, s.expires_at, a.username, a.role FROM admin_sessions s
             JOIN admin_accounts a ON a.username = s.username WHERE s.session_digest = $1",
        )
        .bind(digest(session))
        .fetch_optional(pool)
        .await)?;
        let Some((expected, expires, name, role)) = row else {
            return Ok(None);
        };
        let expired = DateTime::parse_from_rfc3339(&expires)
            .map(|t| t < Utc::now())
            .unwrap_or(true);
        if expired {
            return Ok(None);
        }
        if let Some(csrf) = csrf {
            let given = digest(csrf);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                given.as_bytes(),
            )) {
                return Ok(None);
            }
        }
        Ok(Some(AdminPrincipal {
            name,
            role: Role::from_str(&role).map_err(|e| AccountError::Invalid(e.to_string()))?,
            method: AuthMethod::Session,
        }))
    }

    /// Ends a session.
    pub async fn logout(&self, session: &str) -> Result<(), AccountError> {
        on_database!(&self.db, pool =>
            sqlx::query("DELETE FROM admin_sessions WHERE session_digest = $1")
                .bind(digest(session))
                .execute(pool)
                .await
                .map(drop))?;
        Ok(())
    }

    /// Issues an API token (`fat_<id>_<secret>`), shown once.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<(TokenInfo, Secret), AccountError> {
        let id = random_token(9);
        let token = format!("fat_{id}_{}", random_token(32));
        let now = Utc::now();
        on_database!(&self.db, pool => sqlx::query(
            "INSERT INTO admin_tokens (id, token_digest, name, role, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(digest(&token))
        .bind(name)
        .bind(role.as_str())
        .bind(created_by)
        .bind(now.to_rfc3339())
        .execute(pool)
        .await
        .map(drop))?;
        let info = TokenInfo {
            id,
            name: name.to_owned(),
            role,
            created_by: created_by.to_owned(),
            created_at: now,
            revoked: false,
        };
        Ok((info, Secret::from(token)))
    }

    /// The principal of a live API token.
    pub async fn token(&self, token: &str) -> Result<Option<AdminPrincipal>, AccountError> {
        let row: Option<(String, String, String)> = on_database!(&self.db, pool => sqlx::query_as(
            "SELECT id, role, created_by FROM admin_tokens WHERE token_digest = $1 AND revoked = 0",
        )
        .bind(digest(token))
        .fetch_optional(pool)
        .await)?;
        let Some((id, role, name)) = row else {
            return Ok(None);
        };
        Ok(Some(AdminPrincipal {
            name,
            role: Role::from_str(&role).map_err(|e| AccountError::Invalid(e.to_string()))?,
            method: AuthMethod::Token { id },
        }))
    }

    /// Revokes an API token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), AccountError> {
        let done = on_database!(&self.db, pool =>
            sqlx::query("UPDATE admin_tokens SET revoked = 1 WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(AccountError::NotFound(format!("token {id:?}")));
        }
        Ok(())
    }

    /// Every API token (without secrets).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError> {
        let rows: Vec<(String, String, String, String, String, i64)> = on_database!(&self.db, pool =>
            sqlx::query_as("SELECT id, name, role, created_by, created_at, revoked FROM admin_tokens ORDER BY created_at, id")
                .fetch_all(pool)
                .await)?;
        rows.into_iter()
            .map(|(id, name, role, created_by, created, revoked)| {
                Ok(TokenInfo {
                    id,
                    name,
                    role: Role::from_str(&role)
                        .map_err(|e| AccountError::Invalid(e.to_string()))?,
                    created_by,
                    created_at: parse_time(&created)?,
                    revoked: revoked != 0,
                })
            })
            .collect()
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, AccountError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AccountError::Invalid(format!("stored time {text:?}: {e}")))
}

fn account_from_row(
    (username, role, created): (String, String, String),
) -> Result<AccountInfo, AccountError> {
    Ok(AccountInfo {
        username,
        role: Role::from_str(&role).map_err(|e| AccountError::Invalid(e.to_string()))?,
        created_at: parse_time(&created)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "correct horse battery";

    #[tokio::test]
    async fn login_issues_a_session_checked_with_csrf() {
        let store = AccountStore::in_memory().await.unwrap();
        assert!(store.is_empty().await.unwrap());
        store
            .create_account("root", &Secret::from(PW), Role::Owner)
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_account("root", &Secret::from(PW), Role::Owner)
                .await,
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            store.login("root", &Secret::from("wrong password!")).await,
            Err(AccountError::InvalidLogin)
        ));
        assert!(matches!(
            store.login("nobody", &Secret::from(PW)).await,
            Err(AccountError::InvalidLogin)
        ));
        let s = store.login("root", &Secret::from(PW)).await.unwrap();
        let session = s.session.expose_str().unwrap();
        let csrf = s.csrf.expose_str().unwrap();
        let p = store.session(session, None).await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.role), ("root", Role::Owner));
        assert!(store.session(session, Some(csrf)).await.unwrap().is_some());
        assert!(
            store
                .session(session, Some("forged"))
                .await
                .unwrap()
                .is_none()
        );
        store.logout(session).await.unwrap();
        assert!(store.session(session, None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        let store = AccountStore::in_memory().await.unwrap();
        assert!(matches!(
            store
                .create_account("a", &Secret::from("short"), Role::Viewer)
                .await,
            Err(AccountError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn api_tokens_authenticate_until_revoked() {
        let store = AccountStore::in_memory().await.unwrap();
        let (info, token) = store
            .create_token("ci", Role::Auditor, "root")
            .await
            .unwrap();
        let token = token.expose_str().unwrap().to_owned();
        assert!(token.starts_with(&format!("fat_{}_", info.id)));
        let p = store.token(&token).await.unwrap().unwrap();
        assert_eq!(p.role, Role::Auditor);
        assert_eq!(
            p.method,
            AuthMethod::Token {
                id: info.id.clone()
            }
        );
        store.revoke_token(&info.id).await.unwrap();
        assert!(store.token(&token).await.unwrap().is_none());
        assert!(store.tokens().await.unwrap()[0].revoked);
    }

    #[tokio::test]
    async fn the_database_holds_no_usable_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.db");
        let store = AccountStore::open(&path).await.unwrap();
        store
            .create_account("root", &Secret::from(PW), Role::Owner)
            .await
            .unwrap();
        let s = store.login("root", &Secret::from(PW)).await.unwrap();
        let (_, token) = store.create_token("ci", Role::Admin, "root").await.unwrap();
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        for wal in ["admin.db-wal", "admin.db-shm"] {
            if let Ok(more) = std::fs::read(dir.path().join(wal)) {
                bytes.extend(more);
            }
        }
        let hay = String::from_utf8_lossy(&bytes);
        for needle in [
            PW,
            s.session.expose_str().unwrap(),
            s.csrf.expose_str().unwrap(),
            token.expose_str().unwrap(),
        ] {
            assert!(!hay.contains(needle));
        }
    }
}
