//! # MCP Fortress
//!
//! A faithful, dual-era Model Context Protocol gateway: AI assistants connect to Fortress
//! and see one virtual MCP server aggregating every configured upstream, exactly as they
//! would see the upstreams directly — except what governance hides or masks.
//!
//! ```text
//! client (modern or legacy) ─▶ server (HTTP edge: eras, sessions, SSE)
//!     ─▶ seam: describe ▸ [fortress_core governance stack] ▸ virtual server
//!     ─▶ upstreams (stdio / Streamable HTTP, modern or legacy)
//! ```
//!
//! - [`jsonrpc`]: the era-neutral JSON-RPC message model and strict parsing.
//! - [`version`]: protocol revisions, eras, per-request client context.
//! - [`upstream`]: upstream servers over stdio and Streamable HTTP.
//! - [`connector`]: declarative REST connectors (Zendesk, Salesforce, your own) as upstreams.
//! - [`virtual_server`]: aggregation with namespacing and pagination.
//! - [`seam`]: the one place every relayed message passes, where
//!   [`fortress_core::stack::GovernanceStack`] applies.
//! - [`server`]: the client-facing Streamable HTTP endpoint, both eras.
//! - [`bridge`]: `fortress-mcp connect URL`, stdio for stdio-only clients.
//! - [`config`]: the configuration file.
//! - [`demo`]: `fortress-mcp demo`, the embedded default with a mock helpdesk.
//! - [`mock`]: mock Zendesk and Salesforce servers for tests and the demo.

pub mod auth;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod connector;
pub mod demo;
pub mod governance;
pub mod jsonrpc;
pub mod mock;
pub mod pinning;
pub mod seam;
pub mod server;
/// The core's Server-Sent Events codec (MCP messages travel as `message` events).
pub use fortress_core::sse;
pub mod upstream;
pub mod version;
pub mod virtual_server;

/// The name of MCP Fortress's policy set in a dashboard's policy editor.
pub const MCP_POLICY_SET: &str = "mcp";
/// The actions MCP Fortress audits (prefixes): a dry run of its policy set replays these.
pub const MCP_ACTIONS: [&str; 4] = ["tools/", "resources/", "prompts/", "completion/"];
