//! A mock Salesforce REST API: SOQL queries (a small SELECT … FROM … WHERE … ORDER BY …
//! LIMIT subset, paged with `nextRecordsUrl`), and reading and updating sObject records.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{AuthCounts, MockServer, header_matches};

/// The sObject types the mock knows: name, id prefix, fields.
const TYPES: [(&str, &str, &[&str]); 3] = [
    (
        "Account",
        "001",
        &["Id", "Name", "Industry", "Phone", "Website", "BillingCity"],
    ),
    (
        "Contact",
        "003",
        &[
            "Id",
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "AccountId",
            "Title",
        ],
    ),
    (
        "Case",
        "500",
        &[
            "Id",
            "Subject",
            "Status",
            "Priority",
            "Description",
            "ContactId",
            "AccountId",
        ],
    ),
];

type Records = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

struct SalesforceState {
    authorization: String,
    oauth: Option<OAuthState>,
    records: Mutex<Records>,
    cursors: Mutex<BTreeMap<String, Vec<Value>>>,
    batch_size: usize,
    next_id: Mutex<u64>,
    counts: Arc<AuthCounts>,
}

/// The connected app the mock's token endpoint knows, and the access tokens it issued.
struct OAuthState {
    client: MockOAuthClient,
    issued: Mutex<Vec<String>>,
    grants: std::sync::atomic::AtomicU64,
}

/// A connected app's registration, as the mock's token endpoint
/// (`POST /services/oauth2/token`) accepts it: the refresh-token grant with all three, or
/// the client-credentials grant with the id and secret.
#[derive(Clone, Debug)]
pub struct MockOAuthClient {
    /// The consumer key.
    pub client_id: String,
    /// The consumer secret.
    pub client_secret: String,
    /// A refresh token issued to the app.
    pub refresh_token: String,
}

impl SalesforceState {
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mock Salesforce.
pub struct MockSalesforce {
    server: MockServer,
    state: Arc<SalesforceState>,
}

impl std::fmt::Debug for MockSalesforce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSalesforce")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for MockSalesforce {
    type Target = MockServer;
    fn deref(&self) -> &MockServer {
        &self.server
    }
}

fn errors(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!([{ "message": message.into(), "errorCode": code }])),
    )
        .into_response()
}

