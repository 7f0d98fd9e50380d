//! The era-neutral JSON-RPC 2.0 message model, with strict parsing.
//!
//! Every message Fortress relays — from clients of either protocol era, from upstreams of
//! either era, over HTTP, SSE or stdio — is parsed into [`Message`] here, once. Parsing is
//! strict where the MCP base protocol is strict (`jsonrpc` must be `"2.0"`, request ids are
//! strings or integers and never `null`, `params` is an object) and never panics: bad input
//! becomes an [`ErrorObject`] with the JSON-RPC code the specification asks for.
//!
//! ```
//! use fortress_mcp::jsonrpc::{parse, Incoming, Message, PARSE_ERROR};
//!
//! let Ok(Incoming::Single(Message::Request(req))) =
//!     parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)
//! else { panic!() };
//! assert_eq!(req.method, "tools/list");
//! assert_eq!(parse(b"{oops").unwrap_err().code, PARSE_ERROR);
//! ```

use std::fmt;

use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2026-07-28: HTTP headers do not match the body, or required headers are missing.
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28: the request needs a client capability the client did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// MCP 2026-07-28: the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// Implementation-defined (legacy sub-range, as the SDKs use it): the request timed out or its
/// upstream failed.
pub const UPSTREAM_ERROR: i64 = -32001;

/// A JSON-RPC request id: a string or an integer (MCP forbids `null`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl Id {
    /// The id as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Number(n) => Value::from(*n),
            Self::String(s) => Value::from(s.clone()),
        }
    }

    /// Reads an id from JSON (a string or an integer).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Number),
            _ => None,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(s),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Additional information.
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attaches `data`.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `-32700 Parse error`.
    pub fn parse_error(detail: impl fmt::Display) -> Self {
        Self::new(PARSE_ERROR, format!("Parse error: {detail}"))
    }

    /// `-32600 Invalid Request`.
    pub fn invalid_request(detail: impl fmt::Display) -> Self {
        Self::new(INVALID_REQUEST, format!("Invalid Request: {detail}"))
    }

    /// `-32601 Method not found`.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    /// `-32602 Invalid params`.
    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        Self::new(INVALID_PARAMS, format!("Invalid params: {detail}"))
    }

    /// `-32603 Internal error`.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(INTERNAL_ERROR, format!("Internal error: {detail}"))
    }

    /// The MCP `UnsupportedProtocolVersion` error, listing what is supported.
    pub fn unsupported_version(requested: &str, supported: &[&str]) -> Self {
        Self::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
            .with_data(json!({ "supported": supported, "requested": requested }))
    }

    /// The MCP `HeaderMismatch` error.
    pub fn header_mismatch(detail: impl fmt::Display) -> Self {
        Self::new(HEADER_MISMATCH, format!("Header mismatch: {detail}"))
    }

    /// The error as JSON.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("code".into(), Value::from(self.code));
        map.insert("message".into(), Value::from(self.message.clone()));
        if let Some(data) = &self.data {
            map.insert("data".into(), data.clone());
        }
        Value::Object(map)
    }

    fn from_value(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let code = obj.get("code")?.as_i64()?;
        let message = obj.get("message")?.as_str()?.to_owned();
        Some(Self {
            code,
            message,
            data: obj.get("data").cloned(),
        })
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ErrorObject {}

/// A request: expects a response.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The id the sender chose.
    pub id: Id,
    /// The method.
    pub method: String,
    /// The parameters (an object), if any.
    pub params: Option<Map<String, Value>>,
}

impl Request {
    /// A request.
    pub fn new(id: Id, method: impl Into<String>, params: Option<Map<String, Value>>) -> Self {
        Self {
            id,
            method: method.into(),
            params,
        }
    }

    /// A parameter by name.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.as_ref()?.get(name)
    }

    /// A string parameter by name.
    pub fn str_param(&self, name: &str) -> Option<&str> {
        self.param(name)?.as_str()
    }

    /// `params._meta`, if present.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.param("_meta")?.as_object()
    }

    /// Mutable `params._meta`, created when absent.
    pub fn meta_mut(&mut self) -> &mut Map<String, Value> {
        let params = self.params.get_or_insert_with(Map::new);
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        match meta {
            Value::Object(map) => map,
            _ => unreachable!("`_meta` was just made an object"),
        }
    }
}

