//! Protocol revisions, the two eras, and what a client said about itself.
//!
//! MCP 2026-07-28 is *modern*: every request carries its protocol version and the client's
//! capabilities in `params._meta` (spec 2026-07-28, Basic › General fields › `_meta`).
//! 2025-11-25 and earlier are *legacy*: the `initialize` handshake fixes them for a session
//! (spec 2026-07-28, Versioning › Terminology). Fortress speaks both towards clients and
//! towards upstreams, and records per request which era a client is in as a
//! [`ClientContext`].
//!
//! ```
//! use fortress_mcp::version::{era_of, Era};
//! assert_eq!(era_of("2026-07-28"), Some(Era::Modern));
//! assert_eq!(era_of("2025-06-18"), Some(Era::Legacy));
//! assert_eq!(era_of("1900-01-01"), None);
//! ```

use serde_json::{Map, Value};

/// Modern revisions, newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Legacy (initialize-based) revisions, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Every revision Fortress speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2026-07-28",
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];
/// The newest modern revision.
pub const LATEST_MODERN: &str = "2026-07-28";
/// The newest legacy revision (what Fortress offers in `initialize`).
pub const LATEST_LEGACY: &str = "2025-11-25";

/// `_meta` key: the request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's name and version.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the client's capabilities for this request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the log level a modern request opts in to.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key: the server's name and version on results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key: the `subscriptions/listen` stream a notification belongs to.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The two protocol eras.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// Per-request metadata, no sessions (2026-07-28).
    Modern,
    /// `initialize` handshake and sessions (2025-11-25 and earlier).
    Legacy,
}

/// The era of a protocol revision Fortress knows.
pub fn era_of(version: &str) -> Option<Era> {
    if MODERN_VERSIONS.contains(&version) {
        Some(Era::Modern)
    } else if LEGACY_VERSIONS.contains(&version) {
        Some(Era::Legacy)
    } else {
        None
    }
}

/// What one client declared: its era and version, capabilities and identity. Legacy clients
/// declare it once in `initialize`; modern clients on every request.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientContext {
    /// The client's era.
    pub era: Era,
    /// The protocol revision in use.
    pub protocol_version: String,
    /// The client's capabilities (`ClientCapabilities`).
    pub capabilities: Map<String, Value>,
    /// The client's `Implementation` (name, version), if given.
    pub client_info: Option<Value>,
}

impl ClientContext {
    /// A legacy client, as its `initialize` request described it.
    pub fn legacy(
        version: &str,
        capabilities: Map<String, Value>,
        client_info: Option<Value>,
    ) -> Self {
        Self {
            era: Era::Legacy,
            protocol_version: version.to_owned(),
            capabilities,
            client_info,
        }
    }

    /// Whether the client declared a capability (`sampling`, `elicitation`, `roots`, …).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.contains_key(name)
    }
}
