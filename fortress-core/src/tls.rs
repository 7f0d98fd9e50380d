//! HTTPS for the reference binaries: a rustls server configuration, TLS 1.3 only.
//!
//! ```no_run
//! let config = fortress_core::tls::server_config(
//!     std::path::Path::new("cert.pem"),
//!     std::path::Path::new("key.pem"),
//! ).unwrap();
//! assert_eq!(config.alpn_protocols[1], b"http/1.1");
//! ```

use std::path::Path;
use std::sync::Arc;

/// The certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

/// A TLS 1.3-only server configuration (ring provider, ALPN h2 and http/1.1) from PEM
/// files: a certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = std::fs::read(cert).map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut certs.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate", cert.display())));
    }
    let key = std::fs::read(key).map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| TlsError(e.to_string()))?
        .ok_or_else(|| TlsError("no private key in file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
