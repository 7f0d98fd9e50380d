//! Appends events to the SQLite audit trail, for instruction counts under
//! `valgrind --tool=callgrind` (repeatable on a loaded machine, unlike timings).
//!
//! - `store` mode (the default) appends pre-encoded batches straight to the store;
//! - `sink` mode records every event through the group-committing sink from `BATCH_SIZE`
//!   concurrent tasks, encoding included: what a gateway pays per audited call.
//!
//! Run it twice with different batch counts; the difference divided by the extra events
//! is the cost per event, without the setup.
//!
//! ```sh
//! cargo build --release -p fortress-core --example audit_append_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/audit_append_profile DIR 40 256 power_loss sink
//! ```

use std::sync::Arc;

use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::row::EncodedEvent;
use fortress_core::audit::store::{AuditStore, SqliteAuditStore, SqliteDurability};
use fortress_core::audit::{
    AuditEvent, AuditSink, DurableAuditSink, EventKind, SinkConfig, SubjectRef,
};
use fortress_core::subject::{SubjectKind, WorkspaceId};

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: format!("user-{}", i % 100),
            kind: SubjectKind::User,
        },
        "tools/call",
        "tool:zendesk/search_tickets",
    );
    e.connector = Some("zendesk".into());
    e.latency_us = 1234;
    e.duration_us = 5678;
    e.arguments_digest = Some(format!("hmac-sha256:{i:064x}"));
    e
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, batches, size, durability, mode) = match args.as_slice() {
        [_, dir, batches, size, durability] => (dir, batches, size, durability, "store"),
        [_, dir, batches, size, durability, mode] => (dir, batches, size, durability, &**mode),
        _ => anyhow::bail!(
            "usage: audit_append_profile DIR BATCHES BATCH_SIZE power_loss|process_crash [store|sink]"
        ),
    };
    let batches: usize = batches.parse()?;
    let size: usize = size.parse()?;
    let durability: SqliteDurability = durability.parse().map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = SqliteAuditStore::open_in_with(std::path::Path::new(dir), durability)
            .await?
            .with_signer(Arc::new(Ed25519KeyProvider::generate()));
        match mode {
            "store" => {
                let batch: Vec<EncodedEvent> = (0..size)
                    .map(|i| EncodedEvent::new(&event(i)))
                    .collect::<Result<_, _>>()?;
                for _ in 0..batches {
                    store.append(batch.clone(), false).await?;
                }
                store.append(Vec::new(), true).await?;
            }
            "sink" => {
                let sink = Arc::new(DurableAuditSink::start(
                    Arc::new(store),
                    SinkConfig::default(),
                ));
                let tasks: Vec<_> = (0..size)
                    .map(|t| {
                        let sink = sink.clone();
                        tokio::spawn(async move {
                            for b in 0..batches {
                                sink.record(event(b * size + t)).await?;
                            }
                            anyhow::Ok(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                sink.shutdown().await?;
            }
            other => anyhow::bail!("unknown mode `{other}` (expected `store` or `sink`)"),
        }
        Ok(())
    })
}
