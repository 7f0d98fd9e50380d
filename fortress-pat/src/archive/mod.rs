//! The SOC 2 archive: each call's full request body and full response body (the assembled
//! stream, as the caller received it), encrypted per workspace, written off the hot path.
//!
//! - **Keys**: each writer takes the calls queued at once (up to 512, gathering for
//!   20 ms) and stores those of one workspace and day as one [`batch`] object,
//!   `<workspace>/<YYYY-MM-DD>/<lowest id>_<highest id>.batch`; each call inside is sealed
//!   on its own under `<workspace>/<YYYY-MM-DD>/<request id>.request|.response` (the keys
//!   calls had as separate objects before batches, still read). The day is the UTC day
//!   of the request id's timestamp (gateway ids are UUIDv7), so a request id alone finds
//!   its day folder, and the batch names in it the batch.
//! - **Encryption** ([`seal`]): the core vault's envelope — a per-workspace data key wrapped
//!   by the workspace's key-encryption key from its tier's key provider, AES-256-GCM, the
//!   object key as associated data.
//! - **Storage** ([`store`]): `object_store`, a local directory by default or an
//!   S3-compatible bucket.
//! - **Delivery**: entries queue on a bounded channel (a full queue makes the end of the
//!   response body wait, never drops); writers retry each put; an object that still fails is spooled,
//!   sealed, to a local directory and retried later, or, when even that fails, held in
//!   memory — always counted (`fortress_pat_archive_*` on `/metrics`), never silently
//!   dropped.
//! - **Retention** ([`retention`]): a purge by tier, periodic and on demand.
//! - **Reading back**: only through the admin API (`GET /api/archive/{request_id}`),
//!   which this type serves as an [`ArchiveReader`] and which audits every read.

pub mod batch;
pub mod retention;
pub mod seal;
pub mod store;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use fortress_core::admin::archive::{ArchiveReadError, ArchiveReader, ArchivedCall};
use fortress_core::subject::WorkspaceId;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use tokio::sync::{Mutex, Notify, mpsc};

pub use retention::{PurgeReport, Retention};
pub use seal::ArchiveSealer;
pub use store::{ArchiveLocation, S3Settings};

/// Puts tried per object before it is spooled.
const PUT_ATTEMPTS: u32 = 3;
/// Objects written at once (a remote store's latency is overlapped, not serialized).
const WRITERS: usize = 2;
/// Calls one writer takes from the queue for one batch at most.
const BATCH_CALLS: usize = 512;
/// How long a writer keeps gathering calls for a batch after the first arrived.
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Encryption or decryption failed (wrong key, tampered object, moved object).
    #[error("archive object cannot be sealed or opened")]
    Crypto,
    /// The workspace's root key is unavailable (for example a withdrawn customer key).
    #[error("archive key unavailable")]
    KeyUnavailable,
    /// Storage failed.
    #[error("archive storage failed: {0}")]
    Storage(String),
    /// An object key is unsafe (empty or relative segments, a workspace id with `/`).
    #[error("invalid archive object key")]
    InvalidKey,
    /// The settings are unusable.
    #[error("archive configuration: {0}")]
    Config(String),
    /// The archive writer has stopped.
    #[error("archive writer stopped")]
    Closed,
}

impl ArchiveError {
    fn storage(error: object_store::Error) -> Self {
        // object_store errors name paths and causes, never credentials.
        Self::Storage(error.to_string())
    }
}

/// One call to archive.
#[derive(Clone, Debug)]
pub struct ArchiveEntry {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// The gateway request id.
    pub request_id: String,
    /// When the call was received (the key's day when the id carries no timestamp).
    pub at: DateTime<Utc>,
    /// The request body as received.
    pub request: Bytes,
    /// The response body as sent.
    pub response: Bytes,
}

impl ArchiveEntry {
    /// The object key prefix `<workspace>/<date>/<request id>`.
    pub fn prefix(&self) -> String {
        let day = request_day(&self.request_id).unwrap_or_else(|| self.at.date_naive());
        object_prefix(self.workspace.as_str(), day, &self.request_id)
    }
}

/// The UTC day of a UUIDv7 request id's timestamp.
pub fn request_day(request_id: &str) -> Option<NaiveDate> {
    let id = uuid::Uuid::parse_str(request_id).ok()?;
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos).map(|t| t.date_naive())
}

