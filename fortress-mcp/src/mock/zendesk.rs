//! A mock Zendesk Support API: search, show and update tickets.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{AuthCounts, MockServer, header_matches, now};

const STATUSES: [&str; 6] = ["new", "open", "pending", "hold", "solved", "closed"];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
const TYPES: [&str; 4] = ["problem", "incident", "question", "task"];

struct ZendeskState {
    authorization: String,
    base_url: Mutex<String>,
    tickets: Mutex<BTreeMap<u64, Value>>,
    comments: Mutex<BTreeMap<u64, Vec<Value>>>,
    next_id: Mutex<u64>,
    counts: Arc<AuthCounts>,
}

impl ZendeskState {
    fn base(&self) -> String {
        self.base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn tickets(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Value>> {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn comments(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<Value>>> {
        self.comments.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn next_id(&self) -> u64 {
        let mut id = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *id += 1;
        *id
    }
}

/// A running mock Zendesk. Its tickets start with a few seeded ones containing PII
/// (email addresses, phone numbers), so redaction is visible.
pub struct MockZendesk {
    server: MockServer,
    state: Arc<ZendeskState>,
}

impl std::fmt::Debug for MockZendesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockZendesk")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for MockZendesk {
    type Target = MockServer;
    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl MockZendesk {
    /// Starts a mock accepting the API token `token` of the agent `email`
    /// (`Authorization: Basic base64("{email}/token:{token}")`).
    pub async fn start(email: &str, token: &str) -> std::io::Result<Self> {
        let pair = format!("{email}/token:{token}");
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        let counts = Arc::new(AuthCounts::default());
        let state = Arc::new(ZendeskState {
            authorization,
            base_url: Mutex::new(String::new()),
            tickets: Mutex::new(BTreeMap::new()),
            comments: Mutex::new(BTreeMap::new()),
            next_id: Mutex::new(0),
            counts: counts.clone(),
        });
        let router = axum::Router::new()
            .route("/api/v2/search.json", get(search))
            .route("/api/v2/tickets/{file}", get(show).put(update))
            .route("/api/v2/tickets/{id}/comments.json", get(list_comments))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": "InvalidEndpoint", "description": "Not found"})),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                authenticate,
            ))
            .with_state(state.clone());
        let server = MockServer::start(router, counts).await?;
        *state.base_url.lock().unwrap_or_else(|e| e.into_inner()) = server.base_url();
        let mock = Self { server, state };
        mock.seed();
        Ok(mock)
    }

    fn seed(&self) {
        let seeded = [
            (
                "Refund for order #4821",
                "Hi, I was charged twice for order #4821. Please refund one charge. You can reach me at jane.roe@example.com or +1 415-555-0132.",
                "open",
                "high",
                "question",
                &["billing", "refund"][..],
            ),
            (
                "Cannot log in after password reset",
                "After resetting my password I get 'invalid credentials'. My account email is sam.lee@example.org, phone (212) 555-0187.",
                "new",
                "urgent",
                "problem",
                &["login"][..],
            ),
            (
                "Invoice address change",
                "Please change the invoice address to 12 Market St. Contact: priya.n@example.net.",
                "pending",
                "normal",
                "task",
                &["billing"][..],
            ),
            (
                "Feature request: dark mode",
                "Would love a dark mode in the dashboard.",
                "solved",
                "low",
                "question",
                &["feature"][..],
            ),
        ];
        for (subject, description, status, priority, kind, tags) in seeded {
            self.insert_ticket(json!({
                "subject": subject,
                "description": description,
                "status": status,
                "priority": priority,
                "type": kind,
                "tags": tags,
            }));
        }
    }

    /// Adds a ticket (fields not given get realistic defaults); returns its id.
    pub fn insert_ticket(&self, fields: Value) -> u64 {
        let id = self.state.next_id();
        let at = now();
        let mut ticket = json!({
            "id": id,
            "url": format!("{}/api/v2/tickets/{id}.json", self.state.base()),
            "external_id": null,
            "via": {"channel": "web"},
            "created_at": at,
            "updated_at": at,
            "type": null,
            "subject": "",
            "raw_subject": "",
            "description": "",
            "priority": "normal",
            "status": "new",
            "recipient": null,
            "requester_id": 1000 + id,
            "submitter_id": 1000 + id,
            "assignee_id": null,
            "organization_id": null,
            "group_id": null,
            "tags": [],
            "custom_fields": [],
            "is_public": true,
        });
        if let (Some(into), Some(from)) = (ticket.as_object_mut(), fields.as_object()) {
            for (k, v) in from {
                into.insert(k.clone(), v.clone());
            }
            if let Some(subject) = from.get("subject") {
                into.insert("raw_subject".into(), subject.clone());
            }
        }
        let description = ticket["description"].clone();
        self.state.comments().insert(
            id,
            vec![json!({"id": id * 100, "type": "Comment", "body": description, "public": true, "author_id": 1000 + id, "created_at": at})],
        );
        self.state.tickets().insert(id, ticket);
        id
    }

    /// A ticket as the API shows it.
    pub fn ticket(&self, id: u64) -> Option<Value> {
        self.state.tickets().get(&id).cloned()
    }

    /// A ticket's comments, oldest first (the first is the description).
    pub fn comments(&self, id: u64) -> Vec<Value> {
        self.state.comments().get(&id).cloned().unwrap_or_default()
    }
}

async fn authenticate(
    State(state): State<Arc<ZendeskState>>,
    request: Request,
    next: Next,
) -> Response {
    if header_matches(request.headers(), &state.authorization) {
        state.counts.accepted.fetch_add(1, Ordering::SeqCst);
        next.run(request).await
    } else {
        state.counts.rejected.fetch_add(1, Ordering::SeqCst);
        (
            StatusCode::UNAUTHORIZED,
            [(
                http::header::WWW_AUTHENTICATE,
                "Basic realm=\"Web Password\"",
            )],
            Json(json!({"error": "Couldn't authenticate you"})),
        )
            .into_response()
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "RecordNotFound", "description": "Not found"})),
    )
        .into_response()
}