/// A notification: expects no response.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The method.
    pub method: String,
    /// The parameters (an object), if any.
    pub params: Option<Map<String, Value>>,
}

impl Notification {
    /// A notification.
    pub fn new(method: impl Into<String>, params: Option<Map<String, Value>>) -> Self {
        Self {
            method: method.into(),
            params,
        }
    }
}

/// A response: a result or an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The id of the request answered (`None` when it could not be read).
    pub id: Option<Id>,
    /// The result or the error.
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful response.
    pub fn result(id: Id, result: Value) -> Self {
        Self {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Self {
            id,
            outcome: Err(error),
        }
    }
}

/// Any JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

impl Message {
    /// The message as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The message as compact JSON bytes, serialized straight from the borrowed message.
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.to_vec())
    }

    /// The message as compact JSON, appended to a fresh buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing maps of strings and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads one message from a JSON value.
    pub fn from_value(value: &Value) -> Result<Self, ErrorObject> {
        Self::from_owned(value.clone())
    }

    /// Reads one message from a JSON value it takes apart (no copy of params or results).
    pub fn from_owned(value: Value) -> Result<Self, ErrorObject> {
        let Value::Object(mut obj) = value else {
            return Err(ErrorObject::invalid_request(
                "a message must be a JSON object",
            ));
        };
        match obj.get("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            _ => return Err(ErrorObject::invalid_request("\"jsonrpc\" must be \"2.0\"")),
        }
        let params = match obj.remove("params") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(ErrorObject::invalid_request("\"params\" must be an object")),
        };
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(ErrorObject::invalid_request("\"method\" must be a string"));
            };
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(ErrorObject::invalid_request(
                    "a request cannot carry \"result\" or \"error\"",
                ));
            }
            return match obj.get("id") {
                None => Ok(Self::Notification(Notification::new(method, params))),
                Some(id) => match Id::from_value(id) {
                    Some(id) => Ok(Self::Request(Request::new(id, method, params))),
                    None => Err(ErrorObject::invalid_request(
                        "\"id\" must be a string or an integer",
                    )),
                },
            };
        }
        let id = match obj.get("id") {
            None | Some(Value::Null) => None,
            Some(id) => Some(Id::from_value(id).ok_or_else(|| {
                ErrorObject::invalid_request("\"id\" must be a string or an integer")
            })?),
        };
        match (obj.remove("result"), obj.remove("error")) {
            (Some(result), None) => match id {
                Some(id) => Ok(Self::Response(Response::result(id, result))),
                None => Err(ErrorObject::invalid_request("a result needs an \"id\"")),
            },
            (None, Some(error)) => match ErrorObject::from_value(&error) {
                Some(error) => Ok(Self::Response(Response::error(id, error))),
                None => Err(ErrorObject::invalid_request(
                    "\"error\" needs an integer \"code\" and a string \"message\"",
                )),
            },
            _ => Err(ErrorObject::invalid_request(
                "a message needs \"method\", \"result\" or \"error\"",
            )),
        }
    }

    /// The id, for requests and responses.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Self::Request(r) => Some(&r.id),
            Self::Response(r) => r.id.as_ref(),
            Self::Notification(_) => None,
        }
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => serializer.serialize_i64(*n),
            Self::String(s) => serializer.serialize_str(s),
        }
    }
}

impl serde::Serialize for ErrorObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("message", &self.message)?;
        if let Some(data) = &self.data {
            map.serialize_entry("data", data)?;
        }
        map.end()
    }
}

/// Serializes from borrowed parts: relaying a message never copies its params or result.
impl serde::Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Self::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Self::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Self::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                match &r.outcome {
                    Ok(result) => map.serialize_entry("result", result)?,
                    Err(error) => map.serialize_entry("error", error)?,
                }
            }
        }
        map.end()
    }
}

