//! Claude-shaped errors: every answer the gateway originates has the shape
//! `{"type":"error","error":{"type":…,"message":…},"request_id":…}` and the status the
//! official SDKs map to their exception classes.
//!
//! ```
//! use fortress_core::denial::{Denial, DenialKind, Responder};
//! use fortress_pat::error::ClaudeResponder;
//!
//! let response = ClaudeResponder.respond(&Denial::new(DenialKind::Forbidden, "denied by policy"));
//! assert_eq!(response.status(), 403);
//! ```

use std::time::Duration;

use fortress_core::body::{self, Body};
use fortress_core::denial::{Denial, DenialKind, Responder};
use http::{HeaderValue, StatusCode};

/// The Claude API error types the gateway answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorType {
    /// 400: the request is malformed.
    InvalidRequest,
    /// 401: no, unknown, expired or revoked gateway key.
    Authentication,
    /// 403: the key may not do this.
    Permission,
    /// 404: no such endpoint or resource.
    NotFound,
    /// 413: the request body is too large.
    RequestTooLarge,
    /// 429: a gateway rate limit or budget was hit.
    RateLimit,
    /// 500: the gateway failed.
    Api,
    /// 529: the upstream is overloaded (passed through).
    Overloaded,
}

impl ErrorType {
    /// The `error.type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
            Self::Overloaded => "overloaded_error",
        }
    }

    /// The HTTP status that goes with the type.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Authentication => StatusCode::UNAUTHORIZED,
            Self::Permission => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            Self::Api => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded => {
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// The type a denial maps to.
    pub fn of_denial(kind: DenialKind) -> Self {
        match kind {
            DenialKind::Unauthenticated => Self::Authentication,
            DenialKind::Forbidden | DenialKind::KillSwitch => Self::Permission,
            DenialKind::RateLimited => Self::RateLimit,
            _ => Self::Api,
        }
    }
}

/// The JSON body of a Claude error.
pub fn error_body(kind: ErrorType, message: &str, request_id: Option<&str>) -> serde_json::Value {
    let mut value = serde_json::json!({
        "type": "error",
        "error": { "type": kind.as_str(), "message": message },
    });
    if let Some(id) = request_id {
        value["request_id"] = serde_json::Value::String(id.to_owned());
    }
    value
}

/// A complete Claude error response.
pub fn error_response(
    kind: ErrorType,
    message: &str,
    request_id: Option<&str>,
    retry_after: Option<Duration>,
) -> http::Response<Body> {
    let payload = error_body(kind, message, request_id);
    let mut response = http::Response::new(body::full(payload.to_string()));
    *response.status_mut() = kind.status();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("request-id", id);
    }
    if let Some(retry) = retry_after {
        // Round up: retrying earlier than the limit frees is pointless.
        let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// Answers the core layers' denials in the Claude error shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaudeResponder;

impl Responder for ClaudeResponder {
    fn respond(&self, denial: &Denial) -> http::Response<Body> {
        let kind = ErrorType::of_denial(denial.kind);
        error_response(kind, &denial.message, None, denial.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_map_to_the_statuses_sdks_expect() {
        let cases = [
            (DenialKind::Unauthenticated, 401, "authentication_error"),
            (DenialKind::Forbidden, 403, "permission_error"),
            (DenialKind::KillSwitch, 403, "permission_error"),
            (DenialKind::RateLimited, 429, "rate_limit_error"),
            (DenialKind::Internal, 500, "api_error"),
            (DenialKind::CredentialUnavailable, 500, "api_error"),
        ];
        for (kind, status, ty) in cases {
            let kind_type = ErrorType::of_denial(kind);
            assert_eq!(kind_type.status().as_u16(), status);
            assert_eq!(kind_type.as_str(), ty);
        }
        assert_eq!(ErrorType::RequestTooLarge.status().as_u16(), 413);
        assert_eq!(ErrorType::NotFound.status().as_u16(), 404);
        assert_eq!(ErrorType::InvalidRequest.status().as_u16(), 400);
        assert_eq!(ErrorType::Overloaded.status().as_u16(), 529);
    }

    #[tokio::test]
    async fn rate_limit_answers_carry_retry_after() {
        let denial = Denial::new(DenialKind::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(1500));
        let response = ClaudeResponder.respond(&denial);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        let bytes = body::collect(response.into_body()).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["type"], "error");
        assert_eq!(value["error"]["type"], "rate_limit_error");
        assert_eq!(value["error"]["message"], "slow down");
    }
}
