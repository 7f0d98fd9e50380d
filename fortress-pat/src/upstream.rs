//! The upstream client: hyper-util's pooled client over TCP or rustls, with timeouts and a
//! configurable base URL (tests point it at [`crate::mock`]).
//!
//! Only the headers the Claude API needs are forwarded (`anthropic-version`,
//! `anthropic-beta`, `content-type`, `accept`, and the `x-api-key` the credential layer
//! injected); hop-by-hop headers and the upstream's own `anthropic-ratelimit-*` headers
//! (which describe the organization's account, not the caller) are dropped.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fortress_core::body::{self, Body};
use fortress_core::workers::PerWorker;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Request headers passed to the Claude API.
const FORWARDED: [&str; 5] = [
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "x-api-key",
];

/// Response headers never passed back.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Upstream settings.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the response head arrives.
    pub response_timeout: Duration,
    /// Extra PEM root certificates to trust (tests, private upstreams).
    pub extra_roots: Option<PathBuf>,
}

impl UpstreamConfig {
    /// Defaults for a base URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            extra_roots: None,
        }
    }
}

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The base URL is unusable.
    #[error("invalid upstream base URL: {0}")]
    BaseUrl(String),
    /// TLS could not be set up.
    #[error("upstream TLS setup failed: {0}")]
    Tls(String),
    /// The request failed (connect, send or receive).
    #[error("upstream request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// No response head in time.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream request could not be built.
    #[error("upstream request could not be built: {0}")]
    Build(String),
}

type PooledClient = Client<TlsConnector, Full<Bytes>>;

/// A pooled client for one upstream.
#[derive(Clone)]
pub struct Upstream {
    /// One connection pool per serving worker, so that a worker's requests use connections
    /// driven on its own thread (`fortress_core::workers`).
    client: Arc<PerWorker<PooledClient>>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client.
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let base: Uri = config
            .base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::BaseUrl(e.to_string()))?;
        let scheme = base
            .scheme()
            .cloned()
            .ok_or_else(|| UpstreamError::BaseUrl("no scheme".into()))?;
        let authority = base
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamError::BaseUrl("no host".into()))?;
        let tls = if scheme == http::uri::Scheme::HTTPS {
            Some(tls_config(config.extra_roots.as_deref())?)
        } else if scheme == http::uri::Scheme::HTTP {
            None
        } else {
            return Err(UpstreamError::BaseUrl(
                "scheme must be http or https".into(),
            ));
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = TlsConnector {
            http,
            tls: tls.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c))),
        };
        let client = PerWorker::new(move || {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .build(connector.clone())
        });
        Ok(Self {
            client: Arc::new(client),
            scheme,
            authority,
            prefix: base.path().trim_end_matches('/').to_owned(),
            response_timeout: config.response_timeout,
        })
    }

    /// Sends a request (its URI's path and query are appended to the base URL).
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, UpstreamError> {
        let (parts, bytes) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.prefix, path))
            .build()
            .map_err(|e| UpstreamError::Build(e.to_string()))?;
        let mut upstream = Request::new(Full::new(bytes));
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        copy_forwarded(&parts.headers, upstream.headers_mut());
        let sent = tokio::time::timeout(self.response_timeout, self.client.get().request(upstream));
        let response = match sent.await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(UpstreamError::Request(e)),
            Err(_) => return Err(UpstreamError::Timeout(self.response_timeout)),
        };
        let (mut parts, incoming) = response.into_parts();
        clean_response_headers(&mut parts.headers);
        Ok(Response::from_parts(parts, body::boxed(incoming)))
    }
}

fn copy_forwarded(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED {
        for value in from.get_all(name) {
            let mut value = value.clone();
            if name == "x-api-key" {
                value.set_sensitive(true);
            }
            to.append(name, value);
        }
    }
}

fn clean_response_headers(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let limits: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("anthropic-ratelimit-"))
        .cloned()
        .collect();
    for name in limits {
        headers.remove(name);
    }
    if let Some(id) = headers.remove("request-id") {
        headers.insert("upstream-request-id", id);
    }
    headers.insert("via", HeaderValue::from_static("fortress-pat"));
}

fn tls_config(extra: Option<&std::path::Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut files = vec![PathBuf::from("/etc/ssl/certs/ca-certificates.crt")];
    if let Some(extra) = extra {
        files.push(extra.to_owned());
    }
    for file in files {
        let Ok(pem) = std::fs::read(&file) else {
            continue;
        };
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            // Unparseable system roots are skipped, as other clients do.
            let _ = roots.add(cert);
        }
    }
    if roots.is_empty() {
        return Err(UpstreamError::Tls("no trusted root certificates".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Connects over TCP, then TLS for `https`.
#[derive(Clone)]
struct TlsConnector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

type BoxConnect = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = Conn;
    type Error = BoxError;
    type Future = BoxConnect;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            match tls {
                None => Ok(Conn(TokioIo::new(Stream::Plain(tcp)))),
                Some(tls) => {
                    let host = uri.host().unwrap_or_default().to_owned();
                    let name = rustls::pki_types::ServerName::try_from(host)?;
                    let stream = tls.connect(name, tcp).await?;
                    Ok(Conn(TokioIo::new(Stream::Tls(Box::new(stream)))))
                }
            }
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection hyper can use.
struct Conn(TokioIo<Stream>);

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
