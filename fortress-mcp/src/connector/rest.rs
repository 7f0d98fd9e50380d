//! [`RestUpstream`]: serves a connector [`Definition`] as an MCP upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fortress_core::secret::Secret;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::auth::Auth;
use super::definition::{Definition, ToolDefinition};
use super::response;
use super::template::RenderError;
use super::token::Access;
use crate::jsonrpc::{ErrorObject, Notification, UPSTREAM_ERROR};
use crate::upstream::{CallContext, ServerDescription, Upstream};
use crate::version::{Era, LATEST_MODERN};
use fortress_core::vault::Credential;

/// Per-instance settings of a REST connector.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// Replaces the definition's base URL (scheme, host, port and any path), e.g. to point
    /// at a mock server or a regional host.
    pub base_url: Option<String>,
    /// Values for the definition's settings.
    pub settings: BTreeMap<String, String>,
    /// Time allowed for one HTTP exchange with the SaaS, body included.
    pub request_timeout: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Largest SaaS response body read.
    pub max_response_bytes: usize,
}

impl Default for RestOptions {
    fn default() -> Self {
        Self {
            base_url: None,
            settings: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A REST connector that cannot be configured as given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// A setting is missing, unknown or does not match its pattern.
    #[error("setting {name:?}: {message}")]
    Setting {
        /// The setting.
        name: String,
        /// Why.
        message: String,
    },
    /// The base URL is unusable.
    #[error("base URL: {0}")]
    BaseUrl(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A connector definition served as an upstream.
pub struct RestUpstream {
    name: String,
    definition: Arc<Definition>,
    /// Scheme, authority and base path, without a trailing slash.
    base: String,
    origin: reqwest::Url,
    prefix: String,
    auth: Auth,
    /// The OAuth 2.0 token endpoint, when the vault holds a client registration.
    token_url: Option<reqwest::Url>,
    tokens: super::token::TokenCache,
    client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
    notifications: broadcast::Sender<Notification>,
}

impl std::fmt::Debug for RestUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestUpstream")
            .field("name", &self.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What one HTTP exchange returned.
struct Answer {
    status: http::StatusCode,
    text: String,
    json: Option<Value>,
}

impl RestUpstream {
    /// Serves `definition` under the upstream name `name`.
    pub fn new(
        name: impl Into<String>,
        definition: Arc<Definition>,
        options: RestOptions,
    ) -> Result<Self, RestError> {
        for key in options.settings.keys() {
            if !definition.settings.contains_key(key) {
                let known: Vec<&str> = definition.settings.keys().map(String::as_str).collect();
                return Err(RestError::Setting {
                    name: key.clone(),
                    message: format!("unknown setting (known: {})", known.join(", ")),
                });
            }
        }
        let mut settings = BTreeMap::new();
        for (key, setting) in &definition.settings {
            let Some(value) = options
                .settings
                .get(key)
                .or(setting.default.as_ref())
                .cloned()
            else {
                continue;
            };
            if let Some(pattern) = &setting.pattern {
                if !pattern.is_match(&value) {
                    return Err(RestError::Setting {
                        name: key.clone(),
                        message: format!("does not match {}", pattern.as_str()),
                    });
                }
            }
            settings.insert(key.clone(), value);
        }
        let lookup = |n: &str| settings.get(n).cloned().map(Value::from);
        let missing = |e: RenderError| match e {
            RenderError::Missing(name) => RestError::Setting {
                message: format!(
                    "required: {}",
                    definition
                        .settings
                        .get(&name)
                        .map_or("", |s| s.description.as_str())
                ),
                name,
            },
            other => RestError::Setting {
                name: String::new(),
                message: other.to_string(),
            },
        };
        let base = match &options.base_url {
            Some(url) => url.clone(),
            None => definition.base_url.render_text(&lookup).map_err(missing)?,
        };
        let origin = reqwest::Url::parse(&base).map_err(|e| RestError::BaseUrl(e.to_string()))?;
        if !matches!(origin.scheme(), "http" | "https") || origin.host().is_none() {
            return Err(RestError::BaseUrl(format!(
                "{base:?} is not an http(s) URL"
            )));
        }
        if origin.query().is_some() || origin.fragment().is_some() || !origin.username().is_empty()
        {
            return Err(RestError::BaseUrl(
                "must not carry a query, fragment or user".into(),
            ));
        }
        let prefix = definition
            .path_prefix
            .render_path(&lookup)
            .map_err(missing)?;
        let username = match &definition.auth {
            super::definition::AuthScheme::Basic { username: Some(t) } => {
                Some(t.render_text(&lookup).map_err(missing)?)
            }
            _ => None,
        };
        let auth = Auth::new(&definition.auth, username);
        let token_url = match &definition.auth {
            super::definition::AuthScheme::OAuth2 { token_url: Some(t) } => {
                let text = t.render_text(&lookup).map_err(missing)?;
                let url = origin
                    .join(&text)
                    .map_err(|e| RestError::BaseUrl(format!("auth.token_url: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(RestError::BaseUrl(
                        "auth.token_url is not an http(s) URL".into(),
                    ));
                }
                Some(url)
            }
            _ => None,
        };
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // A redirect could carry the credential to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fortress-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Client(e.to_string()))?;
        Ok(Self {
            name: name.into(),
            base: origin.as_str().trim_end_matches('/').to_owned(),
            origin,
            prefix,
            auth,
            token_url,
            tokens: super::token::TokenCache::default(),
            client,
            timeout: options.request_timeout,
            max_response_bytes: options.max_response_bytes,
            notifications: broadcast::channel(1).0,
            definition,
        })
    }

    /// The definition served.
    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// How many access tokens were fetched from the token endpoint so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    /// The access token of a call: from the token endpoint (cached) when the definition has
    /// one and the credential is a client registration, else the credential itself.
    async fn access(&self, credential: &Credential) -> Result<Access, ErrorObject> {
        match &self.token_url {
            Some(url) => {
                self.tokens
                    .access(&self.client, url, &self.name, credential)
                    .await
            }
            None => Ok(Access::plain(credential)),
        }
    }

    fn list(&self) -> Value {
        let tools: Vec<Value> = self
            .definition
            .tools()
            .iter()
            .map(|t| t.listing())
            .collect();
        json!({ "tools": tools })
    }

    async fn call(
        &self,
        params: Option<Map<String, Value>>,
        ctx: &CallContext,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_default();
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObject::invalid_params("\"name\" must be a string"))?;
        let tool = self
            .definition
            .tool(name)
            .ok_or_else(|| ErrorObject::invalid_params(format!("unknown tool: {name}")))?;
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(ErrorObject::invalid_params(
                    "\"arguments\" must be an object",
                ));
            }
        };
        if let Err(errors) = tool.validate(&arguments) {
            return Err(ErrorObject::invalid_params(format!(
                "invalid arguments for {name}: {}",
                errors.join("; ")
            ))
            .with_data(json!({ "errors": errors })));
        }
        let credential = ctx.credential.clone().ok_or_else(|| {
            ErrorObject::new(
                crate::seam::CREDENTIAL_UNAVAILABLE,
                format!("no credential was provided for connector {}", self.name),
            )
        })?;
        let mut access = self.access(&credential).await?;
        let lookup = |n: &str| tool.argument(&arguments, n);
        let invalid = |e: RenderError| ErrorObject::invalid_params(format!("{name}: {e}"));
        let path = tool.path.render_path(&lookup).map_err(invalid)?;
        let mut url = reqwest::Url::parse(&format!("{}{}{}", self.base, self.prefix, path))
            .map_err(|e| ErrorObject::invalid_params(format!("{name}: {e}")))?;
        for (key, template) in &tool.query {
            // A parameter whose argument is absent (and has no default) is left out.
            if template.complete(&lookup) {
                let value = template.render_text(&lookup).map_err(invalid)?;
                url.query_pairs_mut().append_pair(key, &value);
            }
        }
        let body = match &tool.body {
            Some(template) => Some(
                template
                    .render(&lookup)
                    .map_err(invalid)?
                    .unwrap_or_else(|| json!({})),
            ),
            None => None,
        };
        let mut first = self
            .exchange(
                tool,
                &tool.method,
                url.clone(),
                body.as_ref(),
                &access.secret,
                ctx,
            )
            .await?;
        if first.status == http::StatusCode::UNAUTHORIZED && access.renewable() {
            // The token expired or was revoked early: once more with a fresh one.
            self.tokens.forget(&access);
            access = self.access(&credential).await?;
            first = self
                .exchange(tool, &tool.method, url, body.as_ref(), &access.secret, ctx)
                .await?;
        }
        let secret = &access.secret;
        let result = if !first.status.is_success() {
            response::failure(
                &self.name,
                first.status,
                &self.definition.error_messages,
                first.json.as_ref(),
                &first.text,
            )
        } else {
            let document = match (&tool.pagination, first.json) {
                (Some(_), Some(doc)) => Some(self.follow(tool, doc, secret, ctx).await?),
                (_, doc) => doc,
            };
            response::success(tool, first.status, document, &first.text, &lookup)
        };
        let result = scrub(result, secret);
        Ok(scrub(result, credential.secret()))
    }

    /// Follows `next` links (same origin only: the credential never leaves for another
    /// host), appending each page's items to the first page's.
    async fn follow(
        &self,
        tool: &ToolDefinition,
        mut document: Value,
        secret: &Secret,
        ctx: &CallContext,
    ) -> Result<Value, ErrorObject> {
        let Some(pagination) = &tool.pagination else {
            return Ok(document);
        };
        let mut next = next_link(&document, &pagination.next);
        let mut items: Vec<Value> = items_of(&document, &pagination.items);
        let mut pages = 1;
        while let Some(link) = next.take() {
            if pages >= pagination.max_pages {
                break;
            }
            let Some(url) = self.same_origin(&link) else {
                tracing::warn!(connector = %self.name, "not following a next-page link to another origin");
                break;
            };
            let page = self
                .exchange(tool, &http::Method::GET, url, None, secret, ctx)
                .await?;
            let Some(page_doc) = page.json.filter(|_| page.status.is_success()) else {
                return Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!(
                        "{} answered HTTP {} for a next page",
                        self.name,
                        page.status.as_u16()
                    ),
                ));
            };
            items.extend(items_of(&page_doc, &pagination.items));
            next = next_link(&page_doc, &pagination.next);
            // The merged answer is the last page (its position: done, next link) with the
            // items of every page.
            document = page_doc;
            pages += 1;
        }
        if let Some(slot) = document.pointer_mut(&pagination.items) {
            *slot = Value::Array(items);
        }
        Ok(document)
    }

