//! Structured logs for the binaries, set up the same way in each: human-readable text or
//! one JSON object per line (for log shippers), on stderr, filtered by `FORTRESS_LOG`
//! (or `RUST_LOG`) with `tracing-subscriber`'s directive syntax.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// The filter: `FORTRESS_LOG`, else `RUST_LOG`, else `default` (e.g. `"info"`).
pub fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("FORTRESS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the global subscriber; does nothing if one is already installed.
pub fn init(format: LogFormat, default: &str) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
}
