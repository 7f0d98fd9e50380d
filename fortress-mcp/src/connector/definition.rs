//! The declarative connector format (TOML), validated when it loads.
//!
//! The format is documented in `docs/connectors.md`. Loading checks everything that can be
//! checked without calling the SaaS: every placeholder names a declared argument or setting,
//! every input schema is a valid JSON Schema for an object, path placeholders are required
//! arguments, methods are known, tool names are unique, JSON pointers are well formed. Each
//! problem is reported with the tool and field it concerns.
//!
//! ```
//! use fortress_mcp::connector::definition::Definition;
//!
//! let def = Definition::from_toml(r#"
//!     name = "notes"
//!     description = "A notes service"
//!     base_url = "https://notes.example.com"
//!     [auth]
//!     scheme = "bearer"
//!     [[tools]]
//!     name = "get_note"
//!     description = "Reads a note"
//!     method = "GET"
//!     path = "/notes/{id}"
//!     input_schema = { type = "object", required = ["id"], properties = { id = { type = "integer" } } }
//! "#).unwrap();
//! assert_eq!(def.tools()[0].name(), "get_note");
//!
//! let err = Definition::from_toml(r#"
//!     name = "notes"
//!     description = "A notes service"
//!     base_url = "https://notes.example.com"
//!     [auth]
//!     scheme = "bearer"
//!     [[tools]]
//!     name = "get_note"
//!     description = "Reads a note"
//!     method = "GET"
//!     path = "/notes/{note}"
//!     input_schema = { type = "object", required = ["id"], properties = { id = { type = "integer" } } }
//! "#).unwrap_err();
//! assert!(err.to_string().contains("unknown placeholder {note}"), "{err}");
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::template::{BodyTemplate, Template, TemplateError};

/// A definition that cannot be used, with where the problem is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// Not valid TOML for the format (unknown or missing fields, wrong types).
    #[error("connector definition is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A semantic problem.
    #[error("connector {connector:?}: {location}: {message}")]
    Invalid {
        /// The connector's name.
        connector: String,
        /// The tool and field, e.g. `tool search_tickets, query.page`.
        location: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    name: String,
    #[serde(default)]
    title: Option<String>,
    description: String,
    #[serde(default)]
    version: Option<String>,
    base_url: String,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    settings: BTreeMap<String, RawSetting>,
    auth: RawAuth,
    #[serde(default)]
    errors: RawErrors,
    #[serde(default)]
    tools: Vec<RawTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetting {
    description: String,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "scheme", rename_all = "snake_case")]
enum RawAuth {
    Bearer,
    Oauth2 {
        #[serde(default)]
        token_url: Option<String>,
    },
    Basic {
        #[serde(default)]
        username: Option<String>,
    },
    Header {
        name: String,
        #[serde(default)]
        prefix: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawErrors {
    #[serde(default)]
    message: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: String,
    #[serde(default)]
    title: Option<String>,
    description: String,
    method: String,
    path: String,
    input_schema: Value,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    response: RawResponse,
    #[serde(default)]
    pagination: Option<RawPagination>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default)]
    select: Option<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    wrap: Option<String>,
    #[serde(default)]
    include: BTreeMap<String, String>,
    #[serde(default)]
    empty: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    next: String,
    items: String,
    #[serde(default = "default_max_pages")]
    max_pages: u32,
}

fn default_max_pages() -> u32 {
    5
}

/// A connector setting (a non-secret value the operator configures, such as a subdomain).
#[derive(Debug, Clone)]
pub struct Setting {
    /// What it is.
    pub description: String,
    /// Its value when the configuration gives none.
    pub default: Option<String>,
    /// A regular expression every value must match entirely.
    pub pattern: Option<regex::Regex>,
}

/// How the credential from the vault authenticates requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Authorization: Bearer <credential>` (an API token).
    Bearer,
    /// `Authorization: Bearer <access token>`: the credential is an OAuth 2.0 access token,
    /// or, with a token endpoint, the client registration that obtains one
    /// ([`super::token`]).
    OAuth2 {
        /// The token endpoint: a template over the settings; a path (`/services/oauth2/token`)
        /// is taken relative to the base URL's origin.
        token_url: Option<Template>,
    },
    /// `Authorization: Basic base64(<username>:<credential>)`; without a username the
    /// credential is the whole `user:password` pair.
    Basic {
        /// A template over the settings, e.g. `{email}/token` (Zendesk API tokens).
        username: Option<Template>,
    },
    /// A custom header carrying `<prefix><credential>`.
    Header {
        /// The header name.
        name: http::HeaderName,
        /// Text before the credential.
        prefix: String,
    },
}

