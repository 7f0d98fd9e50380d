//! What the binaries own and the dashboard manages: gateway keys and connectors.
//!
//! Keys and connectors live in each product (PAT keys in `fortress-pat`, MCP connectors in
//! `fortress-mcp`), so the admin API reaches them through these small traits, which each
//! binary implements over its own stores. The endpoints over them (RBAC, CSRF, Change Log,
//! deleting a removed connector's credentials) are written once, in [`super::manage`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::sources::SourceError;
use crate::secret::Secret;

/// A gateway key as the dashboard shows it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    /// The public id.
    pub id: String,
    /// The workspace.
    pub workspace: String,
    /// The user or app the key acts as.
    pub subject: String,
    /// A label for people.
    pub name: String,
    /// The team, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Action scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new key is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The workspace.
    pub workspace: String,
    /// The user or app the key acts as.
    pub subject: String,
    /// Whether the subject is an application rather than a person.
    #[serde(default)]
    pub app: bool,
    /// A label for people.
    #[serde(default)]
    pub name: String,
    /// The team.
    #[serde(default)]
    pub team: Option<String>,
    /// Further groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Action scopes (empty: every action).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Days until expiry (none: no expiry).
    #[serde(default)]
    pub expires_days: Option<u32>,
}

/// Why a directory refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No such key or connector.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid (the message says why, without secrets).
    #[error("{0}")]
    Invalid(String),
    /// The backing store failed.
    #[error(transparent)]
    Backend(#[from] SourceError),
}

/// The gateway keys of a product.
#[async_trait]
pub trait KeyDirectory: Send + Sync + 'static {
    /// Every key (of one workspace when given), newest first or in any stable order.
    async fn list(&self, workspace: Option<&str>) -> Result<Vec<KeySummary>, DirectoryError>;

    /// Issues a key; the secret is returned once and never stored in clear.
    async fn issue(&self, request: KeyRequest) -> Result<(KeySummary, Secret), DirectoryError>;

    /// Revokes a key by id; it stops working at once.
    async fn revoke(&self, id: &str) -> Result<KeySummary, DirectoryError>;
}

/// A connector as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSummary {
    /// The connector's name (also its vault connector slot).
    pub name: String,
    /// What it is (`mcp`, `rest`, `claude`, …; empty: the product's default).
    #[serde(default)]
    pub kind: String,
    /// Its configuration, without credentials (credentials live in the vault).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// The connectors of a product.
#[async_trait]
pub trait ConnectorDirectory: Send + Sync + 'static {
    /// Every connector.
    async fn list(&self) -> Result<Vec<ConnectorSummary>, DirectoryError>;

    /// Checks that `connector` could be added now, without adding it, and returns it as it
    /// would be added. The admin API records the change in the Change Log between this
    /// check and [`add`](Self::add), so an invalid request leaves no entry and a change
    /// that cannot be recorded is not made. The default accepts everything.
    async fn check(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError> {
        Ok(connector)
    }

    /// Adds a connector (its credentials are put separately, through the vault).
    async fn add(&self, connector: ConnectorSummary) -> Result<ConnectorSummary, DirectoryError>;

    /// Removes a connector and returns what it was. The admin API deletes the connector's
    /// vault credentials in the same request.
    async fn remove(&self, name: &str) -> Result<ConnectorSummary, DirectoryError>;
}
