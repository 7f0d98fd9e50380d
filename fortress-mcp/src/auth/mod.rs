//! Client authentication at the MCP HTTP edge.
//!
//! Every request to the endpoint (Streamable HTTP, the legacy GET stream and the 2024-11-05
//! HTTP+SSE endpoints alike) is authenticated before anything else, and the [`Subject`] it
//! proves reaches the governance seam as a request extension:
//!
//! - **API keys** issued by the gateway (`fmk_…`, [`fortress_core::keys`]), in `x-api-key`
//!   or `Authorization: Bearer`; the key's groups and team become the subject's groups, its
//!   scopes limit the actions it may take ([`KeyScopes`]).
//! - **OAuth 2.1 resource server** ([`oauth`]): a JWT access token in `Authorization:
//!   Bearer`, verified against the issuer's JWKS (fetched and cached), issuer, audience and
//!   expiry.
//! - **Anonymous** (off by default): an unauthenticated *loopback* client is mapped to a
//!   configured subject, still governed by policy and audited.
//!
//! A missing or bad credential gets `401` with `WWW-Authenticate: Bearer
//! resource_metadata="…"`, pointing at the Protected Resource Metadata document (RFC 9728)
//! served at `/.well-known/oauth-protected-resource` ([`metadata`]).
//!
//! ```
//! use fortress_core::subject::{Subject, WorkspaceId};
//! use fortress_mcp::auth::Authenticator;
//!
//! let auth = Authenticator::builder()
//!     .anonymous(Subject::user("me", WorkspaceId::new("local")))
//!     .build();
//! assert!(auth.allows_anonymous());
//! ```

pub mod metadata;
pub mod oauth;

use std::net::IpAddr;
use std::sync::Arc;

use fortress_core::audit::{AuditEvent, AuditSink, EventKind, Outcome, SubjectRef};
use fortress_core::body::{self, Body};
use fortress_core::call::Action;
use fortress_core::keys::{AuthError, KeyStore, token_of};
use fortress_core::subject::{Subject, SubjectKind, WorkspaceId};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

pub use metadata::ResourceMetadata;
pub use oauth::{OAuthConfig, OAuthVerifier};

/// The action scopes of the API key a request was authenticated with, as a request
/// extension (`*`, an action name such as `tools/call`, or a prefix such as `tools/*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScopes(pub Vec<String>);

impl KeyScopes {
    /// Whether a scope covers `action`.
    pub fn allows(&self, action: &Action) -> bool {
        let name = action.as_str();
        self.0.iter().any(|scope| {
            scope == "*"
                || scope == name
                || scope
                    .strip_suffix('*')
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }
}

/// Who a request was authenticated as.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The subject.
    pub subject: Subject,
    /// The key's scopes, when an API key was used.
    pub scopes: Option<KeyScopes>,
    /// How: `api_key`, `oauth` or `anonymous`.
    pub method: &'static str,
}

/// Why a request was not authenticated. Callers learn only whether a credential was
/// missing, invalid, or (for a bound key) used from the wrong network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No credential.
    #[error("authentication required")]
    Missing,
    /// A credential that is not valid (unknown, wrong, expired, revoked, bad signature,
    /// wrong issuer or audience).
    #[error("invalid credential")]
    Invalid,
    /// A key used from outside the networks it is bound to.
    #[error("credential not permitted from this address")]
    Network,
    /// The key store or the JWKS could not be reached.
    #[error("authentication is temporarily unavailable")]
    Unavailable,
}

/// Authenticates requests with the configured methods.
#[derive(Clone, Default)]
pub struct Authenticator {
    audit: Option<Arc<dyn AuditSink>>,
    keys: Option<KeyStore>,
    oauth: Option<Arc<OAuthVerifier>>,
    anonymous: Option<Subject>,
    metadata: ResourceMetadata,
}

/// Builds an [`Authenticator`].
#[derive(Default)]
#[must_use]
pub struct AuthenticatorBuilder {
    inner: Authenticator,
}

impl AuthenticatorBuilder {
    /// Accepts gateway API keys from `store`.
    pub fn api_keys(mut self, store: KeyStore) -> Self {
        self.inner.keys = Some(store);
        self
    }

    /// Accepts OAuth access tokens checked by `verifier`.
    pub fn oauth(mut self, verifier: OAuthVerifier) -> Self {
        self.inner.metadata.authorization_servers = vec![verifier.issuer().to_owned()];
        self.inner.oauth = Some(Arc::new(verifier));
        self
    }

    /// Records refused requests (no or bad credential) in `audit`.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.inner.audit = Some(sink);
        self
    }

    /// Maps unauthenticated loopback clients to `subject`.
    pub fn anonymous(mut self, subject: Subject) -> Self {
        self.inner.anonymous = Some(subject);
        self
    }

    /// The Protected Resource Metadata settings.
    pub fn metadata(mut self, metadata: ResourceMetadata) -> Self {
        let servers = std::mem::take(&mut self.inner.metadata.authorization_servers);
        self.inner.metadata = metadata;
        if self.inner.metadata.authorization_servers.is_empty() {
            self.inner.metadata.authorization_servers = servers;
        }
        self
    }

    /// The authenticator.
    pub fn build(self) -> Authenticator {
        self.inner
    }
}

impl Authenticator {
    /// Starts a builder (nothing accepted until a method is added).
    pub fn builder() -> AuthenticatorBuilder {
        AuthenticatorBuilder::default()
    }

    /// Whether unauthenticated loopback clients are let in.
    pub fn allows_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The metadata settings.
    pub fn metadata(&self) -> &ResourceMetadata {
        &self.metadata
    }