fn not_found() -> Response {
    errors(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

fn fields_of(sobject: &str) -> Option<&'static [&'static str]> {
    TYPES
        .iter()
        .find(|(n, _, _)| *n == sobject)
        .map(|(_, _, f)| *f)
}

impl MockSalesforce {
    /// Starts a mock accepting the OAuth access token `token`
    /// (`Authorization: Bearer {token}`), answering queries in pages of `batch_size`
    /// records (Salesforce's default is 2000).
    pub async fn start(token: &str, batch_size: usize) -> std::io::Result<Self> {
        Self::start_inner(format!("Bearer {token}"), None, batch_size).await
    }

    /// Starts a mock whose API accepts only the access tokens its token endpoint
    /// (`POST /services/oauth2/token`) issued to `client`. Like Salesforce, the token answer
    /// carries no `expires_in`; [`expire_sessions`](Self::expire_sessions) ends every session.
    pub async fn start_with_oauth(
        client: MockOAuthClient,
        batch_size: usize,
    ) -> std::io::Result<Self> {
        let oauth = OAuthState {
            client,
            issued: Mutex::new(Vec::new()),
            grants: std::sync::atomic::AtomicU64::new(0),
        };
        // No static token: only issued ones work.
        let unusable = format!("Bearer {}", uuid::Uuid::new_v4());
        Self::start_inner(unusable, Some(oauth), batch_size).await
    }

    /// How many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state
            .oauth
            .as_ref()
            .map_or(0, |o| o.grants.load(Ordering::SeqCst))
    }

    /// Invalidates every issued access token (a session timeout): the API answers 401
    /// `INVALID_SESSION_ID` to them.
    pub fn expire_sessions(&self) {
        if let Some(oauth) = &self.state.oauth {
            oauth
                .issued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }

    async fn start_inner(
        authorization: String,
        oauth: Option<OAuthState>,
        batch_size: usize,
    ) -> std::io::Result<Self> {
        let counts = Arc::new(AuthCounts::default());
        let state = Arc::new(SalesforceState {
            authorization,
            oauth,
            records: Mutex::new(BTreeMap::new()),
            cursors: Mutex::new(BTreeMap::new()),
            batch_size: batch_size.max(1),
            next_id: Mutex::new(0),
            counts: counts.clone(),
        });
        let router = axum::Router::new()
            .route("/services/data/{version}/query", get(query))
            .route("/services/data/{version}/query/{locator}", get(more))
            .route(
                "/services/data/{version}/sobjects/{sobject}/{id}",
                get(show).patch(update),
            )
            .fallback(|| async { not_found() })
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                authenticate,
            ))
            .merge(axum::Router::new().route("/services/oauth2/token", axum::routing::post(token)))
            .with_state(state.clone());
        let server = MockServer::start(router, counts).await?;
        let mock = Self { server, state };
        mock.seed();
        Ok(mock)
    }

    fn seed(&self) {
        let acme = self.insert("Account", json!({"Name": "Acme Corp", "Industry": "Manufacturing", "Phone": "+1 415-555-0100", "Website": "https://acme.example.com", "BillingCity": "San Francisco"}));
        let globex = self.insert("Account", json!({"Name": "Globex", "Industry": "Banking", "Phone": "+1 212-555-0199", "Website": "https://globex.example.com", "BillingCity": "New York"}));
        let jane = self.insert("Contact", json!({"FirstName": "Jane", "LastName": "Roe", "Email": "jane.roe@example.com", "Phone": "+1 415-555-0132", "AccountId": acme, "Title": "CFO"}));
        self.insert("Contact", json!({"FirstName": "Sam", "LastName": "Lee", "Email": "sam.lee@example.org", "Phone": "+1 212-555-0187", "AccountId": globex, "Title": "IT Director"}));
        self.insert("Case", json!({"Subject": "Double charge", "Status": "New", "Priority": "High", "Description": "Charged twice for order 4821", "ContactId": jane, "AccountId": acme}));
    }

    /// Adds a record of a known type; returns its 18-character id.
    pub fn insert(&self, sobject: &str, fields: Value) -> String {
        let prefix = TYPES
            .iter()
            .find(|(n, _, _)| *n == sobject)
            .map_or("a00", |(_, p, _)| *p);
        let n = {
            let mut next = self.state.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let id = format!("{prefix}{n:012}AAA");
        let mut record = Map::new();
        record.insert("Id".into(), Value::from(id.clone()));
        if let Some(fields) = fields.as_object() {
            record.extend(fields.clone());
        }
        self.state
            .records()
            .entry(sobject.to_owned())
            .or_default()
            .insert(id.clone(), record);
        id
    }

    /// A record's fields (without `attributes`).
    pub fn record(&self, sobject: &str, id: &str) -> Option<Map<String, Value>> {
        self.state.records().get(sobject)?.get(id).cloned()
    }

    /// Ids of every record of a type, in insertion order.
    pub fn ids(&self, sobject: &str) -> Vec<String> {
        self.state
            .records()
            .get(sobject)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

async fn authenticate(
    State(state): State<Arc<SalesforceState>>,
    request: Request,
    next: Next,
) -> Response {
    let issued = state.oauth.as_ref().is_some_and(|oauth| {
        oauth
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| header_matches(request.headers(), &format!("Bearer {t}")))
    });
    if issued || header_matches(request.headers(), &state.authorization) {
        state.counts.accepted.fetch_add(1, Ordering::SeqCst);
        next.run(request).await
    } else {
        state.counts.rejected.fetch_add(1, Ordering::SeqCst);
        let mut response = errors(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Token"),
        );
        response
    }
}

/// `POST /services/oauth2/token`: the refresh-token and client-credentials grants of a
/// connected app, answered as Salesforce does (no `expires_in`; errors as RFC 6749 §5.2).
async fn token(
    State(state): State<Arc<SalesforceState>>,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let refused = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let Some(oauth) = &state.oauth else {
        return not_found();
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client = &oauth.client;
    if field("client_id") != client.client_id || field("client_secret") != client.client_secret {
        return refused("invalid_client", "invalid client credentials");
    }
    match field("grant_type") {
        "refresh_token" if field("refresh_token") == client.refresh_token => {}
        "refresh_token" => return refused("invalid_grant", "expired access/refresh token"),
        "client_credentials" => {}
        _ => return refused("unsupported_grant_type", "grant type not supported"),
    }
    let access = format!("00DMOCK!{}", uuid::Uuid::new_v4().simple());
    oauth
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(access.clone());
    oauth.grants.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "access_token": access,
        "instance_url": "https://mock.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00DMOCK/005MOCK",
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        "signature": "mock"
    }))
    .into_response()
}