/// How a tool's JSON answer becomes the tool result.
#[derive(Debug, Clone, Default)]
pub struct ResponseSpec {
    /// A JSON pointer to the part to return (the whole document by default).
    pub select: Option<String>,
    /// Keep only these members (of the selected object, or of each object in the array).
    pub fields: Option<Vec<String>>,
    /// Key under which a selected non-object is placed (default `result`), since
    /// `structuredContent` is an object.
    pub wrap: String,
    /// Extra members taken from the whole document by JSON pointer (e.g. a total count).
    pub include: BTreeMap<String, String>,
    /// The result when the SaaS answers without a body (e.g. 204), as a body template.
    pub empty: Option<BodyTemplate>,
}

/// Following "next page" links within one tool call.
#[derive(Debug, Clone)]
pub struct Pagination {
    /// JSON pointer to the next page's URL (absent, null or empty when done).
    pub next: String,
    /// JSON pointer to each page's items, concatenated across pages.
    pub items: String,
    /// At most this many pages per call.
    pub max_pages: u32,
}

/// One tool of a connector.
pub struct ToolDefinition {
    name: String,
    title: Option<String>,
    description: String,
    /// The HTTP method.
    pub method: http::Method,
    /// The path template (relative to the base URL and path prefix).
    pub path: Template,
    input_schema: Value,
    validator: jsonschema::Validator,
    annotations: Option<Map<String, Value>>,
    /// Query parameters: name and value template (left out when a value is missing).
    pub query: Vec<(String, Template)>,
    /// The JSON body template.
    pub body: Option<BodyTemplate>,
    /// Response selection.
    pub response: ResponseSpec,
    /// Pagination, where the SaaS pages.
    pub pagination: Option<Pagination>,
}

impl std::fmt::Debug for ToolDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolDefinition")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ToolDefinition {
    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MCP `Tool` object `tools/list` returns.
    pub fn listing(&self) -> Value {
        let mut tool = json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
        });
        if let Some(title) = &self.title {
            tool["title"] = Value::from(title.clone());
        }
        if let Some(annotations) = &self.annotations {
            tool["annotations"] = Value::Object(annotations.clone());
        }
        tool
    }

    /// Checks arguments against the input schema; the messages never quote the values.
    pub fn validate(&self, arguments: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(arguments)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".into() } else { at };
                format!("{at}: {}", e.masked())
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// An argument's value, or its schema default when absent (null counts as absent).
    pub fn argument(&self, arguments: &Value, name: &str) -> Option<Value> {
        arguments
            .get(name)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| {
                self.input_schema
                    .pointer(&format!("/properties/{}", escape_pointer(name)))
                    .and_then(|p| p.get("default"))
                    .cloned()
            })
    }
}