    /// Authenticates a request from `peer` to `path`; a refusal is audited (who is unknown,
    /// so the event names the client address and the kind of failure, never the credential).
    pub async fn authenticate_audited(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        path: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let result = self.authenticate(headers, peer).await;
        if let (Err(failure), Some(audit)) = (&result, &self.audit) {
            let mut event = AuditEvent::activity(
                EventKind::Access,
                WorkspaceId::new("unknown"),
                SubjectRef {
                    id: "unauthenticated".into(),
                    kind: SubjectKind::App,
                },
                "authenticate",
                format!("endpoint:{path}"),
            );
            event.outcome = Outcome::Denied;
            event.denial = Some("unauthenticated".into());
            event.client_ip = peer;
            event.detail.insert(
                "failure".into(),
                serde_json::Value::from(failure.to_string()),
            );
            if let Err(error) = audit.record(event).await {
                tracing::error!(%error, "refused authentication was not audited");
            }
        }
        result
    }

    /// Authenticates a request from `peer`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Authenticated, AuthFailure> {
        let Some(token) = token_of(headers).filter(|t| !t.is_empty()) else {
            return match (&self.anonymous, peer) {
                (Some(subject), Some(ip)) if ip.is_loopback() => Ok(Authenticated {
                    subject: subject.clone(),
                    scopes: None,
                    method: "anonymous",
                }),
                _ => Err(AuthFailure::Missing),
            };
        };
        if let Some(keys) = &self.keys
            && keys.format().recognizes(token)
        {
            return match keys.authenticate(token, peer).await {
                Ok(record) => Ok(Authenticated {
                    subject: record.subject(),
                    scopes: Some(KeyScopes(record.scopes.clone())),
                    method: "api_key",
                }),
                Err(AuthError::Network) => Err(AuthFailure::Network),
                Err(AuthError::Store) => Err(AuthFailure::Unavailable),
                Err(_) => Err(AuthFailure::Invalid),
            };
        }
        match &self.oauth {
            Some(oauth) => oauth.verify(token).await.map(|subject| Authenticated {
                subject,
                scopes: None,
                method: "oauth",
            }),
            None => Err(AuthFailure::Invalid),
        }
    }

    /// The answer to a request that failed authentication: `401` (or `403` for a key used
    /// from the wrong network, `503` when the key store or JWKS is down) with a
    /// `WWW-Authenticate` challenge pointing at the resource metadata. `base` is the
    /// endpoint's origin as the client reached it (`http://host:port`).
    pub fn challenge(&self, failure: &AuthFailure, base: &str) -> http::Response<Body> {
        let status = match failure {
            AuthFailure::Missing | AuthFailure::Invalid => StatusCode::UNAUTHORIZED,
            AuthFailure::Network => StatusCode::FORBIDDEN,
            AuthFailure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let payload = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": crate::seam::UNAUTHENTICATED, "message": failure.to_string() },
        });
        let mut response = http::Response::new(body::full(payload.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            let mut challenge = format!(
                "Bearer resource_metadata=\"{}\"",
                self.metadata.document_url(base)
            );
            if *failure == AuthFailure::Invalid {
                challenge.push_str(", error=\"invalid_token\"");
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::keys::{KeyFormat, NewKey};
    use fortress_core::secret::Secret;
    use fortress_core::subject::WorkspaceId;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn keys_authenticate_with_groups_and_scopes() {
        let store = KeyStore::in_memory(KeyFormat::MCP, Secret::from("p"))
            .await
            .unwrap();
        let mut new = NewKey::user("acme", "alice");
        new.groups = vec!["support".into()];
        new.scopes = vec!["tools/*".into()];
        let issued = store.create(new).await.unwrap();
        let token = issued.token.expose_str().unwrap().to_owned();
        let auth = Authenticator::builder().api_keys(store).build();
        let bearer = format!("Bearer {token}");
        for h in [
            headers(&[("x-api-key", &token)]),
            headers(&[("authorization", &bearer)]),
        ] {
            let who = auth.authenticate(&h, None).await.unwrap();
            assert_eq!(who.subject.id, "alice");
            assert!(who.subject.in_group("support"));
            let scopes = who.scopes.unwrap();
            assert!(scopes.allows(&Action::CallTool));
            assert!(!scopes.allows(&Action::ReadResource));
        }
        let wrong = format!("{}0", &token[..token.len() - 1]);
        assert_eq!(
            auth.authenticate(&headers(&[("x-api-key", &wrong)]), None)
                .await
                .unwrap_err(),
            AuthFailure::Invalid
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), None)
                .await
                .unwrap_err(),
            AuthFailure::Missing
        );
    }

    #[tokio::test]
    async fn anonymous_mode_admits_only_loopback_clients_without_credentials() {
        let auth = Authenticator::builder()
            .anonymous(Subject::user("me", WorkspaceId::new("local")))
            .build();
        let local = auth
            .authenticate(&HeaderMap::new(), Some("127.0.0.1".parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(local.subject.id, "me");
        assert_eq!(local.method, "anonymous");
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), Some("10.0.0.2".parse().unwrap()))
                .await
                .unwrap_err(),
            AuthFailure::Missing
        );
        // A presented credential is checked, never silently ignored.
        assert_eq!(
            auth.authenticate(
                &headers(&[("x-api-key", "nope")]),
                Some("127.0.0.1".parse().unwrap())
            )
            .await
            .unwrap_err(),
            AuthFailure::Invalid
        );
    }

    #[test]
    fn challenges_point_at_the_resource_metadata() {
        let auth = Authenticator::builder().build();
        let response = auth.challenge(&AuthFailure::Missing, "http://127.0.0.1:9");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource\""
        );
        let bad = auth.challenge(&AuthFailure::Invalid, "http://h");
        assert!(
            bad.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .ends_with("error=\"invalid_token\"")
        );
    }
}
