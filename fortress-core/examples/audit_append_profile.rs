//! Appends pre-encoded batches straight to the SQLite audit store, for instruction counts
//! under `valgrind --tool=callgrind` (repeatable on a loaded machine, unlike timings).
//! Run it twice with different batch counts; the difference divided by the extra events
//! is the store's cost per event, without the setup.
//!
//! ```sh
//! cargo build --release -p fortress-core --example audit_append_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/audit_append_profile DIR 40 256 power_loss
//! ```

use std::sync::Arc;

use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::row::EncodedEvent;
use fortress_core::audit::store::{AuditStore, SqliteAuditStore, SqliteDurability};
use fortress_core::audit::{AuditEvent, EventKind, SubjectRef};
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
    let [_, dir, batches, size, durability] = args.as_slice() else {
        anyhow::bail!(
            "usage: audit_append_profile DIR BATCHES BATCH_SIZE power_loss|process_crash"
        );
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
        let batch: Vec<EncodedEvent> = (0..size)
            .map(|i| EncodedEvent::new(&event(i)))
            .collect::<Result<_, _>>()?;
        for _ in 0..batches {
            store.append(batch.clone(), false).await?;
        }
        store.append(Vec::new(), true).await?;
        Ok(())
    })
}
