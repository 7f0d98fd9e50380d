//! From the SaaS's HTTP answer to an MCP tool result.
//!
//! A success becomes text content holding the selected JSON plus the same JSON as
//! `structuredContent`; an HTTP error becomes a tool result with `isError: true` whose text
//! names the status and the SaaS's own error message, so the model can see what went wrong
//! (spec 2025-11-25, Server › Tools › Error Handling: tool execution errors are results).

use serde_json::{Map, Value, json};

use super::definition::{ResponseSpec, ToolDefinition};
use super::template::Lookup;

/// Longest SaaS error text quoted in a tool result.
const MAX_ERROR_TEXT: usize = 500;

/// The tool result for a successful answer whose body is `document` (`None`: no body).
pub(crate) fn success(
    tool: &ToolDefinition,
    status: http::StatusCode,
    document: Option<Value>,
    raw: &str,
    lookup: &Lookup<'_>,
) -> Value {
    let structured = match document {
        Some(document) => select(&tool.response, &document),
        None if raw.trim().is_empty() => {
            let empty = tool
                .response
                .empty
                .as_ref()
                .and_then(|t| t.render(lookup).ok().flatten());
            match empty {
                Some(Value::Object(map)) => Value::Object(map),
                Some(other) => json!({ tool.response.wrap.as_str(): other }),
                None => json!({ "status": status.as_u16() }),
            }
        }
        // Not JSON: the text as it came.
        None => {
            return json!({
                "content": [{ "type": "text", "text": raw }],
                "isError": false,
            });
        }
    };
    json!({
        "content": [{ "type": "text", "text": structured.to_string() }],
        "structuredContent": structured,
        "isError": false,
    })
}

/// Applies `select`, `fields`, `wrap` and `include`.
fn select(spec: &ResponseSpec, document: &Value) -> Value {
    let selected = match &spec.select {
        Some(pointer) => document.pointer(pointer).cloned().unwrap_or(Value::Null),
        None => document.clone(),
    };
    let selected = match &spec.fields {
        Some(fields) => project(selected, fields),
        None => selected,
    };
    let mut object = match selected {
        Value::Object(map) => map,
        other => {
            let mut map = Map::new();
            map.insert(spec.wrap.clone(), other);
            map
        }
    };
    for (key, pointer) in &spec.include {
        if let Some(value) = document.pointer(pointer) {
            object.insert(key.clone(), value.clone());
        }
    }
    Value::Object(object)
}

/// Keeps only `fields` of an object, or of each object in an array.
fn project(value: Value, fields: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| project(v, fields)).collect())
        }
        other => other,
    }
}

/// The tool result for an HTTP error from the SaaS.
pub(crate) fn failure(
    connector: &str,
    status: http::StatusCode,
    error_pointers: &[String],
    document: Option<&Value>,
    raw: &str,
) -> Value {
    let mut message = format!(
        "{connector} answered HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned();
    let detail = document
        .map(|d| saas_message(error_pointers, d))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| truncate(raw.trim()));
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(&detail);
    }
    json!({
        "content": [{ "type": "text", "text": message }],
        "isError": true,
    })
}

/// The SaaS's own error message: the string values at the definition's pointers, in order,
/// without repeats.
fn saas_message(pointers: &[String], document: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    for pointer in pointers {
        if let Some(Value::String(s)) = document.pointer(pointer) {
            if !s.is_empty() && !parts.contains(s) {
                parts.push(s.clone());
            }
        }
    }
    truncate(&parts.join(": "))
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(select: Option<&str>, fields: Option<&[&str]>, wrap: &str) -> ResponseSpec {
        ResponseSpec {
            select: select.map(str::to_owned),
            fields: fields.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
            wrap: wrap.into(),
            include: [("count".to_owned(), "/count".to_owned())].into(),
            empty: None,
        }
    }

    #[test]
    fn selection_projects_wraps_and_includes() {
        let doc = json!({"results": [{"id": 1, "subject": "a", "raw": "x"}], "count": 1});
        let out = select(
            &spec(Some("/results"), Some(&["id", "subject"]), "tickets"),
            &doc,
        );
        assert_eq!(
            out,
            json!({"tickets": [{"id": 1, "subject": "a"}], "count": 1})
        );
        let out = select(&spec(None, None, "r"), &json!({"a": 1}));
        assert_eq!(out, json!({"a": 1}));
    }

    #[test]
    fn failures_carry_status_and_the_saas_message() {
        let pointers = vec![
            "/error".to_owned(),
            "/description".to_owned(),
            "/0/message".to_owned(),
        ];
        let out = failure(
            "zendesk",
            http::StatusCode::NOT_FOUND,
            &pointers,
            Some(&json!({"error": "RecordNotFound", "description": "Not found"})),
            "",
        );
        assert_eq!(out["isError"], true);
        assert_eq!(
            out["content"][0]["text"],
            "zendesk answered HTTP 404 Not Found: RecordNotFound: Not found"
        );
        let out = failure(
            "salesforce",
            http::StatusCode::BAD_REQUEST,
            &pointers,
            Some(&json!([{"message": "unexpected token: FORM", "errorCode": "MALFORMED_QUERY"}])),
            "",
        );
        assert_eq!(
            out["content"][0]["text"],
            "salesforce answered HTTP 400 Bad Request: unexpected token: FORM"
        );
        let long = "x".repeat(2000);
        let out = failure("s", http::StatusCode::BAD_GATEWAY, &pointers, None, &long);
        assert!(out["content"][0]["text"].as_str().unwrap().len() < 600);
    }
}
