//! # PAT Fortress
//!
//! A governed proxy in front of the Claude API. Developers and applications call it with
//! gateway-issued keys, exactly as they would call the Claude API; the real Anthropic keys
//! stay in the vault. Each request is authenticated, described as a
//! [`Call`](fortress_core::call::Call), limited, decided by policy, redacted, metered and
//! audited through the core governance stack.
//!
//! ```text
//! client ─▶ [keys] ─▶ [describe] ─▶ [audit ▸ guard (limits) ▸ policy ▸ redaction ▸ credential] ─▶ upstream
//! ```

pub mod admin_keys;
pub mod api;
pub mod archive;
pub mod batch_usage;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod describe;
pub mod error;
pub mod keys;
pub mod limits;
pub mod mock;
pub mod proxy;
pub mod redaction;
pub mod server;
pub mod service;
/// The core's Server-Sent Events codec (the Claude stream accounting in `redaction` reads events with it).
pub use fortress_core::sse;
pub mod upstream;
pub mod usage;

/// The name of PAT Fortress's policy set in a dashboard's policy editor.
pub const PAT_POLICY_SET: &str = "pat";
/// The actions PAT Fortress audits (prefixes): a dry run of its policy set replays these.
pub const PAT_ACTIONS: [&str; 4] = ["messages/", "models/", "batches/", "passthrough"];
