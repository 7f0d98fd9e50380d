//! Keep-alive HTTP/1.1 connections to one upstream, each driven by the request using it.
//!
//! A general-purpose client runs every connection in a task of its own and hands requests
//! and responses to it through channels (and spawns another task per request to return the
//! connection to its pool). On the relay's hot path that is two extra task wake-ups per call,
//! often across worker threads. Here the request's own task polls the connection while it
//! waits for the response and while it reads the body; when the body has been read to its
//! end, the connection goes back to the idle list for the next request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 64;

type Driver = Pin<Box<http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>>>;

/// One HTTP/1.1 connection: the request side and the future that performs its I/O.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
    /// The driver finished (the connection closed); it must not be polled again.
    closed: bool,
}

impl Conn {
    /// Performs pending I/O; true once the connection is closed.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closed && self.driver.as_mut().poll(cx).is_ready() {
            self.closed = true;
        }
        self.closed
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// HTTP/1 failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The connection closed before answering.
    #[error("connection closed before the response")]
    Closed,
}

impl PoolError {
    /// The request was never sent (the connection closed first), so sending it again
    /// cannot run it twice.
    fn unanswered(&self) -> bool {
        matches!(self, Self::Http(e) if e.is_canceled())
    }
}

/// A copy of a request with a buffered body.
fn copy(request: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The connections to one `host:port`.
pub(crate) struct Pool {
    authority: String,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// A pool for `authority` (`host:port`).
    pub(crate) fn new(authority: String) -> Arc<Self> {
        Arc::new(Self {
            authority,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(PoolError::Connect)?;
        // Every exchange is one small request Fortress waits on: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
            closed: false,
        })
    }

    /// A connection ready for a request: an idle one that is still open, else a new one
    /// (`fresh` says which).
    async fn checkout(&self) -> Result<(Conn, bool), PoolError> {
        while let Some(mut conn) = self.take_idle() {
            let ready = std::future::poll_fn(|cx| {
                if conn.drive(cx) {
                    return Poll::Ready(false);
                }
                match conn.sender.poll_ready(cx) {
                    Poll::Ready(result) => Poll::Ready(result.is_ok()),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if ready {
                return Ok((conn, false));
            }
        }
        self.checkout_new().await
    }

    /// Sends `request` (origin-form URI, `Host` set by the caller) and returns the response,
    /// whose body drives the connection and returns it to the pool once read to its end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<PooledBody>, PoolError> {
        let (conn, fresh) = self.checkout().await?;
        if fresh {
            return self.exchange(conn, request).await;
        }
        // A kept-alive connection the upstream closed (its idle timeout) just before the
        // request could be written: the request is sent again on a new connection.
        let again = copy(&request);
        match self.exchange(conn, request).await {
            Err(e) if e.unanswered() => {
                let (conn, _) = self.checkout_new().await?;
                self.exchange(conn, again).await
            }
            other => other,
        }
    }

    async fn checkout_new(&self) -> Result<(Conn, bool), PoolError> {
        let mut conn = self.connect().await?;
        std::future::poll_fn(|cx| {
            if conn.drive(cx) {
                return Poll::Ready(Err(PoolError::Closed));
            }
            conn.sender.poll_ready(cx).map_err(PoolError::from)
        })
        .await?;
        Ok((conn, true))
    }

    async fn exchange(
        self: &Arc<Self>,
        mut conn: Conn,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<PooledBody>, PoolError> {
        let mut response = Box::pin(conn.sender.send_request(request));
        let response = std::future::poll_fn(|cx| {
            let closed = conn.drive(cx);
            match response.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(result.map_err(PoolError::from)),
                Poll::Pending if closed => Poll::Ready(Err(PoolError::Closed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        Ok(response.map(|body| PooledBody {
            body,
            conn: Some(conn),
            pool: self.clone(),
        }))
    }
}

/// A response body that drives its connection; read to its end, it frees the connection.
pub(crate) struct PooledBody {
    body: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // Read to its end: the connection can serve the next request (the checkout
            // polls it to its idle state and drops it if the upstream closed it).
            if let Some(conn) = this.conn.take() {
                if !conn.closed {
                    this.pool.put_idle(conn);
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;

    use super::*;

    /// A server answering `ok`, counting connections; `keep_alive: false` closes each after
    /// one exchange.
    async fn server(keep_alive: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = server::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn request(addr: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method("POST")
            .uri("/mcp")
            .header(http::header::HOST, addr)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    async fn exchange(pool: &Arc<Pool>, addr: &str) -> Bytes {
        let response = pool.send(request(addr)).await.expect("an answer");
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_serves_the_next_request() {
        let (addr, accepted) = server(true).await;
        let pool = Pool::new(addr.clone());
        for _ in 0..3 {
            assert_eq!(exchange(&pool, &addr).await, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (addr, accepted) = server(false).await;
        let pool = Pool::new(addr.clone());
        for _ in 0..3 {
            assert_eq!(exchange(&pool, &addr).await, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "a new connection each time"
        );
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Pool::new(addr.clone());
        assert!(matches!(
            pool.send(request(&addr)).await,
            Err(PoolError::Connect(_))
        ));
    }
}
