//! Templates: `{name}` placeholders in paths, query values, bodies and settings.
//!
//! A template is parsed once, when the definition loads, into literal text and placeholders
//! (`{{` and `}}` stand for literal braces). Rendering is a single pass: a value substituted
//! for a placeholder is never scanned again, so an argument such as `"{secret}"` stays that
//! text and cannot inject a placeholder, a path segment, a query parameter or JSON structure.
//!
//! - [`Template::render_path`] percent-encodes each value as one path segment
//!   (`/`, `?`, `#`, `%` and everything outside RFC 3986's unreserved set) and refuses
//!   values that would form `.` or `..` segments.
//! - [`Template::render_text`] produces plain text (query values are encoded later, as a
//!   whole, by the HTTP client's form encoding).
//! - [`BodyTemplate`] renders a JSON body: a string that is exactly one placeholder takes the
//!   argument's JSON value (number, boolean, object…), other strings are interpolated, and
//!   members whose placeholders have no value are left out.
//!
//! ```
//! use fortress_mcp::connector::template::Template;
//! use serde_json::json;
//!
//! let path = Template::parse("/api/v2/tickets/{id}.json").unwrap();
//! let args = json!({"id": "1/../../admin"});
//! let rendered = path.render_path(&|n| args.get(n).cloned()).unwrap();
//! assert_eq!(rendered, "/api/v2/tickets/1%2F..%2F..%2Fadmin.json");
//! ```

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

/// Bytes left as they are in a path segment: RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A template that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template could not be rendered with the given values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A placeholder has no value (an absent optional argument without default).
    #[error("no value for {{{0}}}")]
    Missing(String),
    /// A value cannot be written as text (an object, or an array of non-scalars).
    #[error("argument {0:?} cannot be written as text")]
    NotText(String),
    /// A value would form an empty, `.` or `..` path segment.
    #[error("argument {0:?} is not a valid path segment")]
    BadSegment(String),
}

/// Looks a placeholder's value up.
pub type Lookup<'a> = dyn Fn(&str) -> Option<Value> + 'a;

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(TemplateError(format!(
                                    "unclosed placeholder in {text:?}"
                                )));
                            }
                        }
                    }
                    if !valid_name(&name) {
                        return Err(TemplateError(format!(
                            "invalid placeholder {{{name}}} in {text:?} (names are letters, digits and _)"
                        )));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(name));
                }
                '}' => {
                    return Err(TemplateError(format!(
                        "unmatched '}}' in {text:?} (write '}}}}' for a literal brace)"
                    )));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// The placeholder names, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The literal text between placeholders.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Text(text) => Some(text.as_str()),
            Piece::Placeholder(_) => None,
        })
    }

    /// The one placeholder this template consists of, if that is all it is.
    pub fn sole_placeholder(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Placeholder(name)] => Some(name),
            _ => None,
        }
    }

    /// Whether every placeholder has a value.
    pub fn complete(&self, lookup: &Lookup<'_>) -> bool {
        self.placeholders().all(|name| lookup(name).is_some())
    }

    /// Renders as plain text.
    pub fn render_text(&self, lookup: &Lookup<'_>) -> Result<String, RenderError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Placeholder(name) => out.push_str(&text_of(name, lookup)?),
            }
        }
        Ok(out)
    }

    /// Renders as a URL path: every value is percent-encoded as (part of) one segment.
    pub fn render_path(&self, lookup: &Lookup<'_>) -> Result<String, RenderError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Placeholder(name) => {
                    let value = text_of(name, lookup)?;
                    if value.is_empty() {
                        return Err(RenderError::BadSegment(name.clone()));
                    }
                    out.extend(utf8_percent_encode(&value, SEGMENT));
                }
            }
        }
        // A value may still form a dot segment on its own (`.` and `..` are unreserved).
        if out.split('/').skip(1).any(|s| s == "." || s == "..") || out.contains("//") {
            let culprit = self.placeholders().next().unwrap_or_default().to_owned();
            return Err(RenderError::BadSegment(culprit));
        }
        Ok(out)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value as text: strings as they are, numbers and booleans in JSON form, arrays of
/// scalars joined with commas (as `fields=Id,Name`).
fn text_of(name: &str, lookup: &Lookup<'_>) -> Result<String, RenderError> {
    let value = lookup(name).ok_or_else(|| RenderError::Missing(name.to_owned()))?;
    scalar_text(&value)
        .or_else(|| match &value {
            Value::Array(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join(",")),
            _ => None,
        })
        .ok_or_else(|| RenderError::NotText(name.to_owned()))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON body template.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    /// A string: one placeholder (typed substitution) or interpolated text.
    Text(Template),
    /// An object; members without values are left out.
    Object(Vec<(String, BodyTemplate)>),
    /// An array; elements without values are left out.
    Array(Vec<BodyTemplate>),
    /// A literal number, boolean or null.
    Literal(Value),
}

