//! Replicas that share one database: how a change made on one replica (a kill switch, a
//! key revocation, a policy change) reaches the others quickly.
//!
//! The database is the source of truth; [`ClusterBus`] only makes propagation fast. A
//! replica that changes shared state writes it to the database first, then publishes a
//! small [`Change`] on a Redis channel; every replica's [`follow`] loop reacts to the
//! announcement at once and, in any case, re-reads the database every poll interval. So a
//! change reaches every replica within the pub/sub latency (milliseconds) while Redis is
//! up, and within one poll interval when it is not. Announcements carry identifiers only,
//! never secrets.
//!
//! ```no_run
//! # async fn example() -> Result<(), fortress_core::cluster::ClusterError> {
//! use std::time::Duration;
//! use fortress_core::cluster::{Change, ClusterBus};
//!
//! let bus = ClusterBus::connect("redis://127.0.0.1:6379", "acme-prod")?;
//! let mut changes = bus.subscribe();
//! bus.publish(&Change::KillSwitches).await;
//! assert_eq!(changes.recv().await.unwrap(), Change::KillSwitches);
//! # Ok(()) }
//! ```

mod bus;
mod follow;
#[cfg(feature = "admin")]
pub mod policies;
pub mod revoked;
pub mod switches;
pub mod token;

pub use bus::{ClusterBus, ClusterError};
pub use follow::{ChangeHandler, follow};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[cluster]` settings of a gateway whose replicas share a database.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// A `redis://` URL: changes are announced there and reach every replica at once.
    /// Without it, replicas poll the database.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis channel (default `fortress`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How often shared state is re-read, in milliseconds (default 1000).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            prefix: default_prefix(),
            poll_ms: default_poll_ms(),
        }
    }
}

impl ClusterSettings {
    /// The bus, when `redis_url` is set. Must run inside a tokio runtime.
    pub fn bus(&self) -> Result<Option<ClusterBus>, ClusterError> {
        self.redis_url
            .as_deref()
            .map(|url| ClusterBus::connect(url, &self.prefix))
            .transpose()
    }

    /// The poll interval (at least 50 ms).
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(50))
    }
}

fn default_prefix() -> String {
    "fortress".into()
}

fn default_poll_ms() -> u64 {
    1000
}

/// What changed in the shared state (the receiver re-reads the details from the database).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// The set of engaged kill switches.
    KillSwitches,
    /// A gateway key was revoked or rotated: drop any cached record of it.
    KeyChanged {
        /// The key's id (public; never the secret).
        id: String,
    },
    /// The policy set.
    Policy,
    /// A sealed token (for example a legacy MCP session id) was ended before its expiry.
    TokenRevoked {
        /// The token's digest ([`revoked::token_digest`]; never the token).
        digest: String,
    },
    /// Announcements may have been missed (the subscription was (re)established):
    /// re-read everything.
    Resync,
}
