//! Denials, and the protocol-supplied [`Responder`] that turns them into protocol answers.
//!
//! A layer that refuses a call does not return `Err`: it asks the protocol's responder for a
//! well-formed answer (a JSON-RPC error for MCP, a Claude-shaped error for PAT). `Err` is
//! reserved for transport failure.
//!
//! ```
//! use fortress_core::denial::{Denial, DenialKind, PlainResponder, Responder};
//!
//! let response = PlainResponder.respond(&Denial::new(DenialKind::Forbidden, "denied by policy"));
//! assert_eq!(response.status(), 403);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::body::{self, Body};
use crate::decision::Decision;

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenialKind {
    /// No or bad credentials from the caller.
    Unauthenticated,
    /// Policy refused the call.
    Forbidden,
    /// A rate limit or budget was hit.
    RateLimited,
    /// A kill switch stops this workspace, connector, tool, model or user.
    KillSwitch,
    /// The upstream credential could not be resolved (missing, revoked, vault down).
    CredentialUnavailable,
    /// An internal failure; the call fails closed.
    Internal,
}

impl DenialKind {
    /// The HTTP status a plain HTTP protocol would use.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::KillSwitch => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::CredentialUnavailable => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short name for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::KillSwitch => "kill_switch",
            Self::CredentialUnavailable => "credential_unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for DenialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal, with a message that is safe to show the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub kind: DenialKind,
    /// What the caller is told. Never contains secrets or policy internals.
    pub message: String,
    /// The policy decision behind a `Forbidden` denial (for the audit, not the caller).
    pub decision: Option<Decision>,
    /// When the caller may retry (rate limits).
    pub retry_after: Option<Duration>,
}

impl Denial {
    /// A denial with a caller-safe message.
    pub fn new(kind: DenialKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            decision: None,
            retry_after: None,
        }
    }

    /// Attaches the policy decision.
    #[must_use]
    pub fn with_decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Attaches a retry hint.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}

/// Builds the protocol's answer to a denial.
pub trait Responder: Send + Sync + 'static {
    /// The response the caller receives.
    fn respond(&self, denial: &Denial) -> http::Response<Body>;
}

impl<R: Responder + ?Sized> Responder for Arc<R> {
    fn respond(&self, denial: &Denial) -> http::Response<Body> {
        (**self).respond(denial)
    }
}

/// A shared, type-erased responder, as layers hold it.
pub type SharedResponder = Arc<dyn Responder>;

/// A protocol-neutral responder: the denial kind's HTTP status and a small JSON body
/// `{"error":{"kind":…,"message":…}}`. Useful for plain HTTP services and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainResponder;

impl Responder for PlainResponder {
    fn respond(&self, denial: &Denial) -> http::Response<Body> {
        let payload = serde_json::json!({
            "error": { "kind": denial.kind.as_str(), "message": denial.message }
        });
        let mut response = http::Response::new(body::full(payload.to_string()));
        *response.status_mut() = denial.kind.status();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(retry) = denial.retry_after {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry.as_secs().max(1)),
            );
        }
        response
    }
}
