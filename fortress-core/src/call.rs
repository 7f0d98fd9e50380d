//! The protocol-neutral description of one governed call.
//!
//! Protocol crates describe each call once — who ([`Subject`]), what ([`Action`]), on what
//! ([`Resource`]), with which [`Attributes`] — and attach it to the request as an
//! `Arc<Call>` extension. Every core layer reads that description and knows nothing of
//! MCP or HTTP paths.
//!
//! ```
//! use std::sync::Arc;
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let call = Call::new(
//!     Subject::user("alice", WorkspaceId::new("acme")),
//!     Action::CallTool,
//!     Resource::tool("zendesk", "search_tickets"),
//! );
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(Arc::new(call));
//! assert!(fortress_core::call::call_of(&req).is_some());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::subject::Subject;

/// A unique identifier for one governed call, carried into audit events and upstream logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh, time-ordered identifier.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Uses an identifier given by the protocol (for example an upstream `request-id`).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the caller wants to do. Names match the actions of the Cedar schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[non_exhaustive]
pub enum Action {
    /// MCP `tools/list`.
    ListTools,
    /// MCP `tools/call`.
    CallTool,
    /// MCP `resources/list` (and templates).
    ListResources,
    /// MCP `resources/read`.
    ReadResource,
    /// MCP `prompts/list`.
    ListPrompts,
    /// MCP `prompts/get`.
    GetPrompt,
    /// Claude `POST /v1/messages`.
    CreateMessage,
    /// Claude `POST /v1/messages/count_tokens`.
    CountTokens,
    /// Claude `GET /v1/models`.
    ListModels,
    /// Claude `GET /v1/models/{id}`.
    GetModel,
    /// Claude Message Batches: create.
    CreateBatch,
    /// Claude Message Batches: read, list, results.
    ReadBatch,
    /// Claude Message Batches: cancel or delete.
    CancelBatch,
    /// Any other upstream path, denied unless policy allows pass-through.
    Passthrough,
    /// An action defined by an embedding application.
    Custom(String),
}

impl Action {
    /// The action's policy name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ListTools => "tools/list",
            Self::CallTool => "tools/call",
            Self::ListResources => "resources/list",
            Self::ReadResource => "resources/read",
            Self::ListPrompts => "prompts/list",
            Self::GetPrompt => "prompts/get",
            Self::CreateMessage => "messages/create",
            Self::CountTokens => "messages/count_tokens",
            Self::ListModels => "models/list",
            Self::GetModel => "models/get",
            Self::CreateBatch => "batches/create",
            Self::ReadBatch => "batches/read",
            Self::CancelBatch => "batches/cancel",
            Self::Passthrough => "passthrough",
            Self::Custom(name) => name,
        }
    }

    /// Every built-in action, for schemas and documentation.
    pub const BUILT_IN: [Action; 14] = [
        Self::ListTools,
        Self::CallTool,
        Self::ListResources,
        Self::ReadResource,
        Self::ListPrompts,
        Self::GetPrompt,
        Self::CreateMessage,
        Self::CountTokens,
        Self::ListModels,
        Self::GetModel,
        Self::CreateBatch,
        Self::ReadBatch,
        Self::CancelBatch,
        Self::Passthrough,
    ];
}

impl From<String> for Action {
    fn from(value: String) -> Self {
        Self::BUILT_IN
            .iter()
            .find(|a| a.as_str() == value)
            .cloned()
            .unwrap_or(Self::Custom(value))
    }
}

impl From<Action> for String {
    fn from(value: Action) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of thing a call acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// A whole workspace (list operations).
    Workspace,
    /// A connector: an upstream MCP server or a REST connector.
    Connector,
    /// An MCP tool.
    Tool,
    /// An MCP resource.
    Resource,
    /// An MCP prompt.
    Prompt,
    /// A Claude model.
    Model,
    /// A raw upstream endpoint (pass-through).
    Endpoint,
}

