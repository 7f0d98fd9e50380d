//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells a client which
//! authorization servers issue tokens for this endpoint.
//!
//! Served at `/.well-known/oauth-protected-resource` and at the path-inserted form
//! `/.well-known/oauth-protected-resource/<endpoint path>` (RFC 9728 §3.1), unauthenticated.

use fortress_core::body::{self, Body};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

/// The root well-known path of the metadata document.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// What the metadata document says.
#[derive(Clone, Debug, Default)]
pub struct ResourceMetadata {
    /// The resource identifier (the endpoint's canonical URL). When empty, the URL the
    /// client used is reported (origin from the `Host` header plus the endpoint path).
    pub resource: String,
    /// Issuers of accepted access tokens.
    pub authorization_servers: Vec<String>,
    /// Scopes clients may request.
    pub scopes_supported: Vec<String>,
    /// Public origin override (e.g. `https://mcp.example.com` behind a proxy).
    pub public_base: Option<String>,
}

impl ResourceMetadata {
    /// Whether `path` is one of the document's well-known paths for the endpoint at
    /// `endpoint` (e.g. `/mcp`).
    pub fn is_document_path(&self, path: &str, endpoint: &str) -> bool {
        path == WELL_KNOWN
            || path
                .strip_prefix(WELL_KNOWN)
                .is_some_and(|rest| rest == endpoint)
    }

    fn base<'a>(&'a self, base: &'a str) -> &'a str {
        self.public_base
            .as_deref()
            .unwrap_or(base)
            .trim_end_matches('/')
    }

    /// The document's absolute URL, for `WWW-Authenticate`.
    pub fn document_url(&self, base: &str) -> String {
        format!("{}{WELL_KNOWN}", self.base(base))
    }

    /// The resource identifier of the endpoint at `endpoint`.
    pub fn resource_id(&self, base: &str, endpoint: &str) -> String {
        if self.resource.is_empty() {
            format!("{}{endpoint}", self.base(base))
        } else {
            self.resource.clone()
        }
    }

    /// The document as JSON.
    pub fn document(&self, base: &str, endpoint: &str) -> Value {
        let mut doc = json!({
            "resource": self.resource_id(base, endpoint),
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP Fortress",
        });
        if !self.authorization_servers.is_empty() {
            doc["authorization_servers"] = json!(self.authorization_servers);
        }
        if !self.scopes_supported.is_empty() {
            doc["scopes_supported"] = json!(self.scopes_supported);
        }
        doc
    }

    /// The HTTP answer serving the document.
    pub fn response(&self, base: &str, endpoint: &str) -> http::Response<Body> {
        let document = self.document(base, endpoint);
        let mut response = http::Response::new(body::full(document.to_string()));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_resource_and_its_authorization_servers() {
        let meta = ResourceMetadata {
            authorization_servers: vec!["https://idp.example".into()],
            ..ResourceMetadata::default()
        };
        assert!(meta.is_document_path(WELL_KNOWN, "/mcp"));
        assert!(meta.is_document_path("/.well-known/oauth-protected-resource/mcp", "/mcp"));
        assert!(!meta.is_document_path("/.well-known/oauth-protected-resource/other", "/mcp"));
        let doc = meta.document("http://127.0.0.1:8080", "/mcp");
        assert_eq!(doc["resource"], "http://127.0.0.1:8080/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://idp.example");
    }
}
