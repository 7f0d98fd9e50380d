//! The MCP demo's dashboard manages its connectors while the demo serves: add one from a
//! built-in or an uploaded TOML definition, remove one (its credential deleted at once,
//! its tools gone, its calls refused), add it again, each in the Change Log with before and
//! after; only admins may; and a restart serves the same set. The demo's policy set is the
//! dashboard's `mcp` set: applied edits decide the next call.

use std::time::Duration;

use fortress_mcp::demo::{CONNECTORS_FILE, DASHBOARD_OWNER, DemoHandle, DemoOptions, start};
use serde_json::{Value, json};

const PW: &str = "a long enough password";

async fn demo(data_dir: &std::path::Path) -> DemoHandle {
    start(DemoOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_owned(),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts")
}

/// A logged-in dashboard client.
struct Dash {
    client: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Dash {
    async fn login(base: &str, user: &str, password: &str) -> Self {
        let client = reqwest::Client::new();
        let base = base.trim_end_matches('/').to_owned();
        let reply = client
            .post(format!("{base}/api/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "login as {user}");
        let cookie = reply
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let session: Value = reply.json().await.unwrap();
        Self {
            client,
            base,
            cookie,
            csrf: session["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn connectors(&self) -> Vec<String> {
        let (status, list) = self.call("GET", "/api/connectors", None).await;
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The Change Log's entries for `action`, newest first.
    async fn changes(&self, action: &str) -> Vec<Value> {
        let (status, page) = self.call("GET", "/api/changes?limit=200", None).await;
        assert_eq!(status, 200, "{page}");
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["event"]["action"] == action)
            .cloned()
            .collect()
    }
}

/// The owner's password, as the demo prints it on first start.
fn owner_password(demo: &DemoHandle) -> String {
    let printed = demo.instructions();
    let marker = format!("owner {DASHBOARD_OWNER} / password ");
    let at = printed
        .find(&marker)
        .expect("a fresh data dir prints the password")
        + marker.len();
    printed[at..].split_whitespace().next().unwrap().to_owned()
}

/// The demo's MCP endpoint and the API key it printed.
struct Endpoint {
    url: String,
    key: String,
}

fn endpoint(demo: &DemoHandle) -> Endpoint {
    Endpoint {
        url: demo.url().to_owned(),
        key: demo.api_key().expose_str().unwrap().to_owned(),
    }
}

/// One stateless (modern-era) JSON-RPC request to the MCP endpoint.
async fn rpc(endpoint: &Endpoint, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    });
    let mut request = reqwest::Client::new()
        .post(&endpoint.url)
        .header("x-api-key", &endpoint.key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    let reply = request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

async fn tools(url: &Endpoint) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = rpc(url, "tools/list", params).await;
        for tool in page["result"]["tools"].as_array().expect("tools") {
            names.push(tool["name"].as_str().unwrap().to_owned());
        }
        match page["result"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
}

async fn get_ticket(url: &Endpoint) -> Value {
    rpc(
        url,
        "tools/call",
        json!({"name": "zendesk__get_ticket", "arguments": {"ticket_id": 3}}),
    )
    .await
}

/// A definition uploaded as text: one tool over the helpdesk's ticket API.
const UPLOADED: &str = r#"
name = "tickets"
description = "Tickets of an in-house helpdesk."
version = "1"
base_url = "https://tickets.example.com"

[auth]
scheme = "bearer"

[[tools]]
name = "get_ticket"
description = "Read one ticket."
method = "GET"
path = "/api/v2/tickets/{ticket_id}.json"

[tools.input_schema]
type = "object"
required = ["ticket_id"]

[tools.input_schema.properties.ticket_id]
type = "integer"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_are_managed_from_the_dashboard_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let running = demo(&data).await;
    let url = endpoint(&running);
    let owner = Dash::login(
        running.dashboard_url().unwrap(),
        DASHBOARD_OWNER,
        &owner_password(&running),
    )
    .await;
    for (name, role) in [("aud", "auditor"), ("vic", "viewer"), ("adam", "admin")] {
        let (status, answer) = owner
            .call(
                "POST",
                "/api/accounts",
                Some(json!({"username": name, "password": PW, "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let admin = Dash::login(running.dashboard_url().unwrap(), "adam", PW).await;
    assert_eq!(admin.connectors().await, ["zendesk"]);
    assert!(
        tools(&url)
            .await
            .contains(&"zendesk__get_ticket".to_owned())
    );

    // Add a built-in connector: its tools are served at once.
    let crm = json!({"name": "crm", "kind": "rest", "config": {
        "definition": "salesforce", "settings": {"instance": "acme"}}});
    let (status, added) = admin
        .call("POST", "/api/connectors", Some(crm.clone()))
        .await;
    assert_eq!(status, 201, "{added}");
    let served = tools(&url).await;
    assert!(served.iter().any(|t| t.starts_with("crm__")), "{served:?}");
    // ... and an uploaded definition.
    let (status, added) = admin
        .call(
            "POST",
            "/api/connectors",
            Some(json!({"name": "tickets", "config": {"definition_toml": UPLOADED}})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert!(
        tools(&url)
            .await
            .contains(&"tickets__get_ticket".to_owned())
    );

    // Invalid requests are refused with the reason, and leave no Change Log entry.
    for (body, reason) in [
        (crm.clone(), "already exists"),
        (
            json!({"name": "bad", "config": {"definition_toml": "name = [1"}}),
            "the uploaded definition is invalid",
        ),
        (
            json!({"name": "bad", "config": {"definition": "github"}}),
            "no built-in connector definition",
        ),
        (
            json!({"name": "Bad Name", "config": {"definition": "zendesk"}}),
            "connector name",
        ),
    ] {
        let (status, answer) = admin.call("POST", "/api/connectors", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    }
    assert_eq!(admin.changes("connector.add").await.len(), 2);

    // An auditor and a viewer change nothing.
    for user in ["aud", "vic"] {
        let session = Dash::login(running.dashboard_url().unwrap(), user, PW).await;
        let (status, _) = session
            .call(
                "POST",
                "/api/connectors",
                Some(json!({"name": "x", "config": {"definition": "zendesk"}})),
            )
            .await;
        assert_eq!(status, 403, "{user} adds");
        let (status, _) = session
            .call("DELETE", "/api/connectors/zendesk", None)
            .await;
        assert_eq!(status, 403, "{user} removes");
        assert_eq!(session.connectors().await, ["zendesk", "crm", "tickets"]);
    }

    // Remove the helpdesk: its credential is deleted, its tools disappear, calls fail.
    assert!(get_ticket(&url).await["result"]["structuredContent"].is_object());
    let (status, removed) = admin.call("DELETE", "/api/connectors/zendesk", None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["credentials_deleted"], json!(["demo/zendesk"]));
    let (_, credentials) = admin.call("GET", "/api/credentials", None).await;
    assert_eq!(credentials, json!([]), "{credentials}");
    assert!(!tools(&url).await.iter().any(|t| t.starts_with("zendesk__")));
    let refused = get_ticket(&url).await;
    assert!(refused["error"].is_object(), "{refused}");

    // Add it again: served again, with the demo helpdesk's token.
    let (status, added) = admin
        .call(
            "POST",
            "/api/connectors",
            Some(json!({"name": "zendesk", "config": {"definition": "zendesk"}})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let answer = get_ticket(&url).await;
    assert_eq!(
        answer["result"]["structuredContent"]["subject"], "Invoice address change",
        "{answer}"
    );

    // The Change Log: who, what, before and after.
    let removals = admin.changes("connector.remove").await;
    assert_eq!(removals.len(), 1);
    let removal = &removals[0]["event"];
    assert_eq!(removal["subject"]["id"], "adam");
    assert_eq!(removal["resource"], "connector:zendesk");
    assert_eq!(removal["detail"]["before"]["name"], "zendesk");
    assert_eq!(
        removal["detail"]["after"]["credentials_deleted"],
        json!(["demo/zendesk"])
    );
    let adds = admin.changes("connector.add").await;
    let names: Vec<&str> = adds
        .iter()
        .map(|c| c["event"]["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["connector:zendesk", "connector:tickets", "connector:crm"]
    );
    assert!(adds[0]["event"]["detail"]["before"].is_null());
    assert_eq!(
        adds[0]["event"]["detail"]["after"]["config"]["definition"],
        "zendesk"
    );

    // A restart serves the same set.
    running.shutdown().await.unwrap();
    assert!(data.join(CONNECTORS_FILE).exists());
    let restarted = demo(&data).await;
    let served = tools(&endpoint(&restarted)).await;
    for prefix in ["crm__", "tickets__", "zendesk__"] {
        assert!(
            served.iter().any(|t| t.starts_with(prefix)),
            "{prefix}: {served:?}"
        );
    }
    assert_eq!(
        restarted.connectors().names().await,
        ["crm", "tickets", "zendesk"]
    );
    restarted.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_policy_is_edited_from_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let running = demo(&data).await;
    let url = endpoint(&running);
    let owner = Dash::login(
        running.dashboard_url().unwrap(),
        DASHBOARD_OWNER,
        &owner_password(&running),
    )
    .await;
    assert!(get_ticket(&url).await["result"].is_object());

    let (status, live) = owner.call("GET", "/api/policy?set=mcp", None).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["sets"], json!(["mcp"]));
    let docs = live["documents"].as_array().unwrap();
    assert!(docs.iter().any(|d| d["name"] == "demo.cedar"));
    assert!(
        docs.iter()
            .any(|d| d["name"] == "tool_arguments.cedarschema")
    );

    // Validated against the set's own schema: an argument the schema lacks is an error.
    let unknown_argument = r#"forbid (principal, action, resource)
when { context has tool_arguments && context.tool_arguments.no_such_field == "x" };"#;
    let (status, answer) = owner
        .call(
            "POST",
            "/api/policy/validate?set=mcp",
            Some(json!({"documents": [{"name": "extra.cedar", "text": unknown_argument}]})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");

    // Dry-run and apply a policy that forbids reading tickets: the next call is denied.
    let forbid = r#"@id("no-reading")
forbid (principal, action == Action::"tools/call", resource == Tool::"zendesk/get_ticket");"#;
    let candidate = json!({"documents": [{"name": "extra.cedar", "text": forbid}]});
    let (status, report) = owner
        .call(
            "POST",
            "/api/policy/dry-run?set=mcp",
            Some(candidate.clone()),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["set"], "mcp");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut report = report;
    // The audited call is recorded asynchronously: poll until the dry run sees it.
    while report["report"]["newly_denied"] != 1 {
        assert!(std::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        report = owner
            .call(
                "POST",
                "/api/policy/dry-run?set=mcp",
                Some(candidate.clone()),
            )
            .await
            .1;
    }
    let (status, applied) = owner
        .call("PUT", "/api/policy?set=mcp", Some(candidate))
        .await;
    assert_eq!(status, 200, "{applied}");
    let denied = get_ticket(&url).await;
    assert_eq!(
        denied["error"]["code"],
        fortress_mcp::seam::FORBIDDEN,
        "{denied}"
    );
    assert!(data.join("policy/extra.cedar").exists());
    let change = owner.changes("policy.update").await;
    assert_eq!(change[0]["event"]["resource"], "policy:mcp");
    let (status, _) = owner.call("GET", "/api/policy?set=pat", None).await;
    assert_eq!(status, 404);
    running.shutdown().await.unwrap();
}
