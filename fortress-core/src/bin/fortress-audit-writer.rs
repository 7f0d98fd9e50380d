//! A load generator for the audit crash test: appends events to the SQLite audit store in
//! a data directory through the durable sink, from many tasks at once, and prints
//! `ack <seq> <request_id>` for each event only after the sink has acknowledged it as
//! durable. Meant to be killed with SIGKILL mid-load.
//!
//! Usage: `fortress-audit-writer <data-dir> <key-file> <events> <concurrency> [durability]`
//! where `durability` is `power_loss` (the default) or `process_crash`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::store::{SqliteAuditStore, SqliteDurability};
use fortress_core::audit::{AuditEvent, DurableAuditSink, EventKind, SinkConfig, SubjectRef};
use fortress_core::subject::{SubjectKind, WorkspaceId};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg(args: &[String], i: usize, name: &str) -> Result<String, BoxError> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument <{name}>").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let data_dir = PathBuf::from(arg(&args, 1, "data-dir")?);
    let key_file = PathBuf::from(arg(&args, 2, "key-file")?);
    let events: u64 = arg(&args, 3, "events")?.parse()?;
    let concurrency: u64 = arg(&args, 4, "concurrency")?.parse::<u64>()?.max(1);
    let durability: SqliteDurability = match args.get(5) {
        Some(value) => value.parse()?,
        None => SqliteDurability::default(),
    };

    let key = Arc::new(Ed25519KeyProvider::load_or_create(&key_file)?);
    let store = SqliteAuditStore::open_in_with(&data_dir, durability)
        .await?
        .with_signer(key);
    let sink = Arc::new(DurableAuditSink::start(
        Arc::new(store),
        SinkConfig::default(),
    ));
    println!("ready");

    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while i < events {
                let mut event = AuditEvent::activity(
                    EventKind::Access,
                    WorkspaceId::new("load"),
                    SubjectRef {
                        id: format!("writer-{task}"),
                        kind: SubjectKind::App,
                    },
                    "tools/call",
                    "tool:load/test",
                );
                event.request_id = format!("load-{i}");
                let seq = sink.append(&event).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {seq} load-{i}")?;
                i += concurrency;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    sink.shutdown().await?;
    println!("done");
    Ok(())
}
