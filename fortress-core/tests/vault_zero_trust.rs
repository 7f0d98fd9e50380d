//! Zero Trust tier against a real rustls mTLS server started by the test, with certificates
//! from a test CA: the credential is fetched per request, a client without a certificate
//! from the customer's CA is turned away, and a server outside the pinned CA is refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{
    CredentialSlot, MemoryVault, MtlsFetcher, TieredVault, Vault, VaultError, ZeroTrustVault,
};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A leaf certificate and its key (PEM), for a server (`127.0.0.1`) or a client.
    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, KeyPair) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key)
    }
}

struct Endpoint {
    url: String,
    /// Requests that reached the HTTP handler (i.e. passed mutual TLS).
    served: Arc<AtomicUsize>,
}

/// The customer's credential endpoint: requires a client certificate from `client_ca`.
async fn start_endpoint(server_ca: &Ca, client_ca: &Ca) -> Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let (server_pem, server_key) =
        server_ca.issue("credentials.customer", ExtendedKeyUsagePurpose::ServerAuth);
    let chain = rustls_pemfile::certs(&mut server_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(answer(request.uri().path())) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Endpoint {
        url: format!("https://127.0.0.1:{}/fortress", addr.port()),
        served,
    }
}

fn answer(path: &str) -> Response<Full<Bytes>> {
    let (status, body, version) = match path {
        "/fortress/credentials/acme/github" => (StatusCode::OK, "gh-token-zt\n", Some("7")),
        "/fortress/credentials/acme/github/alice%40acme.example" => {
            (StatusCode::OK, "alice-gh", None)
        }
        "/fortress/credentials/acme/revoked" => (StatusCode::GONE, "", None),
        _ => (StatusCode::NOT_FOUND, "", None),
    };
    let mut response = Response::builder().status(status);
    if let Some(v) = version {
        response = response.header("x-fortress-credential-version", v);
    }
    response
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn fetcher(url: &str, client_ca: &Ca, pinned: &Ca) -> MtlsFetcher {
    let (cert_pem, key) = client_ca.issue("fortress-gateway", ExtendedKeyUsagePurpose::ClientAuth);
    MtlsFetcher::new(
        url,
        cert_pem.as_bytes(),
        key.serialize_pem().as_bytes(),
        pinned.cert.pem().as_bytes(),
    )
    .unwrap()
}

fn acme(connector: &str) -> CredentialSlot {
    CredentialSlot::workspace(WorkspaceId::new("acme"), connector)
}

#[tokio::test]
async fn credentials_are_fetched_per_request_over_mtls() {
    let (server_ca, client_ca) = (Ca::new("customer server CA"), Ca::new("customer client CA"));
    let endpoint = start_endpoint(&server_ca, &client_ca).await;
    let vault = ZeroTrustVault::new().with_workspace(
        WorkspaceId::new("acme"),
        Arc::new(fetcher(&endpoint.url, &client_ca, &server_ca)),
    );

    let credential = vault.resolve(&acme("github")).await.unwrap();
    assert_eq!(
        (credential.secret().expose(), credential.version()),
        (&b"gh-token-zt"[..], 7)
    );
    drop(credential);
    // Fetched again: nothing was kept between requests.
    assert_eq!(
        vault
            .resolve(&acme("github"))
            .await
            .unwrap()
            .secret()
            .expose(),
        b"gh-token-zt"
    );
    assert_eq!(endpoint.served.load(Ordering::SeqCst), 2);

    let personal = CredentialSlot::user(WorkspaceId::new("acme"), "github", "alice@acme.example");
    assert_eq!(
        vault.resolve(&personal).await.unwrap().secret().expose(),
        b"alice-gh"
    );
    assert!(matches!(
        vault.resolve(&acme("jira")).await,
        Err(VaultError::NotFound(_))
    ));
    assert!(matches!(
        vault.resolve(&acme("revoked")).await,
        Err(VaultError::Revoked(_))
    ));

    // Nothing is ever stored for a Zero Trust workspace.
    assert!(matches!(
        vault.put(&acme("github"), Secret::from("x")).await,
        Err(VaultError::Config(_))
    ));
    assert!(
        vault
            .list(&WorkspaceId::new("acme"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_client_without_the_customers_certificate_is_rejected() {
    let (server_ca, client_ca) = (Ca::new("customer server CA"), Ca::new("customer client CA"));
    let endpoint = start_endpoint(&server_ca, &client_ca).await;
    let rogue = Ca::new("rogue CA");
    let vault = ZeroTrustVault::new().with_workspace(
        WorkspaceId::new("acme"),
        Arc::new(fetcher(&endpoint.url, &rogue, &server_ca)),
    );
    let err = vault.resolve(&acme("github")).await.unwrap_err();
    assert!(matches!(err, VaultError::Backend(_)), "{err:?}");
    assert_eq!(
        endpoint.served.load(Ordering::SeqCst),
        0,
        "the request must not reach the handler"
    );

    // The same endpoint serves a client with the right certificate (the rejection above was
    // about the certificate, not a broken server).
    let good = fetcher(&endpoint.url, &client_ca, &server_ca);
    assert_eq!(
        good.fetch(&acme("github")).await.unwrap().0.expose(),
        b"gh-token-zt"
    );
}

#[tokio::test]
async fn a_server_outside_the_pinned_ca_is_refused() {
    let (server_ca, client_ca) = (Ca::new("customer server CA"), Ca::new("customer client CA"));
    let endpoint = start_endpoint(&server_ca, &client_ca).await;
    let other = Ca::new("some other CA");
    let fetcher = fetcher(&endpoint.url, &client_ca, &other);
    let err = fetcher.fetch(&acme("github")).await.unwrap_err();
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("mutual TLS"), "{source}");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    assert_eq!(endpoint.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_tiered_vault_routes_zero_trust_workspaces_to_their_endpoint() {
    let (server_ca, client_ca) = (Ca::new("customer server CA"), Ca::new("customer client CA"));
    let endpoint = start_endpoint(&server_ca, &client_ca).await;
    let zero_trust = ZeroTrustVault::new().with_workspace(
        WorkspaceId::new("acme"),
        Arc::new(fetcher(&endpoint.url, &client_ca, &server_ca)),
    );
    let stored = Arc::new(MemoryVault::new());
    let vault = TieredVault::new(stored.clone(), zero_trust);
    let soho = CredentialSlot::workspace(WorkspaceId::new("soho"), "github");
    vault
        .put(&soho, Secret::from("stored-token"))
        .await
        .unwrap();
    assert_eq!(
        vault.resolve(&soho).await.unwrap().secret().expose(),
        b"stored-token"
    );
    assert_eq!(
        vault
            .resolve(&acme("github"))
            .await
            .unwrap()
            .secret()
            .expose(),
        b"gh-token-zt"
    );
    assert!(vault.put(&acme("github"), Secret::from("x")).await.is_err());
    assert!(
        stored
            .list(&WorkspaceId::new("acme"))
            .await
            .unwrap()
            .is_empty()
    );
}
