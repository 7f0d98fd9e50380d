//! The few Claude API shapes governance needs. Everything else in a request or response
//! passes through untouched as raw JSON.
//!
//! ```
//! use fortress_pat::api::MessageParams;
//!
//! let params = MessageParams::parse(br#"{"model":"claude-x","max_tokens":64,"messages":[]}"#).unwrap();
//! assert_eq!(params.model, "claude-x");
//! assert_eq!(params.max_tokens, Some(64));
//! ```

use serde::{Deserialize, Serialize};

/// The governance-relevant fields of a `POST /v1/messages` (or count_tokens) body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct MessageParams {
    /// The model requested.
    pub model: String,
    /// The output cap (absent for count_tokens).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Whether the answer is streamed.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Tools offered to the model (only counted and named).
    #[serde(default)]
    pub tools: Vec<ToolParam>,
    /// Extended thinking settings.
    #[serde(default)]
    pub thinking: Option<ThinkingParam>,
}

/// A tool definition, reduced to its name.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ToolParam {
    /// The tool's name (server tools carry one too).
    #[serde(default)]
    pub name: String,
}

/// Extended thinking settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ThinkingParam {
    /// `enabled` or `disabled`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The thinking token budget.
    #[serde(default)]
    pub budget_tokens: Option<u64>,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// Not JSON, or a governed field has the wrong type.
    #[error("invalid request body: {0}")]
    Json(#[source] serde_json::Error),
}

impl MessageParams {
    /// Reads the governed fields of a request body.
    pub fn parse(body: &[u8]) -> Result<Self, ParamsError> {
        serde_json::from_slice(body).map_err(ParamsError::Json)
    }
}

/// The request list of a `POST /v1/messages/batches` body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BatchParams {
    /// One entry per message request.
    pub requests: Vec<BatchRequest>,
}

/// One request inside a batch.
#[derive(Clone, Debug, Deserialize)]
pub struct BatchRequest {
    /// The caller's id for this request.
    pub custom_id: String,
    /// The message parameters.
    pub params: MessageParams,
}

/// Token usage as the API reports it. `message_delta` usage is cumulative, so the last
/// report wins field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Applies a (cumulative) usage report: fields present in `report` replace ours.
    pub fn apply(&mut self, report: &serde_json::Value) {
        let field = |name: &str| report.get(name).and_then(serde_json::Value::as_u64);
        if let Some(n) = field("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = field("output_tokens") {
            self.output_tokens = n;
        }
        if let Some(n) = field("cache_creation_input_tokens") {
            self.cache_creation_input_tokens = n;
        }
        if let Some(n) = field("cache_read_input_tokens") {
            self.cache_read_input_tokens = n;
        }
    }

    /// All input tokens, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_types_checked() {
        let p = MessageParams::parse(
            br#"{"model":"m","max_tokens":5,"stream":true,"tools":[{"name":"t","input_schema":{}}],
                "thinking":{"type":"enabled","budget_tokens":1024},"metadata":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(p.tools.len(), 1);
        assert_eq!(p.thinking.unwrap().budget_tokens, Some(1024));
        assert!(MessageParams::parse(br#"{"model":5}"#).is_err());
        assert!(MessageParams::parse(b"not json").is_err());
    }

    #[test]
    fn cumulative_usage_replaces_fields() {
        let mut u = Usage::default();
        u.apply(&serde_json::json!({"input_tokens": 10, "output_tokens": 1}));
        u.apply(&serde_json::json!({"output_tokens": 7}));
        u.apply(&serde_json::json!({"output_tokens": 15}));
        assert_eq!(u.input_tokens, 10);
        assert_eq!(u.output_tokens, 15);
    }
}
