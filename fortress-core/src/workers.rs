//! Serving on one single-threaded runtime per worker thread, with `SO_REUSEPORT` listeners.
//!
//! A gateway relaying small requests does little work per request but many hand-offs: with
//! one multi-thread runtime, the connection's task, the upstream connection's I/O and the
//! tasks they wake are spread over the runtime's worker threads, and every wake-up across
//! threads is a futex call and a context switch. On a small machine those hand-offs cost
//! more than the work itself. Here each worker thread runs its own `current_thread`
//! runtime with its own listener bound to the same address (`SO_REUSEPORT`: the kernel
//! spreads new connections over the listeners), so a connection, the upstream exchanges
//! it makes and the tasks they spawn all stay on one thread.
//!
//! The process's main runtime keeps running the shared background work (audit group
//! commit, database pools, reloads); the workers reach it through the same `Arc`s as
//! before. Per-connection clients (upstream connection pools) should be kept per worker
//! with [`PerWorker`], so that a connection opened on one worker is not driven by another.
//!
//! `SO_REUSEPORT` lets any process of the same user bind the same port too; it is meant
//! for the gateway's own listener on a host it controls.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use fortress_core::workers::{WorkerCount, bind_reuseport, serve_on_workers};
//! let workers = WorkerCount(2);
//! let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), workers.get())?;
//! serve_on_workers(listeners, |listener, shutdown| async move {
//!     // serve connections from `listener` until `shutdown` completes
//!     # drop(listener); shutdown.await;
//!     Ok(())
//! }, tokio::signal::ctrl_c()).await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use serde::Deserialize;
use tokio::runtime::RuntimeFlavor;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How many serving worker threads to run: `0` serves on the process's shared multi-thread
/// runtime; `N` runs `N` single-threaded runtimes, each with its own `SO_REUSEPORT`
/// listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WorkerCount(pub usize);

impl WorkerCount {
    /// The number of worker threads (0: the shared runtime).
    pub fn get(self) -> usize {
        self.0
    }

    /// Whether connections are served on dedicated single-threaded workers.
    pub fn per_worker(self) -> bool {
        self.0 > 0
    }
}

/// Binds `count` (at least one) listeners to `addr` with `SO_REUSEPORT`; port 0 is
/// resolved by the first, and the others bind the same port. Call it within a tokio
/// runtime; the listeners are returned detached from it, to be adopted by the workers.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count.max(1));
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// Runs `serve` on one thread per listener, each thread with its own `current_thread`
/// runtime, until `shutdown` completes (each `serve` is then handed a completed shutdown
/// future and should stop accepting and drain) or until a worker fails. Returns the first
/// worker error.
pub async fn serve_on_workers<F, Fut>(
    listeners: Vec<std::net::TcpListener>,
    serve: F,
    shutdown: impl Future,
) -> io::Result<()>
where
    F: Fn(tokio::net::TcpListener, WaitForCancellationFutureOwned) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let serve = Arc::new(serve);
    let token = CancellationToken::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let count = listeners.len();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (serve, token, done) = (serve.clone(), token.clone(), done_tx.clone());
        std::thread::Builder::new()
            // Short: Linux keeps 15 bytes of a thread name.
            .name(format!("fortress-wk-{index}"))
            .spawn(move || {
                let result = run_worker(listener, &*serve, token);
                let _ = done.send(result);
            })?;
    }
    drop(done_tx);
    let mut first_error = None;
    let mut finished = 0;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        result = done_rx.recv() => {
            // A worker stopped on its own: stop the others too.
            finished += 1;
            if let Some(Err(error)) = result {
                first_error = Some(error);
            }
        }
    }
    token.cancel();
    while finished < count {
        match done_rx.recv().await {
            Some(result) => {
                finished += 1;
                if let (Err(error), None) = (result, &first_error) {
                    first_error = Some(error);
                }
            }
            // A worker thread panicked (its sender is gone without a result).
            None => break,
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn run_worker<F, Fut>(
    listener: std::net::TcpListener,
    serve: &F,
    token: CancellationToken,
) -> io::Result<()>
where
    F: Fn(tokio::net::TcpListener, WaitForCancellationFutureOwned) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        serve(listener, token.cancelled_owned()).await
    })
}