impl ResourceKind {
    /// The kind's policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Connector => "connector",
            Self::Tool => "tool",
            Self::Resource => "resource",
            Self::Prompt => "prompt",
            Self::Model => "model",
            Self::Endpoint => "endpoint",
        }
    }
}

/// What a call acts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// The kind of resource.
    pub kind: ResourceKind,
    /// Its identifier within its connector (tool name, resource URI, model id, …).
    pub id: String,
    /// The connector (upstream) it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

impl Resource {
    /// A resource of any kind.
    pub fn new(kind: ResourceKind, id: impl Into<String>, connector: Option<String>) -> Self {
        Self {
            kind,
            id: id.into(),
            connector,
        }
    }

    /// An MCP tool of a connector.
    pub fn tool(connector: impl Into<String>, tool: impl Into<String>) -> Self {
        Self::new(ResourceKind::Tool, tool, Some(connector.into()))
    }

    /// A Claude model.
    pub fn model(model: impl Into<String>) -> Self {
        Self::new(ResourceKind::Model, model, None)
    }

    /// A connector as a whole.
    pub fn connector(connector: impl Into<String>) -> Self {
        let connector = connector.into();
        Self::new(ResourceKind::Connector, connector.clone(), Some(connector))
    }

    /// The workspace as a whole.
    pub fn workspace(workspace: impl Into<String>) -> Self {
        Self::new(ResourceKind::Workspace, workspace, None)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connector {
            Some(c) if self.kind != ResourceKind::Connector => {
                write!(f, "{}:{}/{}", self.kind.as_str(), c, self.id)
            }
            _ => write!(f, "{}:{}", self.kind.as_str(), self.id),
        }
    }
}

/// Attributes of a call that policies may condition on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// The client's IP address as seen by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// MCP tool arguments (never written to the audit trail in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_arguments: Option<serde_json::Value>,
    /// The Claude model requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The Claude `max_tokens` requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Whether the response is streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `anthropic-beta` values requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub betas: Vec<String>,
    /// Further protocol-specific attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One governed call: the unit that policy decides, audit records and redaction scopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Identifier carried into the audit trail.
    pub request_id: RequestId,
    /// Who is calling.
    pub subject: Subject,
    /// What they want to do.
    pub action: Action,
    /// What they want to do it on.
    pub resource: Resource,
    /// Conditions policies may look at.
    pub attributes: Attributes,
    /// When the gateway received the call.
    pub received_at: DateTime<Utc>,
}

impl Call {
    /// Describes a call received now, with a fresh request id and no attributes.
    pub fn new(subject: Subject, action: Action, resource: Resource) -> Self {
        Self {
            request_id: RequestId::generate(),
            subject,
            action,
            resource,
            attributes: Attributes::default(),
            received_at: Utc::now(),
        }
    }

    /// Replaces the attributes.
    #[must_use]
    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Replaces the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: RequestId) -> Self {
        self.request_id = request_id;
        self
    }

    /// The connector this call goes through, if any.
    pub fn connector(&self) -> Option<&str> {
        self.resource.connector.as_deref()
    }
}

/// The call description attached to a request, if the protocol crate attached one.
pub fn call_of<B>(request: &http::Request<B>) -> Option<&Arc<Call>> {
    request.extensions().get::<Arc<Call>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_names() {
        for action in Action::BUILT_IN {
            assert_eq!(Action::from(action.as_str().to_owned()), action);
        }
        assert_eq!(
            Action::from("export".to_owned()),
            Action::Custom("export".into())
        );
    }

    #[test]
    fn resources_display_with_connector() {
        assert_eq!(
            Resource::tool("zendesk", "search").to_string(),
            "tool:zendesk/search"
        );
        assert_eq!(Resource::model("m").to_string(), "model:m");
        assert_eq!(Resource::connector("gh").to_string(), "connector:gh");
    }
}
