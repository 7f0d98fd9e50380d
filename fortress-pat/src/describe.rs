//! The describe step: each Claude API request becomes one [`Call`] — who, which action, on
//! which model, with which attributes — that the core layers decide, limit and audit.
//!
//! ```
//! use fortress_core::call::Action;
//! use fortress_core::subject::{Subject, WorkspaceId};
//! use fortress_pat::describe::{Route, describe};
//!
//! let route = Route::of(&http::Method::POST, "/v1/messages");
//! let subject = Subject::app("ci", WorkspaceId::new("acme"));
//! let body = br#"{"model":"claude-x","max_tokens":64,"messages":[]}"#;
//! let call = describe(&route, &http::HeaderMap::new(), body, subject, None).unwrap();
//! assert_eq!(call.action, Action::CreateMessage);
//! assert_eq!(call.attributes.model.as_deref(), Some("claude-x"));
//! ```

use std::net::IpAddr;

use fortress_core::call::{Action, Attributes, Call, Resource, ResourceKind};
use fortress_core::subject::Subject;
use http::{HeaderMap, Method};

use crate::api::{BatchParams, MessageParams, ParamsError};
use crate::limits::BATCH_REQUESTS_ATTRIBUTE;

/// The Claude API endpoint a request targets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `GET /v1/models`.
    ListModels,
    /// `GET /v1/models/{id}`.
    GetModel(String),
    /// `POST /v1/messages/batches`.
    CreateBatch,
    /// `GET /v1/messages/batches`, `GET …/{id}`, `GET …/{id}/results`.
    ReadBatch,
    /// `POST …/{id}/cancel`, `DELETE …/{id}`.
    CancelBatch,
    /// Any other path: denied unless policy allows pass-through.
    Other {
        /// `METHOD /path`, the endpoint resource id.
        endpoint: String,
    },
}

impl Route {
    /// Routes a method and path (without query).
    pub fn of(method: &Method, path: &str) -> Self {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match (method, segments.as_slice()) {
            (&Method::POST, ["v1", "messages"]) => Self::Messages,
            (&Method::POST, ["v1", "messages", "count_tokens"]) => Self::CountTokens,
            (&Method::GET, ["v1", "models"]) => Self::ListModels,
            (&Method::GET, ["v1", "models", id]) if !id.is_empty() => {
                Self::GetModel((*id).to_owned())
            }
            (&Method::POST, ["v1", "messages", "batches"]) => Self::CreateBatch,
            (&Method::GET, ["v1", "messages", "batches"])
            | (&Method::GET, ["v1", "messages", "batches", _])
            | (&Method::GET, ["v1", "messages", "batches", _, "results"]) => Self::ReadBatch,
            (&Method::POST, ["v1", "messages", "batches", _, "cancel"])
            | (&Method::DELETE, ["v1", "messages", "batches", _]) => Self::CancelBatch,
            _ => Self::Other {
                endpoint: format!("{method} {path}"),
            },
        }
    }

    /// The governed action.
    pub fn action(&self) -> Action {
        match self {
            Self::Messages => Action::CreateMessage,
            Self::CountTokens => Action::CountTokens,
            Self::ListModels => Action::ListModels,
            Self::GetModel(_) => Action::GetModel,
            Self::CreateBatch => Action::CreateBatch,
            Self::ReadBatch => Action::ReadBatch,
            Self::CancelBatch => Action::CancelBatch,
            Self::Other { .. } => Action::Passthrough,
        }
    }

    /// Whether the request body carries message parameters.
    pub fn has_message_params(&self) -> bool {
        matches!(self, Self::Messages | Self::CountTokens)
    }
}

/// Why a request could not be described.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescribeError {
    /// The body is not a valid request for its endpoint.
    #[error(transparent)]
    Params(#[from] ParamsError),
}