fn valid_version(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn with_attributes(
    version: &str,
    sobject: &str,
    record: &Map<String, Value>,
    fields: Option<&[String]>,
) -> Value {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("attributes".into(), json!({"type": sobject, "url": format!("/services/data/{version}/sobjects/{sobject}/{id}")}));
    let all = fields_of(sobject).unwrap_or(&[]);
    match fields {
        Some(fields) => {
            for f in fields {
                out.insert(f.clone(), record.get(f).cloned().unwrap_or(Value::Null));
            }
        }
        None => {
            for f in all {
                out.insert(
                    (*f).to_owned(),
                    record.get(*f).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    Value::Object(out)
}

/// A query the mock refuses: Salesforce's error code and message.
struct SoqlError(&'static str, String);

fn no_such_column_message(field: &str, sobject: &str) -> String {
    format!(
        "No such column '{field}' on entity '{sobject}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."
    )
}

fn no_such_column(field: &str, sobject: &str) -> Response {
    errors(
        StatusCode::BAD_REQUEST,
        "INVALID_FIELD",
        no_such_column_message(field, sobject),
    )
}

async fn show(
    State(state): State<Arc<SalesforceState>>,
    Path((version, sobject, id)): Path<(String, String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    let Some(known) = fields_of(&sobject) else {
        return errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "The requested resource does not exist: sObject type '{sobject}' is not supported."
            ),
        );
    };
    let fields: Option<Vec<String>> = params
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(bad) = fields
        .iter()
        .flatten()
        .find(|f| !known.contains(&f.as_str()))
    {
        return no_such_column(bad, &sobject);
    }
    let records = state.records();
    match records.get(&sobject).and_then(|r| r.get(&id)) {
        Some(record) => Json(with_attributes(
            &version,
            &sobject,
            record,
            fields.as_deref(),
        ))
        .into_response(),
        None => not_found(),
    }
}

async fn update(
    State(state): State<Arc<SalesforceState>>,
    Path((version, sobject, id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    let Some(known) = fields_of(&sobject) else {
        return not_found();
    };
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(&body) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body is not a JSON object",
        );
    };
    for field in changes.keys() {
        if field == "Id" {
            return errors(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
            );
        }
        if !known.contains(&field.as_str()) {
            return errors(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                format!("No such column '{field}' on sobject of type {sobject}"),
            );
        }
    }
    let mut records = state.records();
    match records.get_mut(&sobject).and_then(|r| r.get_mut(&id)) {
        Some(record) => {
            record.extend(changes);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

async fn query(
    State(state): State<Arc<SalesforceState>>,
    Path(version): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    let Some(q) = params.get("q") else {
        return errors(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let soql = match Soql::parse(q) {
        Ok(soql) => soql,
        Err(SoqlError(code, message)) => return errors(StatusCode::BAD_REQUEST, code, message),
    };
    let matched = {
        let records = state.records();
        let empty = BTreeMap::new();
        let mut rows: Vec<&Map<String, Value>> = records
            .get(&soql.from)
            .unwrap_or(&empty)
            .values()
            .filter(|r| soql.conditions.iter().all(|c| c.holds(r)))
            .collect();
        if let Some((field, descending)) = &soql.order {
            rows.sort_by(|a, b| compare(a.get(field), b.get(field)));
            if *descending {
                rows.reverse();
            }
        }
        rows.into_iter()
            .take(soql.limit.unwrap_or(usize::MAX))
            .map(|r| with_attributes(&version, &soql.from, r, Some(&soql.fields)))
            .collect::<Vec<Value>>()
    };
    page(&state, &version, matched, 0, None)
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Some(x), Some(y)) => x
            .as_str()
            .unwrap_or_default()
            .cmp(y.as_str().unwrap_or_default()),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Answers one page of `all` from `offset`, remembering the rest under a query locator.
fn page(
    state: &SalesforceState,
    version: &str,
    all: Vec<Value>,
    offset: usize,
    locator: Option<String>,
) -> Response {
    let total = all.len();
    let end = (offset + state.batch_size).min(total);
    let records: Vec<Value> = all[offset.min(total)..end].to_vec();
    let mut body = json!({ "totalSize": total, "done": end >= total, "records": records });
    if end < total {
        let locator = locator.unwrap_or_else(|| format!("01g{}", uuid::Uuid::new_v4().simple()));
        body["nextRecordsUrl"] =
            Value::from(format!("/services/data/{version}/query/{locator}-{end}"));
        state
            .cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(locator, all);
    }
    Json(body).into_response()
}

async fn more(
    State(state): State<Arc<SalesforceState>>,
    Path((version, cursor)): Path<(String, String)>,
) -> Response {
    let invalid = || {
        errors(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((locator, offset)) = cursor.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let all = state
        .cursors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(locator)
        .cloned();
    match all {
        Some(all) if offset <= all.len() => {
            page(&state, &version, all, offset, Some(locator.to_owned()))
        }
        _ => invalid(),
    }
}

/// A parsed query of the supported subset.
struct Soql {
    fields: Vec<String>,
    from: String,
    conditions: Vec<Condition>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

struct Condition {
    field: String,
    op: String,
    value: Value,
}

impl Condition {
    fn holds(&self, record: &Map<String, Value>) -> bool {
        let got = record.get(&self.field).unwrap_or(&Value::Null);
        match self.op.as_str() {
            "=" => loosely_equal(got, &self.value),
            "!=" => !loosely_equal(got, &self.value),
            _ => {
                // LIKE with % wildcards, case-insensitive.
                let (Some(text), Some(pattern)) = (got.as_str(), self.value.as_str()) else {
                    return false;
                };
                like(&text.to_lowercase(), &pattern.to_lowercase())
            }
        }
    }
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::from("'");
            loop {
                match chars.next() {
                    Some('\\') => s.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => s.push(c),
                    None => return Err("unterminated string literal".into()),
                }
            }
            out.push(s);
        } else if c == ',' || c == '=' {
            out.push(c.to_string());
            chars.next();
        } else if c == '!' {
            chars.next();
            if chars.next() != Some('=') {
                return Err("unexpected token: '!'".into());
            }
            out.push("!=".into());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == ',' || c == '=' || c == '!' || c == '\'' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

impl Soql {
    fn parse(text: &str) -> Result<Self, SoqlError> {
        let malformed = |m: String| SoqlError("MALFORMED_QUERY", m);
        let tokens = tokens(text).map_err(malformed)?;
        let mut it = tokens.into_iter().peekable();
        let keyword = |t: Option<&String>, k: &str| t.is_some_and(|t| t.eq_ignore_ascii_case(k));
        if !keyword(it.next().as_ref(), "SELECT") {
            return Err(malformed("unexpected token: expected SELECT".into()));
        }
        let mut fields = Vec::new();
        loop {
            match it.next() {
                Some(f) if f != "," && !f.eq_ignore_ascii_case("FROM") => fields.push(f),
                other => {
                    return Err(malformed(format!(
                        "unexpected token: {}",
                        other.unwrap_or_else(|| "<end>".into())
                    )));
                }
            }
            match it.next() {
                Some(t) if t == "," => continue,
                Some(t) if t.eq_ignore_ascii_case("FROM") => break,
                other => {
                    return Err(malformed(format!(
                        "unexpected token: {}",
                        other.unwrap_or_else(|| "<end>".into())
                    )));
                }
            }
        }
        let from = it
            .next()
            .ok_or_else(|| malformed("unexpected token: <end>".into()))?;
        let Some(known) = fields_of(&from) else {
            return Err(SoqlError(
                "INVALID_TYPE",
                format!(
                    "sObject type '{from}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name."
                ),
            ));
        };
        let check = |f: &str| {
            if known.contains(&f) {
                Ok(())
            } else {
                Err(SoqlError("INVALID_FIELD", no_such_column_message(f, &from)))
            }
        };
        for f in &fields {
            check(f)?;
        }
        let mut soql = Soql {
            fields,
            from: from.clone(),
            conditions: Vec::new(),
            order: None,
            limit: None,
        };
        while let Some(token) = it.next() {
            if token.eq_ignore_ascii_case("WHERE") || token.eq_ignore_ascii_case("AND") {
                let field = it
                    .next()
                    .ok_or_else(|| malformed("unexpected token: <end>".into()))?;
                check(&field)?;
                let op = it
                    .next()
                    .filter(|o| o == "=" || o == "!=" || o.eq_ignore_ascii_case("LIKE"))
                    .ok_or_else(|| malformed(format!("unexpected token after {field}")))?;
                let literal = it
                    .next()
                    .ok_or_else(|| malformed("unexpected token: <end>".into()))?;
                let value = if let Some(s) = literal.strip_prefix('\'') {
                    Value::from(s)
                } else if literal.eq_ignore_ascii_case("null") {
                    Value::Null
                } else if let Ok(b) = literal.to_ascii_lowercase().parse::<bool>() {
                    Value::from(b)
                } else if let Ok(n) = literal.parse::<f64>() {
                    json!(n)
                } else {
                    return Err(malformed(format!("unexpected token: {literal}")));
                };
                soql.conditions.push(Condition {
                    field,
                    op: op.to_ascii_uppercase(),
                    value,
                });
            } else if token.eq_ignore_ascii_case("ORDER") {
                if !keyword(it.next().as_ref(), "BY") {
                    return Err(malformed("unexpected token: expected BY".into()));
                }
                let field = it
                    .next()
                    .ok_or_else(|| malformed("unexpected token: <end>".into()))?;
                check(&field)?;
                let descending = match it.peek() {
                    Some(t) if t.eq_ignore_ascii_case("DESC") => {
                        it.next();
                        true
                    }
                    Some(t) if t.eq_ignore_ascii_case("ASC") => {
                        it.next();
                        false
                    }
                    _ => false,
                };
                soql.order = Some((field, descending));
            } else if token.eq_ignore_ascii_case("LIMIT") {
                let n = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| malformed("LIMIT needs a number".into()))?;
                soql.limit = Some(n);
            } else {
                return Err(malformed(format!("unexpected token: {token}")));
            }
        }
        Ok(soql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_wildcards() {
        assert!(like("acme corp", "acme%"));
        assert!(like("acme corp", "%corp"));
        assert!(like("acme corp", "%me c%"));
        assert!(!like("acme corp", "globex%"));
        assert!(like("x", "x"));
    }

    #[test]
    fn soql_subset_parses_and_rejects() {
        let q = Soql::parse("SELECT Id, Name FROM Account WHERE Industry = 'Banking' AND Name LIKE 'G%' ORDER BY Name DESC LIMIT 3").ok().unwrap();
        assert_eq!(q.fields, ["Id", "Name"]);
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.order, Some(("Name".into(), true)));
        assert_eq!(q.limit, Some(3));
        for bad in [
            "SELEC Id FROM Account",
            "SELECT Id FORM Account",
            "SELECT Nme FROM Account",
            "SELECT Id FROM Nope",
            "SELECT Id FROM Account WHERE Name = 'x",
        ] {
            assert!(Soql::parse(bad).is_err(), "{bad}");
        }
    }
}
