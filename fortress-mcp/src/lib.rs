//! MCP Fortress.
