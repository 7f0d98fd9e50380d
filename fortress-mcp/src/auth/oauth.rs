//! OAuth 2.1 resource-server mode: JWT access tokens verified against the authorization
//! server's JWKS.
//!
//! A token is accepted when its signature verifies with a key of the JWKS (found by `kid`),
//! its algorithm is an allowed asymmetric one (never `HS*`, so a public key cannot be
//! abused as an HMAC secret), its `iss` is the configured issuer, its `aud` contains the
//! configured audience (this resource, so tokens minted for other services are refused —
//! MCP spec 2025-11-25, Authorization › Token Audience Binding), and it has not expired.
//! The JWKS is fetched on first use and cached; an unknown `kid` triggers a refresh (at most
//! once per `min_refresh`), so key rotation at the issuer is picked up.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fortress_core::subject::{Subject, WorkspaceId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthFailure;

/// OAuth settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (`iss`).
    pub issuer: String,
    /// This resource's identifier, required in `aud`.
    pub audience: String,
    /// Where the issuer publishes its JWKS.
    pub jwks_url: String,
    /// Accepted signature algorithms (default RS256, ES256, PS256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim naming the subject (default `sub`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim listing the subject's groups (default `groups`; an array of strings or a
    /// space-separated string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim naming the subject's workspace (default `workspace`).
    #[serde(default = "default_workspace_claim")]
    pub workspace_claim: String,
    /// The workspace of tokens without that claim (default `default`).
    #[serde(default = "default_workspace")]
    pub default_workspace: String,
    /// How long a fetched JWKS is used (default 300 s).
    #[serde(default = "default_cache_secs")]
    pub jwks_cache_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf` (default 30 s).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "PS256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_workspace_claim() -> String {
    "workspace".into()
}
fn default_workspace() -> String {
    "default".into()
}
fn default_cache_secs() -> u64 {
    300
}
fn default_leeway() -> u64 {
    30
}

impl OAuthConfig {
    /// Settings with every default, for `issuer`, `audience` and `jwks_url`.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            algorithms: default_algorithms(),
            subject_claim: default_subject_claim(),
            groups_claim: default_groups_claim(),
            workspace_claim: default_workspace_claim(),
            default_workspace: default_workspace(),
            jwks_cache_secs: default_cache_secs(),
            leeway_secs: default_leeway(),
        }
    }
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthConfigError {
    /// An algorithm is unknown or symmetric.
    #[error("algorithm {0:?} is not an accepted asymmetric JWS algorithm")]
    Algorithm(String),
    /// The HTTP client could not be built.
    #[error("cannot build the JWKS client: {0}")]
    Client(String),
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Verifies access tokens.
pub struct OAuthVerifier {
    config: OAuthConfig,
    algorithms: Vec<Algorithm>,
    client: reqwest::Client,
    cache: Mutex<Option<CachedKeys>>,
    /// Serialises JWKS fetches so a burst of requests causes one fetch.
    fetching: tokio::sync::Mutex<()>,
    min_refresh: Duration,
}

impl std::fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthVerifier")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl OAuthVerifier {
    /// A verifier for `config`.
    pub fn new(config: OAuthConfig) -> Result<Self, OAuthConfigError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|name| match name.parse::<Algorithm>() {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
                    Err(OAuthConfigError::Algorithm(name.clone()))
                }
                Ok(alg) => Ok(alg),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OAuthConfigError::Client(e.to_string()))?;
        Ok(Self {
            config,
            algorithms,
            client,
            cache: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            min_refresh: Duration::from_secs(10),
        })
    }

    /// The shortest time between two JWKS fetches caused by unknown key ids (default 10 s),
    /// so tokens with made-up `kid`s cannot make Fortress hammer the issuer.
    #[must_use]
    pub fn with_min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// The issuer whose tokens are accepted.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn cached_key(&self, kid: Option<&str>, fresh_only: bool) -> Option<Option<DecodingKey>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cache.as_ref()?;
        let age = cached.fetched.elapsed();
        if fresh_only && age >= Duration::from_secs(self.config.jwks_cache_secs) {
            return None;
        }
        let jwk = match kid {
            Some(kid) => cached.keys.find(kid),
            None if cached.keys.keys.len() == 1 => cached.keys.keys.first(),
            None => None,
        };
        Some(jwk.and_then(|jwk| DecodingKey::from_jwk(jwk).ok()))
    }

    fn fetched_recently(&self) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() < self.min_refresh)
    }

    async fn fetch(&self) -> Result<(), AuthFailure> {
        let response = self
            .client
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| {
                tracing::warn!(%error, "JWKS fetch failed");
                AuthFailure::Unavailable
            })?;
        let keys: JwkSet = response.json().await.map_err(|error| {
            tracing::warn!(%error, "JWKS is not a valid key set");
            AuthFailure::Unavailable
        })?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(CachedKeys {
            keys,
            fetched: Instant::now(),
        });
        Ok(())
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthFailure> {
        if let Some(Some(key)) = self.cached_key(kid, true) {
            return Ok(key);
        }
        let _one = self.fetching.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(Some(key)) = self.cached_key(kid, true) {
            return Ok(key);
        }
        if !self.fetched_recently() {
            if let Err(failure) = self.fetch().await {
                // The issuer is unreachable: keep using keys we already had.
                return match self.cached_key(kid, false) {
                    Some(Some(key)) => Ok(key),
                    _ => Err(failure),
                };
            }
        }
        match self.cached_key(kid, false) {
            Some(Some(key)) => Ok(key),
            _ => Err(AuthFailure::Invalid),
        }
    }

    /// Verifies `token` and returns the subject it names.
    pub async fn verify(&self, token: &str) -> Result<Subject, AuthFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Invalid)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthFailure::Invalid);
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(
            |error| {
                tracing::debug!(%error, "access token refused");
                AuthFailure::Invalid
            },
        )?;
        self.subject(&data.claims)
    }

    fn subject(&self, claims: &Map<String, Value>) -> Result<Subject, AuthFailure> {
        let id = claims
            .get(&self.config.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthFailure::Invalid)?;
        let workspace = claims
            .get(&self.config.workspace_claim)
            .and_then(Value::as_str)
            .unwrap_or(&self.config.default_workspace);
        let groups: BTreeSet<String> = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            _ => BTreeSet::new(),
        };
        Ok(Subject::user(id, WorkspaceId::new(workspace)).with_groups(groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_algorithms_are_refused_in_configuration() {
        let mut config = OAuthConfig::new("https://idp", "https://mcp", "http://127.0.0.1:1/jwks");
        config.algorithms = vec!["HS256".into()];
        assert!(matches!(
            OAuthVerifier::new(config),
            Err(OAuthConfigError::Algorithm(_))
        ));
    }

    #[test]
    fn claims_become_a_subject() {
        let verifier = OAuthVerifier::new(OAuthConfig::new(
            "https://idp",
            "https://mcp",
            "http://127.0.0.1:1/jwks",
        ))
        .unwrap();
        let claims =
            serde_json::json!({"sub": "ada", "workspace": "acme", "groups": ["eng", "ops"]});
        let subject = verifier.subject(claims.as_object().unwrap()).unwrap();
        assert_eq!(subject.id, "ada");
        assert_eq!(subject.workspace.as_str(), "acme");
        assert_eq!(subject.groups, ["eng", "ops"]);
        let spaced = serde_json::json!({"sub": "bo", "groups": "a b"});
        let subject = verifier.subject(spaced.as_object().unwrap()).unwrap();
        assert_eq!(subject.workspace.as_str(), "default");
        assert_eq!(subject.groups, ["a", "b"]);
        assert!(verifier.subject(&Map::new()).is_err());
    }

    /// Serves whatever `body` holds at the time of each request.
    fn jwks_server(body: std::sync::Arc<Mutex<String>>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = body.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        format!("http://{addr}/jwks")
    }

    fn es256(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
        use base64::Engine as _;
        let pair = rcgen::KeyPair::generate().unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let point = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..])});
        (key, jwk)
    }

    fn sign(key: &jsonwebtoken::EncodingKey, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({"iss": "https://idp", "aud": "https://mcp", "sub": "ada",
            "exp": chrono::Utc::now().timestamp() + 60});
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[tokio::test]
    async fn a_rotated_issuer_key_is_fetched_when_first_seen() {
        let (k1, jwk1) = es256("k1");
        let (k2, jwk2) = es256("k2");
        let body = std::sync::Arc::new(Mutex::new(serde_json::json!({"keys": [jwk1]}).to_string()));
        let url = jwks_server(body.clone());
        let verifier = OAuthVerifier::new(OAuthConfig::new("https://idp", "https://mcp", url))
            .unwrap()
            .with_min_refresh(Duration::ZERO);
        assert_eq!(verifier.verify(&sign(&k1, "k1")).await.unwrap().id, "ada");
        assert_eq!(
            verifier.verify(&sign(&k2, "k2")).await,
            Err(AuthFailure::Invalid)
        );
        *body.lock().unwrap() = serde_json::json!({"keys": [jwk1, jwk2]}).to_string();
        assert_eq!(verifier.verify(&sign(&k2, "k2")).await.unwrap().id, "ada");
    }

    #[tokio::test]
    async fn an_unreachable_jwks_is_unavailable_not_invalid() {
        let (k1, _) = es256("k1");
        let verifier = OAuthVerifier::new(OAuthConfig::new(
            "https://idp",
            "https://mcp",
            "http://127.0.0.1:1/jwks",
        ))
        .unwrap();
        assert_eq!(
            verifier.verify(&sign(&k1, "k1")).await,
            Err(AuthFailure::Unavailable)
        );
    }

    #[tokio::test]
    async fn malformed_tokens_are_invalid_without_fetching_keys() {
        let verifier = OAuthVerifier::new(OAuthConfig::new(
            "https://idp",
            "https://mcp",
            "http://127.0.0.1:1/jwks",
        ))
        .unwrap();
        assert_eq!(
            verifier.verify("not.a.jwt").await,
            Err(AuthFailure::Invalid)
        );
    }
}
