//! PAT Fortress.
