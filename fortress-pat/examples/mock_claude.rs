//! The mock Claude API (`fortress_pat::mock`) as a standalone server, for load benchmarks
//! against the real `fortress-pat` binary (`scripts/bench-pat.sh`). It listens on an
//! ephemeral 127.0.0.1 port, prints its base URL on the first line and serves until killed.
//!
//! ```text
//! cargo run --release -p fortress-pat --example mock_claude -- sk-ant-bench-upstream
//! ```

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sk-ant-bench-upstream".into());
    let mock = fortress_pat::mock::MockClaude::start(&key, 16).await?;
    println!("mock claude on {}", mock.base_url());
    tokio::signal::ctrl_c().await?;
    mock.stop();
    Ok(())
}