/// The `anthropic-beta` values of a request (comma-separated, possibly repeated).
pub fn betas(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Describes one request as a governed call.
pub fn describe(
    route: &Route,
    headers: &HeaderMap,
    body: &[u8],
    subject: Subject,
    client_ip: Option<IpAddr>,
) -> Result<Call, DescribeError> {
    let workspace = subject.workspace.as_str().to_owned();
    let mut attributes = Attributes {
        client_ip,
        betas: betas(headers),
        ..Attributes::default()
    };
    let resource = match route {
        Route::Messages | Route::CountTokens => {
            let params = MessageParams::parse(body)?;
            attributes.max_tokens = params.max_tokens;
            attributes.stream = Some(params.stream.unwrap_or(false));
            attributes
                .extra
                .insert("tool_count".into(), params.tools.len().into());
            if !params.tools.is_empty() {
                let names: Vec<_> = params.tools.iter().map(|t| t.name.clone()).collect();
                attributes.extra.insert("tools".into(), names.into());
            }
            if let Some(thinking) = &params.thinking
                && thinking.kind == "enabled"
            {
                attributes.extra.insert(
                    "thinking_budget_tokens".into(),
                    thinking.budget_tokens.unwrap_or(0).into(),
                );
            }
            attributes.model = Some(params.model.clone());
            Resource::model(params.model)
        }
        Route::GetModel(id) => {
            attributes.model = Some(id.clone());
            Resource::model(id.clone())
        }
        Route::CreateBatch => {
            // What each request may cost, for the budgets reserved at creation.
            let params: BatchParams = serde_json::from_slice(body).map_err(ParamsError::Json)?;
            let requests: Vec<serde_json::Value> = params
                .requests
                .iter()
                .map(|r| {
                    serde_json::json!({"model": r.params.model,
                                       "max_tokens": r.params.max_tokens.unwrap_or(0)})
                })
                .collect();
            attributes
                .extra
                .insert(BATCH_REQUESTS_ATTRIBUTE.into(), requests.into());
            Resource::workspace(workspace)
        }
        Route::ListModels | Route::ReadBatch | Route::CancelBatch => Resource::workspace(workspace),
        Route::Other { endpoint } => Resource::new(ResourceKind::Endpoint, endpoint.clone(), None),
    };
    Ok(Call::new(subject, route.action(), resource).with_attributes(attributes))
}

#[cfg(test)]
mod tests {
    use fortress_core::subject::WorkspaceId;

    use super::*;

    fn subject() -> Subject {
        Subject::user("alice", WorkspaceId::new("acme"))
    }

    #[test]
    fn routes_cover_the_api_surface() {
        let cases = [
            (Method::POST, "/v1/messages", Action::CreateMessage),
            (
                Method::POST,
                "/v1/messages/count_tokens",
                Action::CountTokens,
            ),
            (Method::GET, "/v1/models", Action::ListModels),
            (Method::GET, "/v1/models/claude-x", Action::GetModel),
            (Method::POST, "/v1/messages/batches", Action::CreateBatch),
            (Method::GET, "/v1/messages/batches", Action::ReadBatch),
            (Method::GET, "/v1/messages/batches/b1", Action::ReadBatch),
            (
                Method::GET,
                "/v1/messages/batches/b1/results",
                Action::ReadBatch,
            ),
            (
                Method::POST,
                "/v1/messages/batches/b1/cancel",
                Action::CancelBatch,
            ),
            (
                Method::DELETE,
                "/v1/messages/batches/b1",
                Action::CancelBatch,
            ),
            (Method::GET, "/v1/files", Action::Passthrough),
            (Method::GET, "/v1/messages", Action::Passthrough),
        ];
        for (method, path, action) in cases {
            assert_eq!(Route::of(&method, path).action(), action, "{method} {path}");
        }
    }

    #[test]
    fn message_attributes_are_described() {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-beta", "a-1, b-2".parse().unwrap());
        let body = br#"{"model":"claude-x","max_tokens":100,"stream":true,
            "tools":[{"name":"search"}],"thinking":{"type":"enabled","budget_tokens":2048},
            "messages":[{"role":"user","content":"hi"}]}"#;
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let call = describe(&Route::Messages, &headers, body, subject(), Some(ip)).unwrap();
        assert_eq!(call.resource, Resource::model("claude-x"));
        assert_eq!(call.attributes.max_tokens, Some(100));
        assert_eq!(call.attributes.stream, Some(true));
        assert_eq!(call.attributes.betas, vec!["a-1", "b-2"]);
        assert_eq!(call.attributes.client_ip, Some(ip));
        assert_eq!(call.attributes.extra["tool_count"], 1);
        assert_eq!(call.attributes.extra["thinking_budget_tokens"], 2048);
    }

    #[test]
    fn bad_bodies_are_refused_and_other_paths_are_endpoints() {
        let err = describe(&Route::Messages, &HeaderMap::new(), b"{", subject(), None);
        assert!(err.is_err());
        let route = Route::of(&Method::GET, "/v1/files");
        let call = describe(&route, &HeaderMap::new(), b"", subject(), None).unwrap();
        assert_eq!(call.resource.kind, ResourceKind::Endpoint);
        assert_eq!(call.resource.id, "GET /v1/files");
    }
}