impl BodyTemplate {
    /// Parses a JSON value whose strings are templates.
    pub fn parse(value: &Value) -> Result<Self, TemplateError> {
        Ok(match value {
            Value::String(s) => Self::Text(Template::parse(s)?),
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), Self::parse(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            Value::Array(items) => {
                Self::Array(items.iter().map(Self::parse).collect::<Result<_, _>>()?)
            }
            other => Self::Literal(other.clone()),
        })
    }

    /// Every placeholder in the body.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Text(t) => out.extend(t.placeholders()),
            Self::Object(members) => members.iter().for_each(|(_, v)| v.collect(out)),
            Self::Array(items) => items.iter().for_each(|v| v.collect(out)),
            Self::Literal(_) => {}
        }
    }

    /// Renders the body; `None` when nothing in it has a value.
    pub fn render(&self, lookup: &Lookup<'_>) -> Result<Option<Value>, RenderError> {
        match self {
            Self::Literal(v) => Ok(Some(v.clone())),
            Self::Text(t) => match t.sole_placeholder() {
                Some(name) => Ok(lookup(name)),
                None if t.complete(lookup) => t.render_text(lookup).map(|s| Some(Value::from(s))),
                None => Ok(None),
            },
            Self::Object(members) => {
                let mut map = Map::new();
                let mut had_template = false;
                for (key, member) in members {
                    had_template |= !matches!(member, Self::Literal(_));
                    if let Some(value) = member.render(lookup)? {
                        map.insert(key.clone(), value);
                    }
                }
                // An object built only from absent arguments disappears with them.
                let only_literals = map.values().count()
                    == members
                        .iter()
                        .filter(|(_, m)| matches!(m, Self::Literal(_)))
                        .count();
                if had_template && only_literals {
                    Ok(None)
                } else {
                    Ok(Some(Value::Object(map)))
                }
            }
            Self::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(value) = item.render(lookup)? {
                        out.push(value);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(args: &Value) -> impl Fn(&str) -> Option<Value> + '_ {
        move |name| args.get(name).filter(|v| !v.is_null()).cloned()
    }

    #[test]
    fn parses_placeholders_and_escaped_braces() {
        let t = Template::parse("a{{b}}{c}d").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["c"]);
        assert_eq!(t.render_text(&lookup(&json!({"c": 1}))).unwrap(), "a{b}1d");
        for bad in ["{", "{a", "}", "{}", "{a-b}", "{1a}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_never_rescanned() {
        let t = Template::parse("q={q}").unwrap();
        let out = t
            .render_text(&lookup(&json!({"q": "{secret}", "secret": "x"})))
            .unwrap();
        assert_eq!(out, "q={secret}");
    }

    #[test]
    fn path_values_are_one_encoded_segment() {
        let t = Template::parse("/sobjects/{type}/{id}").unwrap();
        let out = t
            .render_path(&lookup(&json!({"type": "Account", "id": "a b?c#d%/e"})))
            .unwrap();
        assert_eq!(out, "/sobjects/Account/a%20b%3Fc%23d%25%2Fe");
        for dots in [".", ".."] {
            let err = t
                .render_path(&lookup(&json!({"type": dots, "id": "1"})))
                .unwrap_err();
            assert!(matches!(err, RenderError::BadSegment(_)));
        }
        let err = t
            .render_path(&lookup(&json!({"type": "", "id": "1"})))
            .unwrap_err();
        assert!(matches!(err, RenderError::BadSegment(_)));
        assert_eq!(
            t.render_path(&lookup(&json!({"type": "A"}))).unwrap_err(),
            RenderError::Missing("id".into())
        );
    }

    #[test]
    fn arrays_of_scalars_join_and_objects_are_not_text() {
        let t = Template::parse("{f}").unwrap();
        assert_eq!(
            t.render_text(&lookup(&json!({"f": ["Id", "Name"]})))
                .unwrap(),
            "Id,Name"
        );
        assert!(matches!(
            t.render_text(&lookup(&json!({"f": {"a": 1}}))),
            Err(RenderError::NotText(_))
        ));
    }

    #[test]
    fn body_substitutes_typed_values_and_drops_absent_members() {
        let body = BodyTemplate::parse(&json!({
            "ticket": {
                "status": "{status}",
                "comment": {"body": "{comment}", "public": "{public}"},
                "subject": "Re: {subject}",
                "kind": "fixed"
            }
        }))
        .unwrap();
        let out = body
            .render(&lookup(
                &json!({"status": "solved", "public": false, "comment": "{status}\"}"}),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            json!({"ticket": {"status": "solved", "comment": {"body": "{status}\"}", "public": false}, "kind": "fixed"}})
        );
        let out = body
            .render(&lookup(&json!({"status": "open"})))
            .unwrap()
            .unwrap();
        assert_eq!(out, json!({"ticket": {"status": "open", "kind": "fixed"}}));
        let whole = BodyTemplate::parse(&json!("{fields}")).unwrap();
        assert_eq!(
            whole
                .render(&lookup(&json!({"fields": {"Name": "x"}})))
                .unwrap(),
            Some(json!({"Name": "x"}))
        );
        assert_eq!(
            body.placeholders(),
            ["status", "comment", "public", "subject"]
        );
    }
}