fn invalid(field: &str, description: impl Into<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": { field: [{ "description": description.into(), "error": "InvalidValue" }] }
        })),
    )
        .into_response()
}

fn ticket_id(file: &str) -> Option<u64> {
    file.strip_suffix(".json")?.parse().ok()
}

async fn show(State(state): State<Arc<ZendeskState>>, Path(file): Path<String>) -> Response {
    let Some(id) = ticket_id(&file) else {
        return not_found();
    };
    match state.tickets().get(&id) {
        Some(ticket) => Json(json!({ "ticket": ticket })).into_response(),
        None => not_found(),
    }
}

async fn list_comments(State(state): State<Arc<ZendeskState>>, Path(id): Path<u64>) -> Response {
    match state.comments().get(&id) {
        Some(comments) => Json(json!({"comments": comments, "next_page": null, "previous_page": null, "count": comments.len()})).into_response(),
        None => not_found(),
    }
}

async fn update(
    State(state): State<Arc<ZendeskState>>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(id) = ticket_id(&file) else {
        return not_found();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "Unprocessable Entity", "description": "the request body is not valid JSON"}))).into_response();
    };
    let Some(changes) = body.get("ticket").and_then(Value::as_object) else {
        return invalid("base", "ticket parameter is missing");
    };
    let mut tickets = state.tickets();
    let Some(ticket) = tickets.get_mut(&id) else {
        return not_found();
    };
    if ticket["status"] == "closed" {
        return invalid("status", "Status: closed prevents ticket update");
    }
    let checks: [(&str, &[&str]); 3] = [
        ("status", &STATUSES),
        ("priority", &PRIORITIES),
        ("type", &TYPES),
    ];
    for (field, allowed) in checks {
        if let Some(value) = changes.get(field) {
            if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
                return invalid(field, format!("{}: is invalid", capitalize(field)));
            }
        }
    }
    let mut events = Vec::new();
    let audit_id = state.next_id() * 1000;
    if let Some(comment) = changes.get("comment") {
        let body = comment
            .get("body")
            .or_else(|| comment.get("html_body"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if body.trim().is_empty() {
            return invalid("comment", "Comment: cannot be blank");
        }
        let public = comment
            .get("public")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let event = json!({"id": audit_id + 1, "type": "Comment", "body": body, "public": public, "author_id": 1, "created_at": now()});
        state.comments().entry(id).or_default().push(event.clone());
        events.push(event);
    }
    for field in [
        "status",
        "priority",
        "type",
        "assignee_id",
        "tags",
        "subject",
    ] {
        if let Some(value) = changes.get(field) {
            let previous = ticket.get(field).cloned().unwrap_or(Value::Null);
            events.push(json!({"id": audit_id + 2 + events.len() as u64, "type": "Change", "field_name": field, "value": value, "previous_value": previous}));
            ticket[field] = value.clone();
        }
    }
    ticket["updated_at"] = Value::from(now());
    let ticket = ticket.clone();
    Json(json!({
        "ticket": ticket,
        "audit": {"id": audit_id, "ticket_id": id, "created_at": now(), "author_id": 1, "events": events}
    }))
    .into_response()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `GET /api/v2/search.json?query=…`: `key:value` terms filter on ticket fields
/// (`type`, `status`, `priority`, `tags`), other words must appear in the subject or
/// description.
async fn search(
    State(state): State<Arc<ZendeskState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(query) = params.get("query").filter(|q| !q.trim().is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid", "description": "query parameter is required"})),
        )
            .into_response();
    };
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let per_page: usize = params
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let mut only_tickets = true;
    let mut filters: Vec<(String, String)> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    for term in query.split_whitespace() {
        match term.split_once(':') {
            Some(("type", "ticket")) => {}
            Some(("type", _)) => only_tickets = false,
            Some((key, value)) => filters.push((key.to_owned(), value.to_lowercase())),
            None => words.push(term.to_lowercase()),
        }
    }
    let tickets = state.tickets();
    let mut found: Vec<Value> = tickets
        .values()
        .filter(|_| only_tickets)
        .filter(|t| {
            filters.iter().all(|(key, value)| {
                let key = if key == "tag" { "tags" } else { key.as_str() };
                match t.get(key) {
                    Some(Value::Array(items)) => items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.eq_ignore_ascii_case(value))),
                    Some(Value::String(s)) => s.eq_ignore_ascii_case(value),
                    Some(Value::Number(n)) => n.to_string() == *value,
                    Some(Value::Bool(b)) => b.to_string() == *value,
                    Some(_) => false,
                    None => false,
                }
            })
        })
        .filter(|t| {
            let text = format!(
                "{} {}",
                t["subject"].as_str().unwrap_or(""),
                t["description"].as_str().unwrap_or("")
            )
            .to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .cloned()
        .collect();
    let sort_by = params.get("sort_by").map_or("created_at", String::as_str);
    let field = if sort_by == "ticket_type" {
        "type"
    } else {
        sort_by
    };
    found.sort_by(|a, b| {
        a[field]
            .to_string()
            .cmp(&b[field].to_string())
            .then(a["id"].as_u64().cmp(&b["id"].as_u64()))
    });
    if params.get("sort_order").map_or("desc", String::as_str) == "desc" {
        found.reverse();
    }
    let count = found.len();
    let results: Vec<Value> = found
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|mut t| {
            t["result_type"] = Value::from("ticket");
            t
        })
        .collect();
    let link = |p: usize| {
        let mut url = reqwest::Url::parse(&format!("{}/api/v2/search.json", state.base())).ok()?;
        url.query_pairs_mut()
            .append_pair("page", &p.to_string())
            .append_pair("per_page", &per_page.to_string())
            .append_pair("query", query);
        Some(url.to_string())
    };
    let next_page = (page * per_page < count).then(|| link(page + 1)).flatten();
    let previous_page = (page > 1).then(|| link(page - 1)).flatten();
    let mut body = Map::new();
    body.insert("results".into(), Value::from(results));
    body.insert("facets".into(), Value::Null);
    body.insert(
        "next_page".into(),
        next_page.map_or(Value::Null, Value::from),
    );
    body.insert(
        "previous_page".into(),
        previous_page.map_or(Value::Null, Value::from),
    );
    body.insert("count".into(), Value::from(count));
    Json(Value::Object(body)).into_response()
}
