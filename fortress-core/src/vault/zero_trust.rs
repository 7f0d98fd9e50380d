//! Zero Trust tier: nothing is stored. Each resolve fetches the credential from the
//! customer's credential endpoint over mutual TLS — a rustls client certificate that the
//! customer trusts, and the customer's CA pinned as the only trust anchor — uses it for one
//! request and forgets it.
//!
//! The endpoint protocol is one request per credential:
//! `GET {base}/credentials/{workspace}/{connector}[/{user}]` (percent-encoded segments).
//! `200` carries the raw credential as the body (optionally with an
//! `x-fortress-credential-version` header), `404` means no such credential, `410` revoked.
//!
//! ```no_run
//! # async fn example() -> Result<(), fortress_core::vault::VaultError> {
//! use std::path::Path;
//! use std::sync::Arc;
//! use fortress_core::audit::MemoryAuditSink;
//! use fortress_core::subject::WorkspaceId;
//! use fortress_core::vault::{CredentialSlot, MtlsFetcher, Vault, ZeroTrustVault};
//!
//! let fetcher = MtlsFetcher::from_files(
//!     "https://credentials.customer.example:8443/fortress",
//!     Path::new("client.pem"),
//!     Path::new("client.key"),
//!     Path::new("customer-ca.pem"),
//! )?;
//! let vault = ZeroTrustVault::new().with_workspace(WorkspaceId::new("acme"), Arc::new(fetcher));
//! let credential = vault.resolve(&CredentialSlot::workspace(WorkspaceId::new("acme"), "github")).await?;
//! # drop(credential); Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::envelope_vault::validate_slot;
use super::{Credential, CredentialInfo, CredentialSlot, Vault, VaultError};
use crate::secret::Secret;
use crate::subject::WorkspaceId;

/// The response header that may carry the credential's version.
pub const VERSION_HEADER: &str = "x-fortress-credential-version";

/// Why a fetch from the credential endpoint failed. Never contains the credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The TCP connection failed.
    #[error("cannot connect to the credential endpoint")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (untrusted server, client certificate refused, …).
    #[error("mutual TLS with the credential endpoint failed")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed (including a client certificate the server rejected
    /// after the TLS 1.3 handshake).
    #[error("HTTP exchange with the credential endpoint failed")]
    Http(#[source] hyper::Error),
    /// The endpoint answered with an unexpected status.
    #[error("credential endpoint answered {0}")]
    Status(StatusCode),
    /// The answer was larger than a credential can be.
    #[error("credential endpoint answer exceeds {0} bytes")]
    TooLarge(usize),
    /// The endpoint did not answer in time.
    #[error("credential endpoint timed out after {0:?}")]
    Timeout(Duration),
}

impl From<FetchError> for VaultError {
    fn from(e: FetchError) -> Self {
        VaultError::Backend(Box::new(e))
    }
}

/// Fetches credentials from one customer endpoint over mutual TLS.
#[derive(Clone)]
pub struct MtlsFetcher {
    host: String,
    port: u16,
    base_path: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
    max_len: usize,
}

impl std::fmt::Debug for MtlsFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsFetcher")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl MtlsFetcher {
    /// A fetcher for `base_url` (`https://host[:port][/prefix]`) that presents the client
    /// certificate chain and key (PEM) and trusts only the CA(s) in `ca_pem`.
    pub fn new(
        base_url: &str,
        client_cert_pem: &[u8],
        client_key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Self, VaultError> {
        let uri = Uri::from_str(base_url)
            .map_err(|_| config("credential endpoint is not a valid URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(config("credential endpoint must be an https:// URL"));
        }
        let host = uri
            .host()
            .ok_or_else(|| config("credential endpoint URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| config("credential endpoint host is not a valid server name"))?;

        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_pem, "pinned CA")? {
            roots
                .add(cert)
                .map_err(|_| config("pinned CA certificate is not usable as a trust anchor"))?;
        }
        let chain = read_certs(client_cert_pem, "client certificate")?;
        let key = rustls_pemfile::private_key(&mut &client_key_pem[..])
            .map_err(|_| config("client key is not valid PEM"))?
            .ok_or_else(|| config("client key PEM holds no private key"))?;
        let tls = client_config(roots, chain, key)?;
        Ok(Self {
            host,
            port,
            base_path,
            server_name,
            connector: TlsConnector::from(Arc::new(tls)),
            timeout: Duration::from_secs(5),
            max_len: 64 * 1024,
        })
    }

    /// As [`MtlsFetcher::new`], reading the PEM files.
    pub fn from_files(
        base_url: &str,
        client_cert: &Path,
        client_key: &Path,
        ca: &Path,
    ) -> Result<Self, VaultError> {
        let read = |path: &Path| {
            std::fs::read(path).map(Zeroizing::new).map_err(|e| {
                VaultError::Config(format!("cannot read {}: {}", path.display(), e.kind()))
            })
        };
        Self::new(
            base_url,
            &read(client_cert)?,
            &read(client_key)?,
            &read(ca)?,
        )
    }

    /// Gives up on an endpoint that does not answer within `timeout` (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fetches the credential of `slot`: its bytes and version (0 when the endpoint does
    /// not say).
    pub async fn fetch(&self, slot: &CredentialSlot) -> Result<(Secret, u32), VaultError> {
        match tokio::time::timeout(self.timeout, self.exchange(slot)).await {
            Ok(Ok(Fetched::Credential(secret, version))) => Ok((secret, version)),
            Ok(Ok(Fetched::Missing)) => Err(VaultError::NotFound(slot.clone())),
            Ok(Ok(Fetched::Gone)) => Err(VaultError::Revoked(slot.clone())),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(FetchError::Timeout(self.timeout).into()),
        }
    }

    fn path_of(&self, slot: &CredentialSlot) -> String {
        let mut path = format!(
            "{}/credentials/{}/{}",
            self.base_path,
            encode_segment(slot.workspace.as_str()),
            encode_segment(&slot.connector)
        );
        if let Some(user) = &slot.user {
            path.push('/');
            path.push_str(&encode_segment(user));
        }
        path
    }

    async fn exchange(&self, slot: &CredentialSlot) -> Result<Fetched, FetchError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(FetchError::Tls)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
                .await
                .map_err(FetchError::Http)?;
        let driver = tokio::spawn(connection);
        let authority = if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.path_of(slot))
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/octet-stream")
            .header(http::header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|_| FetchError::Status(StatusCode::BAD_REQUEST))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(FetchError::Http)?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(Fetched::Missing),
                StatusCode::GONE => return Ok(Fetched::Gone),
                status => return Err(FetchError::Status(status)),
            }
            let version = response
                .headers()
                .get(VERSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = response.into_body();
            // Gather frames straight into a zeroizing buffer (hyper's own frame buffers are
            // not zeroized; see docs/security.md).
            let mut secret = Zeroizing::new(Vec::new());
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(FetchError::Http)?;
                if let Some(data) = frame.data_ref() {
                    if secret.len() + data.len() > self.max_len {
                        return Err(FetchError::TooLarge(self.max_len));
                    }
                    secret.extend_from_slice(data);
                }
            }
            Ok(Fetched::Credential(
                Secret::from_text_bytes(secret),
                version,
            ))
        }
        .await;
        driver.abort();
        result
    }
}