/// `<workspace>/<YYYY-MM-DD>/<request id>`.
pub fn object_prefix(workspace: &str, day: NaiveDate, request_id: &str) -> String {
    format!("{workspace}/{}/{request_id}", day.format("%Y-%m-%d"))
}

/// A key as an `object_store` path, refusing anything that would not round-trip (empty,
/// `.` or `..` segments, or characters the store would re-encode).
fn object_path(key: &str) -> Result<Path, ArchiveError> {
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(ArchiveError::InvalidKey);
    }
    let path = Path::parse(key).map_err(|_| ArchiveError::InvalidKey)?;
    if path.as_ref() != key {
        return Err(ArchiveError::InvalidKey);
    }
    Ok(path)
}

/// Settings of an [`Archiver`].
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Entries the queue holds before hand-overs wait.
    pub capacity: usize,
    /// Retention per workspace.
    pub retention: Retention,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            capacity: 4096,
            retention: Retention::new(fortress_core::tier::Tier::Soho),
        }
    }
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    calls: AtomicU64,
    failed_puts: AtomicU64,
    spooled: AtomicU64,
    unsealed: AtomicU64,
    purged: AtomicU64,
}

struct Shared {
    sealer: Arc<ArchiveSealer>,
    store: Arc<dyn ObjectStore>,
    spool: Option<Arc<dyn ObjectStore>>,
    retention: Retention,
    counters: Counters,
    /// Sealed objects that neither the store nor the spool took.
    held: std::sync::Mutex<Vec<(String, Bytes)>>,
    /// Entries that could not even be sealed (key unavailable), kept to retry.
    unsealed: std::sync::Mutex<Vec<ArchiveEntry>>,
    /// Entries handed over and not yet through [`write_batch`] (queued, waiting for room
    /// in the queue, or being written).
    outstanding: AtomicU64,
    /// Notified when `outstanding` drops to zero.
    drained: Notify,
}

impl Shared {
    /// One handed-over entry is through [`write_batch`] (or was refused by a closed queue).
    fn finish_one(&self) {
        self.finish(1);
    }

    fn finish(&self, entries: u64) {
        if entries > 0 && self.outstanding.fetch_sub(entries, Ordering::AcqRel) == entries {
            self.drained.notify_waiters();
        }
    }
}

/// What a synchronous hand-over did with an entry.
pub enum HandOver {
    /// Queued.
    Queued,
    /// The queue is full: the entry is given back (wait with [`Archiver::reserve`]).
    Full(ArchiveEntry),
    /// The writers have stopped; the failure is logged and counted.
    Closed,
}

/// Archives calls in the background.
#[derive(Clone)]
pub struct Archiver {
    tx: mpsc::Sender<ArchiveEntry>,
    shared: Arc<Shared>,
    /// The runtime the writers run on: hand-overs that must wait for room in the queue
    /// wait there, so they outlive a serving worker's runtime that shuts down.
    runtime: tokio::runtime::Handle,
}