    fn same_origin(&self, link: &str) -> Option<reqwest::Url> {
        let url = self.origin.join(link).ok()?;
        (url.origin() == self.origin.origin()).then_some(url)
    }

    async fn exchange(
        &self,
        tool: &ToolDefinition,
        method: &http::Method,
        url: reqwest::Url,
        body: Option<&Value>,
        secret: &Secret,
        ctx: &CallContext,
    ) -> Result<Answer, ErrorObject> {
        let (header, value) = self.auth.header(secret).ok_or_else(|| {
            ErrorObject::new(
                crate::seam::CREDENTIAL_UNAVAILABLE,
                format!(
                    "the credential for {} cannot be used in a header",
                    self.name
                ),
            )
        })?;
        let mut request = self
            .client
            .request(method.clone(), url)
            .header(header, value)
            .header(http::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = async {
            let mut response = request.send().await?;
            let status = response.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if bytes.len() + chunk.len() > self.max_response_bytes {
                    return Ok(Err(status));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok((status, bytes)))
        };
        let outcome = tokio::select! {
            outcome = sent => outcome,
            () = ctx.cancel.cancelled() => {
                return Err(ErrorObject::new(UPSTREAM_ERROR, "request cancelled"));
            }
        };
        let (status, bytes) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                return Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!(
                        "{} answered more than {} bytes for {}",
                        self.name,
                        self.max_response_bytes,
                        tool.name()
                    ),
                ));
            }
            Err(error) if error.is_timeout() => {
                return Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!(
                        "{} did not answer within {}s ({})",
                        self.name,
                        self.timeout.as_secs_f64(),
                        tool.name()
                    ),
                ));
            }
            Err(error) => {
                let error = error.without_url();
                tracing::warn!(connector = %self.name, tool = tool.name(), %error, "SaaS request failed");
                return Err(ErrorObject::new(
                    UPSTREAM_ERROR,
                    format!("{} could not be reached: {}", self.name, describe(&error)),
                ));
            }
        };
        tracing::debug!(connector = %self.name, tool = tool.name(), status = status.as_u16(), "SaaS answered");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).ok();
        Ok(Answer { status, text, json })
    }
}

