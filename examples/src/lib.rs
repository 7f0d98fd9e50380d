//! Runnable examples of embedding Fortress, and the launcher behind
//! `cargo run -p fortress-examples --example fortress`: MCP Fortress, PAT Fortress and one
//! dashboard over both, in one process, offline.

pub mod launcher;