/// What one body held: a single message or a batch (legacy eras up to 2025-03-26 allow
/// batches; each element parses on its own).
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// One message.
    Single(Message),
    /// A JSON array of messages; invalid elements are kept as their error, with the id when
    /// it could be read.
    Batch(Vec<Result<Message, Box<BatchError>>>),
}

/// An invalid element of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchError {
    /// The element's id, when it could be read.
    pub id: Option<Id>,
    /// Why it is invalid.
    pub error: ErrorObject,
}

/// Parses one body. Malformed JSON gives `-32700`; a value that is not a message, or an
/// empty batch, gives `-32600`.
pub fn parse(bytes: &[u8]) -> Result<Incoming, ErrorObject> {
    let value: Value = serde_json::from_slice(bytes).map_err(ErrorObject::parse_error)?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ErrorObject::invalid_request("empty batch"));
            }
            Ok(Incoming::Batch(
                items
                    .iter()
                    .map(|item| {
                        Message::from_value(item).map_err(|error| {
                            let id = item.get("id").and_then(Id::from_value);
                            Box::new(BatchError { id, error })
                        })
                    })
                    .collect(),
            ))
        }
        value => Message::from_owned(value).map(Incoming::Single),
    }
}

/// Parses one message (a line of stdio, one SSE event); batches are refused.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ErrorObject> {
    match parse(bytes)? {
        Incoming::Single(m) => Ok(m),
        Incoming::Batch(_) => Err(ErrorObject::invalid_request("batches are not allowed here")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Message {
        match parse(text.as_bytes()) {
            Ok(Incoming::Single(m)) => m,
            other => panic!("expected one message, got {other:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_responses_round_trip() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"no","data":[1]}}"#,
        ] {
            let m = single(text);
            let back: Value = serde_json::from_str(text).unwrap();
            assert_eq!(m.to_value(), back);
        }
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        for text in ["", "{", "nul", "{\"jsonrpc\":\"2.0\",}"] {
            assert_eq!(
                parse(text.as_bytes()).unwrap_err().code,
                PARSE_ERROR,
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_requests_are_refused_with_32600() {
        for text in [
            "42",
            "\"x\"",
            "[]",
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
        ] {
            assert_eq!(
                parse(text.as_bytes()).unwrap_err().code,
                INVALID_REQUEST,
                "{text}"
            );
        }
    }

    #[test]
    fn batches_keep_each_element_outcome() {
        let Ok(Incoming::Batch(items)) =
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"id":2,"method":"x"}]"#)
        else {
            panic!("expected a batch");
        };
        assert!(items[0].is_ok());
        let invalid = items[1].clone().unwrap_err();
        assert_eq!(invalid.id, Some(Id::Number(2)));
        assert_eq!(invalid.error.code, INVALID_REQUEST);
        assert!(parse_message(br#"[{"jsonrpc":"2.0","method":"x"}]"#).is_err());
    }

    #[test]
    fn error_responses_without_id_are_accepted() {
        let m = single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#);
        assert!(matches!(
            m,
            Message::Response(Response {
                id: None,
                outcome: Err(_)
            })
        ));
    }

    #[test]
    fn unsupported_version_lists_supported() {
        let e = ErrorObject::unsupported_version("1900-01-01", &["2026-07-28", "2025-11-25"]);
        assert_eq!(e.code, -32022);
        assert_eq!(e.data.unwrap()["supported"][1], "2025-11-25");
    }

    #[test]
    fn meta_mut_creates_and_repairs_meta() {
        let mut r = Request::new(Id::Number(1), "x", None);
        r.meta_mut().insert("k".into(), Value::from(1));
        assert_eq!(r.meta().unwrap()["k"], 1);
        let mut map = Map::new();
        map.insert("_meta".into(), Value::from(3));
        let mut r = Request::new(Id::Number(1), "x", Some(map));
        r.meta_mut().insert("k".into(), Value::from(2));
        assert_eq!(r.meta().unwrap()["k"], 2);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"{}[]\":,0123 abcjsonrpcidmethod\\"[(seed % 31) as usize]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