impl Archiver {
    /// Starts the writers on the current runtime (panics outside one, like
    /// `tokio::spawn`). `spool` is where objects go when `store` keeps failing (a local
    /// directory, see [`store::local`]); without one they are held in memory.
    pub fn start(
        sealer: Arc<ArchiveSealer>,
        store: Arc<dyn ObjectStore>,
        spool: Option<Arc<dyn ObjectStore>>,
        options: ArchiveOptions,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<ArchiveEntry>(options.capacity.max(1));
        let shared = Arc::new(Shared {
            sealer,
            store,
            spool,
            retention: options.retention,
            counters: Counters::default(),
            held: std::sync::Mutex::new(Vec::new()),
            unsealed: std::sync::Mutex::new(Vec::new()),
            outstanding: AtomicU64::new(0),
            drained: Notify::new(),
        });
        let runtime = tokio::runtime::Handle::current();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let rx = rx.clone();
            let writer = shared.clone();
            runtime.spawn(async move {
                let mut calls = Vec::with_capacity(BATCH_CALLS);
                while gather(&rx, &mut calls).await {
                    let taken = calls.len() as u64;
                    write_batch(&writer, std::mem::take(&mut calls)).await;
                    writer.finish(taken);
                }
            });
        }
        Self {
            tx,
            shared,
            runtime,
        }
    }

    /// Queues an entry; waits while the queue is full (never drops).
    pub async fn submit(&self, entry: ArchiveEntry) -> Result<(), ArchiveError> {
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        self.tx.send(entry).await.map_err(|_| {
            self.shared.finish_one();
            ArchiveError::Closed
        })
    }

    /// Queues an entry if the queue has room, without waiting; from synchronous code.
    pub fn try_submit(&self, entry: ArchiveEntry) -> HandOver {
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(entry) {
            Ok(()) => HandOver::Queued,
            Err(mpsc::error::TrySendError::Full(entry)) => {
                self.shared.finish_one();
                HandOver::Full(entry)
            }
            Err(mpsc::error::TrySendError::Closed(entry)) => {
                self.shared.finish_one();
                writer_stopped(&entry);
                HandOver::Closed
            }
        }
    }

    /// Waits for room in the queue (for a caller that got [`HandOver::Full`]); the
    /// permit queues one entry with [`queue`](Self::queue) without waiting.
    pub fn reserve(
        &self,
    ) -> impl Future<Output = Result<mpsc::OwnedPermit<ArchiveEntry>, ArchiveError>> + Send + 'static
    {
        let tx = self.tx.clone();
        async move { tx.reserve_owned().await.map_err(|_| ArchiveError::Closed) }
    }

    /// Queues an entry on a permit from [`reserve`](Self::reserve).
    pub fn queue(&self, permit: mpsc::OwnedPermit<ArchiveEntry>, entry: ArchiveEntry) {
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        permit.send(entry);
    }

    /// Hands an entry over from anywhere, never blocking and never dropping it: queued at
    /// once when there is room, else queued by a task on the writers' runtime that waits
    /// for room (still counted by [`flush`](Self::flush)).
    pub fn hand_over(&self, entry: ArchiveEntry) {
        let HandOver::Full(entry) = self.try_submit(entry) else {
            return;
        };
        let archiver = self.clone();
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        self.runtime.spawn(async move {
            match archiver.tx.send(entry).await {
                // The writer that takes it counts it as finished.
                Ok(()) => {}
                Err(mpsc::error::SendError(entry)) => {
                    writer_stopped(&entry);
                    archiver.shared.finish_one();
                }
            }
        });
    }

    /// Waits until every entry handed over so far has been written, spooled or kept (call
    /// after the server stopped taking requests, before exit).
    pub async fn flush(&self) {
        loop {
            let drained = self.shared.drained.notified();
            if self.shared.outstanding.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }

    /// Entries handed over and not yet written, spooled or kept.
    pub fn outstanding(&self) -> u64 {
        self.shared.outstanding.load(Ordering::Acquire)
    }

    /// Objects written to the store so far (a batch of calls each).
    pub fn written(&self) -> u64 {
        self.shared.counters.written.load(Ordering::Relaxed)
    }

    /// Calls whose batch was written to the store by this process's writers.
    pub fn archived_calls(&self) -> u64 {
        self.shared.counters.calls.load(Ordering::Relaxed)
    }

    /// Objects waiting in the spool or in memory for the store to take them, plus calls
    /// waiting to be sealed.
    pub fn pending(&self) -> u64 {
        self.shared.counters.spooled.load(Ordering::Relaxed)
            + self.shared.counters.unsealed.load(Ordering::Relaxed)
    }

    /// Puts that failed after every retry.
    pub fn failed_puts(&self) -> u64 {
        self.shared.counters.failed_puts.load(Ordering::Relaxed)
    }

    /// Retries everything pending (spooled, held, unsealed); returns how many objects
    /// reached the store. Also counts what a previous process left in the spool.
    pub async fn retry_pending(&self) -> Result<u64, ArchiveError> {
        let shared = &self.shared;
        let mut moved = 0;
        let unsealed =
            std::mem::take(&mut *shared.unsealed.lock().unwrap_or_else(|e| e.into_inner()));
        shared
            .counters
            .unsealed
            .fetch_sub(unsealed.len() as u64, Ordering::Relaxed);
        if !unsealed.is_empty() {
            write_batch(shared, unsealed).await;
        }
        let held = std::mem::take(&mut *shared.held.lock().unwrap_or_else(|e| e.into_inner()));
        shared
            .counters
            .spooled
            .fetch_sub(held.len() as u64, Ordering::Relaxed);
        for (key, sealed) in held {
            if put_with_retries(shared, &key, sealed.clone()).await.is_ok() {
                moved += 1;
            } else {
                keep(shared, key, sealed).await;
            }
        }
        if let Some(spool) = &shared.spool {
            let spooled: Vec<_> = spool
                .list(None)
                .try_collect()
                .await
                .map_err(ArchiveError::storage)?;
            let mut left = 0;
            for object in spooled {
                let bytes = match spool.get(&object.location).await {
                    Ok(got) => got.bytes().await.map_err(ArchiveError::storage)?,
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(ArchiveError::storage(e)),
                };
                if put_with_retries(shared, object.location.as_ref(), bytes)
                    .await
                    .is_ok()
                {
                    spool
                        .delete(&object.location)
                        .await
                        .map_err(ArchiveError::storage)?;
                    moved += 1;
                } else {
                    left += 1;
                }
            }
            let in_memory = shared.held.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
            shared
                .counters
                .spooled
                .store(left + in_memory, Ordering::Relaxed);
        }
        Ok(moved)
    }

    /// Deletes every archived call that outlived its workspace's retention on `today`.
    pub async fn purge(&self, today: NaiveDate) -> Result<PurgeReport, ArchiveError> {
        let report =
            retention::purge(self.shared.store.as_ref(), &self.shared.retention, today).await?;
        self.shared
            .counters
            .purged
            .fetch_add(report.objects, Ordering::Relaxed);
        Ok(report)
    }

    /// Every `every`: retries what is pending, then purges by retention (as of the current
    /// UTC day). Failures are logged and counted, and the next round tries again.
    pub fn spawn_maintenance(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let archiver = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(error) = archiver.retry_pending().await {
                    tracing::warn!(%error, "archive spool retry failed");
                }
                match archiver.purge(Utc::now().date_naive()).await {
                    Ok(report) if report.objects > 0 => {
                        tracing::info!(
                            objects = report.objects,
                            days = report.days,
                            "archive retention purge"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "archive retention purge failed"),
                }
            }
        })
    }

    /// Reads and decrypts one archived call (`None` when nothing is stored under it). Not
    /// audited here: the admin API, the only reader, audits every read.
    pub async fn read_call(
        &self,
        workspace: &WorkspaceId,
        request_id: &str,
        day: NaiveDate,
    ) -> Result<Option<ArchivedCall>, ArchiveError> {
        let prefix = object_prefix(workspace.as_str(), day, request_id);
        let request_key = format!("{prefix}.request");
        let response_key = format!("{prefix}.response");
        // Also refuses ids that cannot name an object.
        object_path(&request_key)?;
        let (request, response) = match self.find_in_batches(&prefix, request_id).await? {
            Some(parts) => parts,
            // Calls archived one object per part (before batches).
            None => {
                let Some(request) = self.fetch(&request_key).await? else {
                    return Ok(None);
                };
                let Some(response) = self.fetch(&response_key).await? else {
                    return Ok(None);
                };
                (request, response)
            }
        };
        let sealer = &self.shared.sealer;
        Ok(Some(ArchivedCall {
            request: sealer.open(workspace, &request_key, &request).await?,
            response: sealer.open(workspace, &response_key, &response).await?,
            prefix,
        }))
    }

    /// The sealed parts of a call from the batches of its day folder that may hold it (in
    /// the store, the spool or memory).
    async fn find_in_batches(
        &self,
        prefix: &str,
        request_id: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, ArchiveError> {
        let folder = prefix.rsplit_once('/').map_or(prefix, |(folder, _)| folder);
        let folder_path = object_path(folder)?;
        let mut candidates = std::collections::BTreeSet::new();
        let held: Vec<String> = self
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(key, _)| key.clone())
            .collect();
        candidates.extend(held.into_iter().filter(|key| {
            key.strip_prefix(folder)
                .and_then(|name| name.strip_prefix('/'))
                .is_some_and(|name| batch::may_hold(name, request_id))
        }));
        let mut unlisted = None;
        for store in std::iter::once(&self.shared.store).chain(self.shared.spool.as_ref()) {
            let listed: Vec<_> = match store.list(Some(&folder_path)).try_collect().await {
                Ok(listed) => listed,
                Err(object_store::Error::NotFound { .. }) => continue,
                // A failing store may be exactly why the batch is still in the spool.
                Err(e) => {
                    unlisted.get_or_insert(ArchiveError::storage(e));
                    continue;
                }
            };
            candidates.extend(
                listed
                    .into_iter()
                    .filter(|o| {
                        o.location
                            .filename()
                            .is_some_and(|name| batch::may_hold(name, request_id))
                    })
                    .map(|o| o.location.to_string()),
            );
        }
        for key in candidates {
            let Some(object) = self.fetch(&key).await? else {
                continue;
            };
            if let Some((request, response)) = batch::find(&object, request_id) {
                return Ok(Some((request.to_vec(), response.to_vec())));
            }
        }
        unlisted.map_or(Ok(None), Err)
    }

    /// An object from the store, else from the spool or memory (not yet delivered).
    async fn fetch(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let path = object_path(key)?;
        // A failing store may be exactly why the object is still in the spool: look there
        // before reporting the store's error.
        let store_error = match self.shared.store.get(&path).await {
            Ok(got) => {
                return Ok(Some(
                    got.bytes().await.map_err(ArchiveError::storage)?.into(),
                ));
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => Some(ArchiveError::storage(e)),
        };
        if let Some(spool) = &self.shared.spool {
            match spool.get(&path).await {
                Ok(got) => {
                    return Ok(Some(
                        got.bytes().await.map_err(ArchiveError::storage)?.into(),
                    ));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(ArchiveError::storage(e)),
            }
        }
        let held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, bytes)| bytes.to_vec());
        match (held, store_error) {
            (Some(bytes), _) => Ok(Some(bytes)),
            (None, Some(error)) => Err(error),
            (None, None) => Ok(None),
        }
    }

    /// Prometheus lines: written, failed puts, pending, purged.
    pub fn metrics_text(&self) -> String {
        let c = &self.shared.counters;
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "fortress_pat_archive_objects_written_total",
                "counter",
                "Archive objects written to the store.",
                c.written.load(Ordering::Relaxed),
            ),
            (
                "fortress_pat_archive_put_failures_total",
                "counter",
                "Archive objects the store refused after every retry (then spooled).",
                c.failed_puts.load(Ordering::Relaxed),
            ),
            (
                "fortress_pat_archive_pending",
                "gauge",
                "Archive objects spooled or held, and calls waiting to be sealed.",
                c.spooled.load(Ordering::Relaxed) + c.unsealed.load(Ordering::Relaxed),
            ),
            (
                "fortress_pat_archive_purged_total",
                "counter",
                "Archive objects deleted by retention.",
                c.purged.load(Ordering::Relaxed),
            ),
        ] {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[async_trait]
impl ArchiveReader for Archiver {
    async fn read(
        &self,
        workspace: &WorkspaceId,
        request_id: &str,
        date: Option<NaiveDate>,
    ) -> Result<Option<ArchivedCall>, ArchiveReadError> {
        let Some(day) = date.or_else(|| request_day(request_id)) else {
            return Err(ArchiveReadError::Invalid(
                "this request id carries no date; add ?date=YYYY-MM-DD".into(),
            ));
        };
        self.read_call(workspace, request_id, day)
            .await
            .map_err(|error| match error {
                ArchiveError::InvalidKey => {
                    ArchiveReadError::Invalid("no archive object can have this name".into())
                }
                error => {
                    tracing::error!(%error, "archive read failed");
                    ArchiveReadError::Failed
                }
            })
    }

    fn render_metrics(&self) -> String {
        self.metrics_text()
    }
}

/// An entry the stopped writers will never take: said loudly and counted.
fn writer_stopped(entry: &ArchiveEntry) {
    tracing::error!(request_id = %entry.request_id, "archive writer stopped; call not archived");
    metrics::counter!("fortress_pat_archive_failures_total").increment(1);
}

/// Waits for the next calls to write: the first one, then whatever else arrives within
/// [`BATCH_LINGER`] (up to [`BATCH_CALLS`]). `false` once the queue is closed and empty.
async fn gather(rx: &Mutex<mpsc::Receiver<ArchiveEntry>>, calls: &mut Vec<ArchiveEntry>) -> bool {
    let mut rx = rx.lock().await;
    if rx.recv_many(calls, BATCH_CALLS).await == 0 {
        return false;
    }
    let deadline = tokio::time::Instant::now() + BATCH_LINGER;
    while calls.len() < BATCH_CALLS {
        let room = BATCH_CALLS - calls.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(calls, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    true
}

/// Seals calls and stores them, one batch object per workspace and day; whatever fails is
/// kept and counted.
async fn write_batch(shared: &Shared, entries: Vec<ArchiveEntry>) {
    let mut folders: std::collections::BTreeMap<String, Vec<ArchiveEntry>> = Default::default();
    for entry in entries {
        let prefix = entry.prefix();
        let folder = prefix
            .rsplit_once('/')
            .map_or(prefix.as_str(), |(folder, _)| folder)
            .to_owned();
        folders.entry(folder).or_default().push(entry);
    }
    for (folder, entries) in folders {
        let mut sealed = Vec::with_capacity(entries.len());
        for entry in entries {
            match seal_call(shared, &entry).await {
                Ok(call) => sealed.push(call),
                Err(error) => {
                    // Nothing of it can go to disk unsealed: keep the call in memory to retry.
                    tracing::error!(%error, request_id = %entry.request_id, "archive entry cannot be sealed; kept to retry");
                    metrics::counter!("fortress_pat_archive_failures_total").increment(1);
                    shared.counters.unsealed.fetch_add(1, Ordering::Relaxed);
                    shared
                        .unsealed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(entry);
                }
            }
        }
        let Some(key) = batch::key(&folder, sealed.iter().map(|c| c.request_id.as_str())) else {
            continue;
        };
        // One buffer for every attempt and the spool: clones below only count references.
        let object = Bytes::from(batch::encode(&sealed));
        if put_with_retries(shared, &key, object.clone()).await.is_ok() {
            shared
                .counters
                .calls
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        } else {
            keep(shared, key, object).await;
        }
    }
}

/// Seals a call's request and response under the keys they would have alone.
async fn seal_call(
    shared: &Shared,
    entry: &ArchiveEntry,
) -> Result<batch::SealedCall, ArchiveError> {
    let prefix = entry.prefix();
    let request = shared
        .sealer
        .seal(
            &entry.workspace,
            &format!("{prefix}.request"),
            &entry.request,
        )
        .await?;
    let response = shared
        .sealer
        .seal(
            &entry.workspace,
            &format!("{prefix}.response"),
            &entry.response,
        )
        .await?;
    Ok(batch::SealedCall {
        request_id: entry.request_id.clone(),
        request,
        response,
    })
}

async fn put_with_retries(shared: &Shared, key: &str, object: Bytes) -> Result<(), ArchiveError> {
    let path = object_path(key)?;
    let payload = PutPayload::from(object);
    let mut last = ArchiveError::Closed;
    for attempt in 0..PUT_ATTEMPTS {
        match shared.store.put(&path, payload.clone()).await {
            Ok(_) => {
                shared.counters.written.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) => last = ArchiveError::storage(error),
        }
        if attempt + 1 < PUT_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }
    tracing::error!(error = %last, key, "archive put failed after retries");
    shared.counters.failed_puts.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("fortress_pat_archive_failures_total").increment(1);
    Err(last)
}

/// Keeps a sealed object the store refused: in the spool, else in memory.
async fn keep(shared: &Shared, key: String, object: Bytes) {
    shared.counters.spooled.fetch_add(1, Ordering::Relaxed);
    if let (Some(spool), Ok(path)) = (&shared.spool, object_path(&key)) {
        match spool.put(&path, PutPayload::from(object.clone())).await {
            Ok(_) => return,
            Err(error) => {
                tracing::error!(%error, "archive spool write failed; object held in memory")
            }
        }
    }
    shared
        .held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, object));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_day_of_the_request_id() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let day = request_day(id).unwrap();
        // 0x0190a1b2c3d4 ms after the epoch is 2024-07-11.
        assert_eq!(day.to_string(), "2024-07-11");
        let entry = ArchiveEntry {
            workspace: WorkspaceId::new("acme"),
            request_id: id.into(),
            at: Utc::now(),
            request: Bytes::new(),
            response: Bytes::new(),
        };
        assert_eq!(entry.prefix(), format!("acme/2024-07-11/{id}"));
        assert!(request_day("not-a-uuid").is_none());
        assert!(request_day(&uuid::Uuid::new_v4().to_string()).is_none());
    }

    #[test]
    fn unsafe_keys_are_refused() {
        assert!(object_path("acme/2026-01-01/x.request").is_ok());
        assert!(object_path("../x").is_err());
        assert!(object_path("a//b").is_err());
        assert!(object_path("a/./b").is_err());
    }
}