/// An error and its causes, joined (no URL, no headers).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn items_of(document: &Value, pointer: &str) -> Vec<Value> {
    document
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn next_link(document: &Value, pointer: &str) -> Option<String> {
    document
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Replaces the credential wherever a SaaS echoed it back, so it cannot reach the client.
fn scrub(result: Value, secret: &Secret) -> Value {
    let Some(secret) = secret.expose_str().filter(|s| s.len() >= 4) else {
        return result;
    };
    let text = result.to_string();
    if !text.contains(secret) {
        return result;
    }
    serde_json::from_str(&text.replace(secret, "<redacted>")).unwrap_or_else(|_| {
        json!({"content": [{"type": "text", "text": "the answer could not be shown safely"}], "isError": true})
    })
}

#[async_trait]
impl Upstream for RestUpstream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        match method {
            "tools/list" => Ok(self.list()),
            "tools/call" => self.call(params, &ctx).await,
            "ping" => Ok(json!({})),
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        let capabilities = json!({ "tools": { "listChanged": false } });
        Ok(ServerDescription {
            era: Era::Modern,
            protocol_version: LATEST_MODERN.into(),
            capabilities: capabilities.as_object().cloned().unwrap_or_default(),
            server_info: Some(json!({
                "name": format!("fortress-connector-{}", self.definition.name()),
                "title": self.definition.title().unwrap_or(self.definition.name()),
                "version": self.definition.version(),
            })),
            instructions: Some(self.definition.description().to_owned()),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notifications.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zendesk(
        settings: &[(&str, &str)],
        base_url: Option<&str>,
    ) -> Result<RestUpstream, RestError> {
        let options = RestOptions {
            base_url: base_url.map(str::to_owned),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..RestOptions::default()
        };
        RestUpstream::new(
            "zendesk",
            crate::connector::builtin("zendesk").unwrap(),
            options,
        )
    }

    #[test]
    fn settings_are_checked_when_the_connector_is_built() {
        let ok = zendesk(&[("subdomain", "acme"), ("email", "a@acme.example")], None).unwrap();
        assert_eq!(ok.base, "https://acme.zendesk.com");
        let missing = zendesk(&[("subdomain", "acme")], None)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("setting \"email\": required"), "{missing}");
        let unknown = zendesk(
            &[("email", "a@b.c"), ("colour", "red")],
            Some("http://127.0.0.1:1"),
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("unknown setting"), "{unknown}");
        let pattern = zendesk(&[("subdomain", "evil.com/x"), ("email", "a@b.c")], None)
            .unwrap_err()
            .to_string();
        assert!(pattern.contains("does not match"), "{pattern}");
        for bad in ["ftp://x", "not a url", "http://h/?q=1", "http://u:p@h/"] {
            assert!(
                matches!(
                    zendesk(&[("email", "a@b.c")], Some(bad)),
                    Err(RestError::BaseUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn next_page_links_stay_on_the_saas_origin() {
        let up = zendesk(&[("email", "a@b.c")], Some("http://127.0.0.1:9/base")).unwrap();
        assert_eq!(
            up.same_origin("/api/v2/search.json?page=2")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/v2/search.json?page=2"
        );
        assert!(up.same_origin("http://127.0.0.1:9/next").is_some());
        assert!(up.same_origin("https://127.0.0.1:9/next").is_none());
        assert!(up.same_origin("http://evil.example/next").is_none());
        assert!(up.same_origin("//evil.example/next").is_none());
    }

    #[test]
    fn an_echoed_credential_is_scrubbed_from_results() {
        let secret = Secret::from("tok-123456");
        let result = json!({"content": [{"type": "text", "text": "your token is tok-123456"}]});
        let scrubbed = scrub(result, &secret);
        assert_eq!(scrubbed["content"][0]["text"], "your token is <redacted>");
    }
}
