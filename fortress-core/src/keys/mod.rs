//! Gateway API keys, shared by both gateways: issued by the gateway, shown once, stored
//! only as a peppered HMAC.
//!
//! A key reads `<prefix><id>_<secret>`: a recognizable prefix per product ([`KeyFormat`]:
//! `fpk_` for PAT Fortress, `fmk_` for MCP Fortress; friendly to secret scanners), a public
//! id (16 hex digits, the database key) and a secret (64 hex digits). The store keeps
//! `HMAC-SHA256(pepper, id ‖ secret)` and compares in constant time, so a stolen database
//! opens nothing without the pepper. Keys carry scopes, an optional expiry and CIDR binding,
//! and can be revoked or rotated with an overlap window during which the old and the new key
//! both work.
//!
//! Storage is SQLite in the data directory or the PostgreSQL database replicas share
//! ([`crate::db::Database`]); [`cli`] is
//! the `keys create|list|revoke|rotate` command both binaries mount.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::keys::{KeyFormat, KeyStore, NewKey};
//! use fortress_core::secret::Secret;
//!
//! let store = KeyStore::in_memory(KeyFormat::MCP, Secret::from("pepper")).await.unwrap();
//! let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
//! let token = issued.token.expose_str().unwrap().to_owned();
//! assert!(token.starts_with("fmk_"));
//! let record = store.authenticate(&token, None).await.unwrap();
//! assert_eq!(record.subject_id, "alice");
//! # });
//! ```

pub mod cli;
mod pepper;
mod store;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use crate::call::Action;
use crate::secret::Secret;
use crate::subject::{Subject, SubjectKind, WorkspaceId};

pub use pepper::{load_or_create_pepper, load_or_create_secret};
pub use store::KeyStore;

const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// Which product a key store issues keys for: the token prefix (so a key of one gateway is
/// never accepted by the other, and secret scanners can tell them apart) and the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    /// The prefix every key of this kind starts with, e.g. `fpk_`.
    pub prefix: &'static str,
    /// The SQLite table holding the keys.
    pub table: &'static str,
}

impl KeyFormat {
    /// PAT Fortress keys: `fpk_…`.
    pub const PAT: KeyFormat = KeyFormat {
        prefix: "fpk_",
        table: "pat_keys",
    };
    /// MCP Fortress keys: `fmk_…`.
    pub const MCP: KeyFormat = KeyFormat {
        prefix: "fmk_",
        table: "mcp_keys",
    };

    /// Splits `<prefix><id>_<secret>` into id and secret, checking the shape.
    pub fn parse<'a>(&self, token: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = token.strip_prefix(self.prefix)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
    }

    /// Whether `token` looks like a key of this format (cheap; no verification).
    pub fn recognizes(&self, token: &str) -> bool {
        self.parse(token).is_some()
    }
}

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
    pub(crate) fn check(&self, now: DateTime<Utc>, ip: Option<IpAddr>) -> Result<(), AuthError> {
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
    /// The full key (`<prefix><id>_<secret>`).
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

/// The key of a request: `x-api-key`, else `Authorization: Bearer`.
pub fn token_of(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