enum Fetched {
    Credential(Secret, u32),
    Missing,
    Gone,
}

trait FromTextBytes {
    fn from_text_bytes(bytes: Zeroizing<Vec<u8>>) -> Self;
}

impl FromTextBytes for Secret {
    /// Trims one trailing newline (as an endpoint writing a text file adds), moving the
    /// bytes without a copy.
    fn from_text_bytes(mut bytes: Zeroizing<Vec<u8>>) -> Self {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Secret::new(std::mem::take(&mut *bytes))
    }
}

fn client_config(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, VaultError> {
    // Name the provider explicitly so the result does not depend on which rustls crypto
    // backends other crates in the process enable.
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|_| config("TLS protocol versions unavailable"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|_| config("client certificate and key do not form a usable identity"))
}

fn read_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, VaultError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| VaultError::Config(format!("{what} is not valid PEM")))?;
    if certs.is_empty() {
        return Err(VaultError::Config(format!(
            "{what} PEM holds no certificate"
        )));
    }
    Ok(certs)
}

fn config(message: &str) -> VaultError {
    VaultError::Config(message.to_owned())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A vault for Zero Trust workspaces: resolves by fetching from each workspace's endpoint
/// and stores nothing, so lifecycle changes are refused here (they happen at the customer).
#[derive(Default, Debug)]
pub struct ZeroTrustVault {
    endpoints: HashMap<WorkspaceId, Arc<MtlsFetcher>>,
}

impl ZeroTrustVault {
    /// A vault with no workspaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `workspace` from `fetcher`'s endpoint.
    #[must_use]
    pub fn with_workspace(mut self, workspace: WorkspaceId, fetcher: Arc<MtlsFetcher>) -> Self {
        self.endpoints.insert(workspace, fetcher);
        self
    }

    /// Whether `workspace` is a Zero Trust workspace of this vault.
    pub fn serves(&self, workspace: &WorkspaceId) -> bool {
        self.endpoints.contains_key(workspace)
    }

    fn refuse<T>(&self, workspace: &WorkspaceId) -> Result<T, VaultError> {
        Err(VaultError::Config(format!(
            "workspace {workspace} is zero-trust: its credentials live at the customer's endpoint and are never stored here"
        )))
    }
}

#[async_trait]
impl Vault for ZeroTrustVault {
    async fn put(
        &self,
        slot: &CredentialSlot,
        _secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.refuse(&slot.workspace)
    }

    async fn resolve(&self, slot: &CredentialSlot) -> Result<Credential, VaultError> {
        validate_slot(slot)?;
        let fetcher = self.endpoints.get(&slot.workspace).ok_or_else(|| {
            VaultError::Config(format!(
                "no credential endpoint for workspace {}",
                slot.workspace
            ))
        })?;
        let (secret, version) = fetcher.fetch(slot).await?;
        Ok(Credential::new(slot.clone(), version, secret))
    }

    async fn rotate(
        &self,
        slot: &CredentialSlot,
        _secret: Secret,
    ) -> Result<CredentialInfo, VaultError> {
        self.refuse(&slot.workspace)
    }

    async fn revoke(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        self.refuse(&slot.workspace)
    }

    async fn delete(&self, slot: &CredentialSlot) -> Result<(), VaultError> {
        self.refuse(&slot.workspace)
    }

    async fn list(&self, _workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        // Nothing is stored, so there is nothing to list.
        Ok(Vec::new())
    }

    async fn delete_workspace(&self, _workspace: &WorkspaceId) -> Result<u64, VaultError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("acme-1_x.y~"), "acme-1_x.y~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn only_https_endpoints_with_valid_pem_are_accepted() {
        let err = MtlsFetcher::new("http://127.0.0.1:1", b"", b"", b"").unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        let err = MtlsFetcher::new("https://127.0.0.1:1", b"", b"", b"").unwrap_err();
        assert!(err.to_string().contains("pinned CA"), "{err}");
    }

    #[test]
    fn a_trailing_newline_is_trimmed_from_fetched_text() {
        let s = Secret::from_text_bytes(Zeroizing::new(b"tok\r\n".to_vec()));
        assert_eq!(s.expose(), b"tok");
    }
}