/// A validated connector definition.
pub struct Definition {
    name: String,
    title: Option<String>,
    description: String,
    version: String,
    /// The SaaS base URL template (over the settings).
    pub base_url: Template,
    /// A path prefix template (over the settings) before every tool path.
    pub path_prefix: Template,
    /// The declared settings.
    pub settings: BTreeMap<String, Setting>,
    /// How requests authenticate.
    pub auth: AuthScheme,
    /// JSON pointers to the SaaS's error message in error bodies, tried in order.
    pub error_messages: Vec<String>,
    tools: Vec<ToolDefinition>,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const ANNOTATIONS: [&str; 5] = [
    "title",
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

impl Definition {
    /// Parses and validates a definition.
    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        let raw: RawDefinition = toml::from_str(text)?;
        Validator { name: &raw.name }.definition(&raw)
    }

    /// Reads, parses and validates a definition file.
    pub fn load(path: &std::path::Path) -> Result<Self, DefinitionError> {
        let text = std::fs::read_to_string(path).map_err(|e| DefinitionError::Invalid {
            connector: path.display().to_string(),
            location: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text)
    }

    /// The connector's own name (its default upstream name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A human title.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// What the connector reaches.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The definition's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The tools.
    pub fn tools(&self) -> &[ToolDefinition] {
        &self.tools
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&ToolDefinition> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Escapes a JSON pointer token (RFC 6901).
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Validator<'a> {
    name: &'a str,
}

impl Validator<'_> {
    fn fail<T>(
        &self,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, DefinitionError> {
        Err(DefinitionError::Invalid {
            connector: self.name.to_owned(),
            location: location.into(),
            message: message.into(),
        })
    }

    fn template(&self, location: &str, text: &str) -> Result<Template, DefinitionError> {
        Template::parse(text).or_else(|TemplateError(m)| self.fail(location, m))
    }

    fn pointer(&self, location: &str, pointer: &str) -> Result<(), DefinitionError> {
        if pointer.is_empty() || pointer.starts_with('/') {
            Ok(())
        } else {
            self.fail(
                location,
                format!("{pointer:?} is not a JSON pointer (it must start with '/')"),
            )
        }
    }

    fn known(
        &self,
        location: &str,
        names: impl IntoIterator<Item = impl AsRef<str>>,
        declared: &BTreeSet<String>,
        what: &str,
    ) -> Result<(), DefinitionError> {
        for name in names {
            let name = name.as_ref();
            if !declared.contains(name) {
                let list: Vec<&str> = declared.iter().map(String::as_str).collect();
                return self.fail(
                    location,
                    format!(
                        "unknown placeholder {{{name}}} (declared {what}: {})",
                        if list.is_empty() {
                            "none".into()
                        } else {
                            list.join(", ")
                        }
                    ),
                );
            }
        }
        Ok(())
    }

    fn definition(&self, raw: &RawDefinition) -> Result<Definition, DefinitionError> {
        if !valid_tool_name(&raw.name) {
            return self.fail("name", "must be 1-64 letters, digits, '_', '-' or '.'");
        }
        let mut settings = BTreeMap::new();
        for (name, s) in &raw.settings {
            let pattern =
                match &s.pattern {
                    Some(p) => Some(regex::Regex::new(&format!("^(?:{p})$")).or_else(|e| {
                        self.fail(format!("settings.{name}.pattern"), e.to_string())
                    })?),
                    None => None,
                };
            if let (Some(default), Some(pattern)) = (&s.default, &pattern) {
                if !pattern.is_match(default) {
                    return self.fail(
                        format!("settings.{name}.default"),
                        "does not match its pattern",
                    );
                }
            }
            settings.insert(
                name.clone(),
                Setting {
                    description: s.description.clone(),
                    default: s.default.clone(),
                    pattern,
                },
            );
        }
        let setting_names: BTreeSet<String> = settings.keys().cloned().collect();
        let base_url = self.template("base_url", &raw.base_url)?;
        self.known(
            "base_url",
            base_url.placeholders(),
            &setting_names,
            "settings",
        )?;
        let path_prefix = self.template("path_prefix", &raw.path_prefix)?;
        self.known(
            "path_prefix",
            path_prefix.placeholders(),
            &setting_names,
            "settings",
        )?;
        if !raw.path_prefix.is_empty() && !raw.path_prefix.starts_with('/') {
            return self.fail("path_prefix", "must start with '/'");
        }
        let auth = match &raw.auth {
            RawAuth::Bearer => AuthScheme::Bearer,
            RawAuth::Oauth2 { token_url } => {
                let token_url = match token_url {
                    Some(url) => {
                        let t = self.template("auth.token_url", url)?;
                        self.known(
                            "auth.token_url",
                            t.placeholders(),
                            &setting_names,
                            "settings",
                        )?;
                        Some(t)
                    }
                    None => None,
                };
                AuthScheme::OAuth2 { token_url }
            }
            RawAuth::Basic { username } => {
                let username = match username {
                    Some(u) => {
                        let t = self.template("auth.username", u)?;
                        self.known(
                            "auth.username",
                            t.placeholders(),
                            &setting_names,
                            "settings",
                        )?;
                        Some(t)
                    }
                    None => None,
                };
                AuthScheme::Basic { username }
            }
            RawAuth::Header { name, prefix } => AuthScheme::Header {
                name: http::HeaderName::from_bytes(name.as_bytes()).or_else(|_| {
                    self.fail("auth.name", format!("{name:?} is not a header name"))
                })?,
                prefix: prefix.clone(),
            },
        };
        for (i, p) in raw.errors.message.iter().enumerate() {
            self.pointer(&format!("errors.message[{i}]"), p)?;
        }
        if raw.tools.is_empty() {
            return self.fail("tools", "a connector needs at least one tool");
        }
        let mut tools: Vec<ToolDefinition> = Vec::new();
        for tool in &raw.tools {
            if tools.iter().any(|t| t.name == tool.name) {
                return self.fail(format!("tool {}", tool.name), "the name is used twice");
            }
            tools.push(self.tool(tool)?);
        }
        Ok(Definition {
            name: raw.name.clone(),
            title: raw.title.clone(),
            description: raw.description.clone(),
            version: raw.version.clone().unwrap_or_else(|| "1".into()),
            base_url,
            path_prefix,
            settings,
            auth,
            error_messages: raw.errors.message.clone(),
            tools,
        })
    }

    fn tool(&self, raw: &RawTool) -> Result<ToolDefinition, DefinitionError> {
        let at = |field: &str| format!("tool {}, {field}", raw.name);
        if !valid_tool_name(&raw.name) {
            return self.fail(at("name"), "must be 1-64 letters, digits, '_', '-' or '.'");
        }
        let method = raw.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return self.fail(
                at("method"),
                format!("{:?} is not one of {}", raw.method, METHODS.join(", ")),
            );
        }
        let method = http::Method::from_bytes(method.as_bytes())
            .or_else(|_| self.fail(at("method"), "invalid method"))?;

        // The input schema: a valid JSON Schema describing an object.
        if let Err(e) = jsonschema::meta::validate(&raw.input_schema) {
            return self.fail(at("input_schema"), format!("not a valid JSON Schema: {e}"));
        }
        if raw.input_schema.get("type") != Some(&Value::from("object")) {
            return self.fail(at("input_schema"), "must have \"type\": \"object\"");
        }
        let validator = jsonschema::validator_for(&raw.input_schema)
            .or_else(|e| self.fail(at("input_schema"), format!("not a usable JSON Schema: {e}")))?;
        let properties: BTreeSet<String> = raw
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let required: BTreeSet<String> = raw
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let has_default = |name: &str| {
            raw.input_schema
                .pointer(&format!("/properties/{}/default", escape_pointer(name)))
                .is_some()
        };

        // The path: absolute, no query or fragment, no dot segments; its placeholders are
        // arguments that always have a value.
        if !raw.path.starts_with('/') {
            return self.fail(at("path"), "must start with '/'");
        }
        let path = self.template(&at("path"), &raw.path)?;
        if path
            .literals()
            .any(|l| l.contains(['?', '#']) || l.contains("//"))
        {
            return self.fail(
                at("path"),
                "must not contain '?', '#' or '//' (use [tools.query] for parameters)",
            );
        }
        if raw.path.split('/').any(|s| s == "." || s == "..") {
            return self.fail(at("path"), "must not contain '.' or '..' segments");
        }
        self.known(&at("path"), path.placeholders(), &properties, "arguments")?;
        for name in path.placeholders() {
            if !required.contains(name) && !has_default(name) {
                return self.fail(
                    at("path"),
                    format!(
                        "placeholder {{{name}}} must be a required argument (or have a default)"
                    ),
                );
            }
        }

        let mut query = Vec::new();
        for (key, value) in &raw.query {
            let location = at(&format!("query.{key}"));
            let template = self.template(&location, value)?;
            self.known(&location, template.placeholders(), &properties, "arguments")?;
            query.push((key.clone(), template));
        }

        let body = match &raw.body {
            Some(body) => {
                if method == http::Method::GET || method == http::Method::DELETE {
                    return self.fail(at("body"), format!("a {method} request carries no body"));
                }
                let body = BodyTemplate::parse(body)
                    .or_else(|TemplateError(m)| self.fail(at("body"), m))?;
                self.known(&at("body"), body.placeholders(), &properties, "arguments")?;
                Some(body)
            }
            None => None,
        };

        if let Some(annotations) = &raw.annotations {
            for (key, value) in annotations {
                if !ANNOTATIONS.contains(&key.as_str()) {
                    return self.fail(
                        at("annotations"),
                        format!(
                            "unknown annotation {key:?} (known: {})",
                            ANNOTATIONS.join(", ")
                        ),
                    );
                }
                let ok = if key == "title" {
                    value.is_string()
                } else {
                    value.is_boolean()
                };
                if !ok {
                    return self.fail(at("annotations"), format!("{key} has the wrong type"));
                }
            }
        }

        let r = &raw.response;
        if let Some(select) = &r.select {
            self.pointer(&at("response.select"), select)?;
        }
        for (key, pointer) in &r.include {
            self.pointer(&at(&format!("response.include.{key}")), pointer)?;
        }
        let empty = match &r.empty {
            Some(value) => {
                let t = BodyTemplate::parse(value)
                    .or_else(|TemplateError(m)| self.fail(at("response.empty"), m))?;
                self.known(
                    &at("response.empty"),
                    t.placeholders(),
                    &properties,
                    "arguments",
                )?;
                Some(t)
            }
            None => None,
        };
        let response = ResponseSpec {
            select: r.select.clone().filter(|s| !s.is_empty()),
            fields: r.fields.clone(),
            wrap: r.wrap.clone().unwrap_or_else(|| "result".into()),
            include: r.include.clone(),
            empty,
        };

        let pagination = match &raw.pagination {
            Some(p) => {
                self.pointer(&at("pagination.next"), &p.next)?;
                self.pointer(&at("pagination.items"), &p.items)?;
                if p.max_pages == 0 {
                    return self.fail(at("pagination.max_pages"), "must be at least 1");
                }
                Some(Pagination {
                    next: p.next.clone(),
                    items: p.items.clone(),
                    max_pages: p.max_pages,
                })
            }
            None => None,
        };

        Ok(ToolDefinition {
            name: raw.name.clone(),
            title: raw.title.clone(),
            description: raw.description.clone(),
            method,
            path,
            input_schema: raw.input_schema.clone(),
            validator,
            annotations: raw.annotations.clone(),
            query,
            body,
            response,
            pagination,
        })
    }
}

/// MCP tool names: 1-64 characters of letters, digits, `_`, `-` and `.`.
fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
        name = "t"
        description = "test"
        base_url = "https://{host}.example.com"
        [settings.host]
        description = "host"
        pattern = "[a-z]+"
        [auth]
        scheme = "bearer"
    "#;

    fn with_tool(tool: &str) -> Result<Definition, DefinitionError> {
        Definition::from_toml(&format!("{HEAD}\n[[tools]]\n{tool}"))
    }

    const OK_TOOL: &str = r#"
        name = "get"
        description = "d"
        method = "GET"
        path = "/items/{id}"
        input_schema = { type = "object", required = ["id"], properties = { id = { type = "integer" }, q = { type = "string" } } }
        query = { q = "{q}" }
    "#;

    fn message(result: Result<Definition, DefinitionError>) -> String {
        result.map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_tool_loads() {
        let def = with_tool(OK_TOOL).unwrap();
        assert_eq!(def.tool("get").unwrap().method, http::Method::GET);
        assert_eq!(def.tools()[0].listing()["inputSchema"]["required"][0], "id");
    }

    #[test]
    fn problems_are_reported_with_their_place() {
        let cases = [
            (
                OK_TOOL.replace("{q}\"", "{qq}\""),
                "tool get, query.q: unknown placeholder {qq}",
            ),
            (
                OK_TOOL.replace("required = [\"id\"], ", ""),
                "placeholder {id} must be a required argument",
            ),
            (
                OK_TOOL.replace("\"GET\"", "\"FETCH\""),
                "\"FETCH\" is not one of",
            ),
            (
                OK_TOOL.replace("type = \"integer\" }, q", "type = \"integr\" }, q"),
                "not a valid JSON Schema",
            ),
            (
                OK_TOOL.replace("type = \"object\",", "type = \"array\","),
                "must have \"type\": \"object\"",
            ),
            (
                OK_TOOL.replace("/items/{id}", "/items/{id}?x=1"),
                "must not contain '?'",
            ),
            (OK_TOOL.replace("/items/{id}", "/../{id}"), "'..' segments"),
            (
                OK_TOOL.replace("/items/{id}", "/items/{id"),
                "unclosed placeholder",
            ),
            (
                format!("{OK_TOOL}\nbody = {{ a = \"{{id}}\" }}"),
                "a GET request carries no body",
            ),
            (
                format!("{OK_TOOL}\nannotations = {{ readOnly = true }}"),
                "unknown annotation",
            ),
            (
                format!("{OK_TOOL}\nresponse = {{ select = \"results\" }}"),
                "is not a JSON pointer",
            ),
            (
                format!("{OK_TOOL}\nsurprise = 1"),
                "unknown field `surprise`",
            ),
        ];
        for (tool, expected) in cases {
            let got = message(with_tool(&tool));
            assert!(got.contains(expected), "expected {expected:?} in {got:?}");
        }
        let twice = format!("{OK_TOOL}\n[[tools]]\n{OK_TOOL}");
        assert!(message(with_tool(&twice)).contains("used twice"));
        let unknown_setting = HEAD.replace("{host}", "{hots}");
        let got = message(Definition::from_toml(&format!(
            "{unknown_setting}\n[[tools]]\n{OK_TOOL}"
        )));
        assert!(
            got.contains("base_url: unknown placeholder {hots} (declared settings: host)"),
            "{got}"
        );
    }

    #[test]
    fn arguments_are_validated_without_quoting_values() {
        let def = with_tool(OK_TOOL).unwrap();
        let tool = def.tool("get").unwrap();
        assert!(tool.validate(&serde_json::json!({"id": 3})).is_ok());
        let errors = tool
            .validate(&serde_json::json!({"id": "secret-value-123"}))
            .unwrap_err();
        assert!(errors[0].starts_with("/id"), "{errors:?}");
        assert!(!errors.concat().contains("secret-value-123"), "{errors:?}");
        assert!(tool.validate(&serde_json::json!({})).is_err());
    }
}
