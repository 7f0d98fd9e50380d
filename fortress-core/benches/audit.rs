//! Audit benches.
fn main() {}