/// A value kept per serving worker: on a `current_thread` runtime (a [`serve_on_workers`]
/// worker) each thread gets its own, made on first use; elsewhere (the shared multi-thread
/// runtime, or no runtime) every caller shares one.
///
/// For clients that own connections: a connection registered with one worker's runtime
/// and driven from another would cost a cross-thread wake-up on every read.
pub struct PerWorker<T> {
    shared: T,
    make: Box<dyn Fn() -> T + Send + Sync>,
    local: Mutex<HashMap<ThreadId, T>>,
}

impl<T: Clone> PerWorker<T> {
    /// `make` builds a value; one is built now for the shared runtime.
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            shared: make(),
            make: Box::new(make),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The value for the calling worker.
    pub fn get(&self) -> T {
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if !on_worker {
            return self.shared.clone();
        }
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .entry(std::thread::current().id())
            .or_insert_with(|| (self.make)())
            .clone()
    }
}

impl<T> std::fmt::Debug for PerWorker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerWorker").finish_non_exhaustive()
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what service managers and container runtimes
/// send): the shutdown future both gateway binaries serve with.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "SIGTERM cannot be watched; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listeners_share_one_port_and_every_worker_serves() {
        let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        let addr = listeners[0].local_addr().unwrap();
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let seen = threads.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on_workers(
            listeners,
            move |listener, shutdown| {
                let seen = seen.clone();
                async move {
                    tokio::pin!(shutdown);
                    loop {
                        tokio::select! {
                            () = &mut shutdown => return Ok(()),
                            accepted = listener.accept() => {
                                let (mut stream, _) = accepted?;
                                seen.lock().unwrap().insert(std::thread::current().id());
                                // Answer with whether this runs on a current_thread runtime.
                                let flavor = tokio::runtime::Handle::current().runtime_flavor();
                                let byte = u8::from(flavor == RuntimeFlavor::CurrentThread);
                                stream.write_all(&[byte]).await?;
                            }
                        }
                    }
                }
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        // Connections spread by the kernel's hash of the client port: enough of them reach
        // more than one worker.
        for _ in 0..64 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut byte = [9u8];
            stream.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte[0], 1, "served on a current_thread runtime");
        }
        assert!(
            threads.lock().unwrap().len() > 1,
            "one worker took every connection"
        );
        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_failing_worker_stops_the_others_and_reports_its_error() {
        let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let count = started.clone();
        let result = serve_on_workers(
            listeners,
            move |_listener, shutdown| {
                let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        return Err(io::Error::other("boom"));
                    }
                    shutdown.await;
                    Ok(())
                }
            },
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(result.unwrap_err().to_string(), "boom");
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn per_worker_values_are_per_thread_on_current_thread_runtimes_only() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let values = Arc::new(PerWorker::new(move || {
            counter.fetch_add(1, Ordering::SeqCst)
        }));
        // Outside a runtime and on a multi-thread runtime: the shared value (made first).
        assert_eq!(values.get(), 0);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async { values.get() }), 0);
        // Two current_thread workers: one value each, stable per thread.
        let on_worker = |values: Arc<PerWorker<usize>>| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async { (values.get(), values.get()) })
            })
            .join()
            .unwrap()
        };
        let (a1, a2) = on_worker(values.clone());
        let (b1, b2) = on_worker(values.clone());
        assert_eq!(a1, a2);
        assert_eq!(b1, b2);
        assert_ne!(a1, b1);
        assert!(a1 > 0 && b1 > 0);
        assert_eq!(made.load(Ordering::SeqCst), 3);
    }
}
