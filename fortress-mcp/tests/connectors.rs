//! The Zendesk and Salesforce connectors end to end: a client reaches each tool through the
//! real endpoint, the seam and the core governance stack, whose credential layer resolves the
//! token from a real envelope vault on SQLite; the mock SaaS checks it exactly. Canary tokens
//! must surface in no log line, audit record, error or response.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{initialize, post};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::{
    AuditSink as _, AuditStore, DurableAuditSink, SinkConfig, SqliteAuditStore,
};
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::DefaultRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::keys::{ManagedKeys, RootKey};
use fortress_core::vault::{Credential, CredentialSlot, EnvelopeVault, Vault};
use fortress_mcp::connector::{RestOptions, RestUpstream, builtin};
use fortress_mcp::jsonrpc::{INVALID_PARAMS, UPSTREAM_ERROR};
use fortress_mcp::mock::{MockSalesforce, MockZendesk};
use fortress_mcp::server::ServerConfig;
use fortress_mcp::upstream::{CallContext, Upstream};
use fortress_mcp::version::ClientContext;
use fortress_mcp::virtual_server::Naming;
use serde_json::{Value, json};

const ZENDESK_CANARY: &str = "zd-CANARY-4f1c9e07b2aa";
const SALESFORCE_CANARY: &str = "00D-CANARY-sf-77e1d3a9c5";
const WRONG_TOKEN: &str = "zd-WRONG-0b3e5d";
const EMAIL: &str = "agent@acme.example";

/// Every log line of this test binary, at debug level and trace for Fortress.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,fortress_mcp=trace,fortress_core=trace",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole deployment: mocks, vault, audit, stack, endpoint.
struct Deployment {
    dir: tempfile::TempDir,
    url: String,
    session: String,
    zendesk: MockZendesk,
    salesforce: MockSalesforce,
    store: Arc<SqliteAuditStore>,
    audit: Arc<DurableAuditSink>,
    replies: Mutex<Vec<String>>,
    _running: common::Running,
}

fn slot(connector: &str) -> CredentialSlot {
    // The anonymous local subject's workspace.
    CredentialSlot::workspace(WorkspaceId::new("local"), connector)
}

impl Deployment {
    async fn start() -> Self {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteAuditStore::open_in(dir.path())
                .await
                .unwrap()
                .with_signer(Arc::new(Ed25519KeyProvider::generate())),
        );
        let audit = Arc::new(DurableAuditSink::start(
            store.clone(),
            SinkConfig::default(),
        ));
        let vault = Arc::new(
            EnvelopeVault::open_sqlite(
                dir.path(),
                Arc::new(ManagedKeys::new(RootKey::generate())),
                audit.clone(),
            )
            .await
            .unwrap(),
        );
        vault
            .put(&slot("zendesk"), Secret::from(ZENDESK_CANARY))
            .await
            .unwrap();
        vault
            .put(&slot("salesforce"), Secret::from(SALESFORCE_CANARY))
            .await
            .unwrap();
        vault
            .put(&slot("helpdesk"), Secret::from(WRONG_TOKEN))
            .await
            .unwrap();

        let zendesk = MockZendesk::start(EMAIL, ZENDESK_CANARY).await.unwrap();
        let salesforce = MockSalesforce::start(SALESFORCE_CANARY, 2).await.unwrap();
        let rest = |name: &str, definition: &str, base: String| {
            let mut options = RestOptions {
                base_url: Some(base),
                ..RestOptions::default()
            };
            if definition == "zendesk" {
                options.settings.insert("email".into(), EMAIL.into());
            }
            Arc::new(RestUpstream::new(name, builtin(definition).unwrap(), options).unwrap())
                as Arc<dyn Upstream>
        };
        let upstreams = vec![
            rest("zendesk", "zendesk", zendesk.base_url()),
            rest("salesforce", "salesforce", salesforce.base_url()),
            // Same helpdesk, but the vault holds a token it does not accept.
            rest("helpdesk", "zendesk", zendesk.base_url()),
        ];
        let stack = GovernanceStack::builder()
            .audit(audit.clone())
            .policy(Arc::new(AllowListPolicy::new([
                AllowRule::anyone("tools/list", "*"),
                AllowRule::anyone("tools/call", "tool:*"),
            ])))
            .redactor(Arc::new(DefaultRedactor::new()))
            .vault(vault)
            .responder(Arc::new(fortress_mcp::seam::JsonRpcResponder))
            .build()
            .unwrap();
        let running = common::serve(
            upstreams,
            Naming::default(),
            ServerConfig::default(),
            Some(&stack),
        )
        .await;
        let session = initialize(&running.url).await;
        Self {
            dir,
            url: running.url.clone(),
            session,
            zendesk,
            salesforce,
            store,
            audit,
            replies: Mutex::new(Vec::new()),
            _running: running,
        }
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        let reply = post(
            &self.url,
            &[("mcp-session-id", &self.session)],
            json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        self.replies.lock().unwrap().push(reply.body.clone());
        reply.json()
    }

    /// A tools/call's result (panics on a JSON-RPC error).
    async fn call(&self, tool: &str, arguments: Value) -> Value {
        let reply = self
            .rpc("tools/call", json!({"name": tool, "arguments": arguments}))
            .await;
        assert!(reply.get("error").is_none(), "{tool}: {reply}");
        reply["result"].clone()
    }

    /// A tools/call's JSON-RPC error.
    async fn call_error(&self, tool: &str, arguments: Value) -> Value {
        let reply = self
            .rpc("tools/call", json!({"name": tool, "arguments": arguments}))
            .await;
        reply
            .get("error")
            .cloned()
            .unwrap_or_else(|| panic!("{tool}: expected an error, got {reply}"))
    }

    /// The canaries appear nowhere: responses, log lines, audit records, files on disk.
    async fn assert_no_canary(&self) {
        self.audit.flush().await.unwrap();
        let events = self.store.events_after(0, 100_000).await.unwrap();
        assert!(events.len() >= 3, "calls were audited: {}", events.len());
        let audit_text = format!("{events:?}");
        let replies = self.replies.lock().unwrap().join("\n");
        let log_text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        assert!(!log_text.is_empty(), "logs were captured");
        for canary in [ZENDESK_CANARY, SALESFORCE_CANARY, WRONG_TOKEN] {
            assert!(!replies.contains(canary), "a response carries {canary}");
            assert!(!log_text.contains(canary), "a log line carries {canary}");
            assert!(
                !audit_text.contains(canary),
                "an audit record carries {canary}"
            );
            for entry in walk(self.dir.path()) {
                let bytes = std::fs::read(&entry).unwrap_or_default();
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{} holds {canary} in clear",
                    entry.display()
                );
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_zendesk_tool_works_with_the_vault_credential() {
    let d = Deployment::start().await;

    // One virtual page per upstream: follow the cursors.
    let mut tools = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = d.rpc("tools/list", json!({"cursor": cursor})).await;
        tools.extend(page["result"]["tools"].as_array().unwrap().iter().cloned());
        cursor = page["result"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in [
        "zendesk__search_tickets",
        "zendesk__get_ticket",
        "zendesk__add_comment",
        "zendesk__update_ticket",
        "salesforce__query",
        "salesforce__get_record",
        "salesforce__update_record",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let search_tool = tools
        .iter()
        .find(|t| t["name"] == "zendesk__search_tickets")
        .unwrap();
    assert_eq!(search_tool["annotations"]["readOnlyHint"], true);
    assert_eq!(search_tool["inputSchema"]["required"], json!(["query"]));

    // search_tickets: the query reaches Zendesk's search syntax; PII in the answer is masked.
    let found = d
        .call("zendesk__search_tickets", json!({"query": "refund"}))
        .await;
    assert_eq!(found["isError"], false, "{found}");
    let tickets = found["structuredContent"]["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 1, "{found}");
    assert_eq!(tickets[0]["subject"], "Refund for order #4821");
    assert_eq!(found["structuredContent"]["count"], 1);
    assert!(
        !found.to_string().contains("jane.roe@example.com"),
        "{found}"
    );
    assert!(!text(&found).contains("jane.roe@example.com"));
    let open = d
        .call(
            "zendesk__search_tickets",
            json!({"query": "status:open", "per_page": 5}),
        )
        .await;
    assert!(
        open["structuredContent"]["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "open")
    );

    // get_ticket.
    let ticket = d.call("zendesk__get_ticket", json!({"ticket_id": 2})).await;
    assert_eq!(ticket["structuredContent"]["id"], 2);
    assert_eq!(ticket["structuredContent"]["status"], "new");

    // add_comment: a private note lands on the ticket.
    let commented = d
        .call(
            "zendesk__add_comment",
            json!({"ticket_id": 1, "body": "Refund issued {ticket_id}", "public": false}),
        )
        .await;
    assert_eq!(commented["isError"], false, "{commented}");
    let comments = d.zendesk.comments(1);
    let last = comments.last().unwrap();
    assert_eq!(
        last["body"], "Refund issued {ticket_id}",
        "no template injection"
    );
    assert_eq!(last["public"], false);

    // update_ticket: typed values (array, string) reach the ticket.
    let updated = d
        .call(
            "zendesk__update_ticket",
            json!({"ticket_id": 1, "status": "solved", "priority": "low", "tags": ["billing", "refunded"]}),
        )
        .await;
    assert_eq!(
        updated["structuredContent"]["status"], "solved",
        "{updated}"
    );
    let stored = d.zendesk.ticket(1).unwrap();
    assert_eq!(stored["status"], "solved");
    assert_eq!(stored["priority"], "low");
    assert_eq!(stored["tags"], json!(["billing", "refunded"]));
    assert_eq!(d.zendesk.rejected_requests(), 0);
    assert_eq!(d.zendesk.authenticated_requests(), 5);

    // Bad arguments never reach the SaaS.
    for (tool, arguments) in [
        ("zendesk__get_ticket", json!({"ticket_id": "1/../../admin"})),
        ("zendesk__get_ticket", json!({})),
        (
            "zendesk__search_tickets",
            json!({"query": "x", "per_page": 500}),
        ),
        ("zendesk__update_ticket", json!({"ticket_id": 1})),
        (
            "zendesk__update_ticket",
            json!({"ticket_id": 1, "status": "deleted"}),
        ),
        (
            "zendesk__add_comment",
            json!({"ticket_id": 1, "body": "x", "cc": "y"}),
        ),
    ] {
        let error = d.call_error(tool, arguments.clone()).await;
        assert_eq!(error["code"], INVALID_PARAMS, "{tool} {arguments}: {error}");
    }
    let error = d
        .call_error("zendesk__get_ticket", json!({"ticket_id": "secret-ish"}))
        .await;
    assert!(
        !error.to_string().contains("secret-ish"),
        "argument values are not echoed: {error}"
    );
    assert_eq!(d.zendesk.authenticated_requests(), 5);

    // SaaS errors are tool results the model can read.
    let missing = d
        .call("zendesk__get_ticket", json!({"ticket_id": 999}))
        .await;
    assert_eq!(missing["isError"], true);
    assert_eq!(
        text(&missing),
        "zendesk answered HTTP 404 Not Found: RecordNotFound: Not found"
    );
    let closed = d
        .zendesk
        .insert_ticket(json!({"subject": "old", "status": "closed"}));
    let refused = d
        .call(
            "zendesk__update_ticket",
            json!({"ticket_id": closed, "priority": "high"}),
        )
        .await;
    assert_eq!(refused["isError"], true);
    assert!(text(&refused).contains("HTTP 422"), "{refused}");
    assert!(text(&refused).contains("RecordInvalid"), "{refused}");

    // The mock checks the credential exactly: a wrong token is Zendesk's real 401.
    let wrong = d
        .call("helpdesk__get_ticket", json!({"ticket_id": 1}))
        .await;
    assert_eq!(wrong["isError"], true);
    assert_eq!(
        text(&wrong),
        "helpdesk answered HTTP 401 Unauthorized: Couldn't authenticate you"
    );
    assert_eq!(d.zendesk.rejected_requests(), 1);

    d.assert_no_canary().await;
}

#[tokio::test]
async fn every_salesforce_tool_works_with_the_vault_credential() {
    let d = Deployment::start().await;
    for i in 0..3 {
        d.salesforce.insert(
            "Account",
            json!({"Name": format!("Zeta {i}"), "Industry": "Retail"}),
        );
    }

    // query: five accounts in pages of two, all returned from one call.
    let result = d
        .call(
            "salesforce__query",
            json!({"soql": "SELECT Id, Name FROM Account ORDER BY Name"}),
        )
        .await;
    let answer = &result["structuredContent"];
    assert_eq!(answer["totalSize"], 5, "{result}");
    assert_eq!(answer["done"], true, "{result}");
    let names: Vec<&str> = answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["Name"].as_str())
        .collect();
    assert_eq!(names, ["Acme Corp", "Globex", "Zeta 0", "Zeta 1", "Zeta 2"]);
    assert_eq!(d.salesforce.authenticated_requests(), 3, "three pages");

    // get_record, only some fields; the e-mail is masked.
    let contact = d.salesforce.ids("Contact")[0].clone();
    let record = d
        .call(
            "salesforce__get_record",
            json!({"sobject": "Contact", "id": contact, "fields": ["Title", "Email"]}),
        )
        .await;
    assert_eq!(record["structuredContent"]["Title"], "CFO", "{record}");
    assert!(
        record["structuredContent"].get("Phone").is_none(),
        "{record}"
    );
    assert!(
        !record.to_string().contains("jane.roe@example.com"),
        "{record}"
    );

    // update_record: PATCH, 204, the declared empty answer.
    let case = d.salesforce.ids("Case")[0].clone();
    let updated = d
        .call(
            "salesforce__update_record",
            json!({"sobject": "Case", "id": case, "fields": {"Status": "Closed", "Priority": "Low"}}),
        )
        .await;
    assert_eq!(
        updated["structuredContent"],
        json!({"sobject": "Case", "id": case, "updated": true})
    );
    let stored = d.salesforce.record("Case", &case).unwrap();
    assert_eq!(stored["Status"], "Closed");
    assert_eq!(stored["Priority"], "Low");

    // SaaS errors.
    let malformed = d
        .call(
            "salesforce__query",
            json!({"soql": "SELEC Id FROM Account"}),
        )
        .await;
    assert_eq!(malformed["isError"], true);
    assert!(
        text(&malformed).starts_with("salesforce answered HTTP 400 Bad Request: MALFORMED_QUERY"),
        "{malformed}"
    );
    let missing = d
        .call(
            "salesforce__get_record",
            json!({"sobject": "Account", "id": "001000000000999AAA"}),
        )
        .await;
    assert_eq!(missing["isError"], true);
    assert_eq!(
        text(&missing),
        "salesforce answered HTTP 404 Not Found: NOT_FOUND: The requested resource does not exist"
    );
    let bad_field = d
        .call(
            "salesforce__update_record",
            json!({"sobject": "Case", "id": case, "fields": {"Nope": 1}}),
        )
        .await;
    assert!(text(&bad_field).contains("INVALID_FIELD"), "{bad_field}");

    // Bad arguments: path traversal and smuggling are refused before any request.
    let before = d.salesforce.authenticated_requests();
    for arguments in [
        json!({"sobject": "Account", "id": "../../query?q=x"}),
        json!({"sobject": "../sobjects", "id": "001000000000001AAA"}),
        json!({"sobject": "Account"}),
        json!({"sobject": "Account", "id": "001000000000001AAA", "fields": "Name"}),
    ] {
        let error = d
            .call_error("salesforce__get_record", arguments.clone())
            .await;
        assert_eq!(error["code"], INVALID_PARAMS, "{arguments}: {error}");
    }
    let error = d
        .call_error(
            "salesforce__update_record",
            json!({"sobject": "Case", "id": case, "fields": {}}),
        )
        .await;
    assert_eq!(error["code"], INVALID_PARAMS);
    assert_eq!(d.salesforce.authenticated_requests(), before);
    assert_eq!(d.salesforce.rejected_requests(), 0);

    d.assert_no_canary().await;
}

/// A SaaS that accepts the connection and never answers: the call ends with a JSON-RPC
/// error (not a hang, not a tool result), and the credential is not in it.
#[tokio::test]
async fn a_saas_timeout_is_a_json_rpc_error() {
    logs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = accepted_tx.try_send(());
        }
    });
    let options = RestOptions {
        base_url: Some(format!("http://{addr}")),
        request_timeout: Duration::from_millis(300),
        ..RestOptions::default()
    };
    let upstream =
        RestUpstream::new("salesforce", builtin("salesforce").unwrap(), options).unwrap();
    let mut ctx = CallContext::detached(Arc::new(ClientContext::legacy(
        "2025-11-25",
        Default::default(),
        None,
    )));
    ctx.credential = Some(Arc::new(Credential::new(
        slot("salesforce"),
        1,
        Secret::from(SALESFORCE_CANARY),
    )));
    let params = json!({"name": "query", "arguments": {"soql": "SELECT Id FROM Account"}});
    let error = upstream
        .request("tools/call", params.as_object().cloned(), ctx)
        .await
        .unwrap_err();
    assert!(accepted.recv().await.is_some(), "the request was sent");
    assert_eq!(error.code, UPSTREAM_ERROR);
    assert!(
        error.message.contains("did not answer within 0.3s"),
        "{}",
        error.message
    );
    assert!(!format!("{error:?}").contains(SALESFORCE_CANARY));

    // Without a credential from the stack, nothing is sent.
    let ctx = CallContext::detached(Arc::new(ClientContext::legacy(
        "2025-11-25",
        Default::default(),
        None,
    )));
    let error = upstream
        .request("tools/call", params.as_object().cloned(), ctx)
        .await
        .unwrap_err();
    assert_eq!(error.code, fortress_mcp::seam::CREDENTIAL_UNAVAILABLE);
}

/// `kind = "rest"` in the configuration file builds connectors; mistakes are named.
#[tokio::test]
async fn rest_connectors_are_configured_in_toml() {
    let config: fortress_mcp::config::Config = toml::from_str(
        r#"
        [[upstream]]
        name = "zendesk"
        kind = "rest"
        definition = "zendesk"
        settings = { subdomain = "acme", email = "agent@acme.example" }

        [[upstream]]
        name = "crm"
        kind = "rest"
        definition = "salesforce"
        base_url = "http://127.0.0.1:9"
        "#,
    )
    .unwrap();
    let server = config.virtual_server().unwrap();
    let upstreams = server.upstreams();
    let names: Vec<&str> = upstreams.iter().map(|u| u.name()).collect();
    assert_eq!(names, ["zendesk", "crm"]);
    let described = server.upstreams()[1].describe().await.unwrap();
    assert!(described.capabilities.contains_key("tools"));

    for (upstream, expected) in [
        (r#"kind = "soap""#, "unknown kind"),
        (r#"kind = "rest""#, "needs `definition`"),
        (
            r#"kind = "rest"
            definition = "jira""#,
            "no built-in connector",
        ),
        (
            r#"kind = "rest"
            definition = "zendesk""#,
            "setting \"subdomain\": required",
        ),
        (
            r#"kind = "rest"
            definition = "/nonexistent/x.toml""#,
            "cannot read",
        ),
    ] {
        let text = format!("[[upstream]]\nname = \"x\"\n{upstream}\n");
        let config: fortress_mcp::config::Config = toml::from_str(&text).unwrap();
        let error = config.virtual_server().map(|_| ()).unwrap_err().to_string();
        assert!(error.contains(expected), "{upstream}: {error}");
    }
}

const SF_CLIENT_SECRET: &str = "sf-CANARY-client-secret-5d1e";
const SF_REFRESH_TOKEN: &str = "sf-CANARY-refresh-9c3b7a";

/// Salesforce with a connected app's registration in the vault: the connector obtains an
/// access token from the token endpoint (refresh-token grant), reuses it for later calls
/// until the org ends the session, then fetches a new one; a refused grant is a clear
/// credential error; the client-credentials grant works too. Registration and tokens appear
/// in no answer, error or log line.
#[tokio::test]
async fn salesforce_access_tokens_come_from_the_token_endpoint_and_are_renewed() {
    logs();
    let app = fortress_mcp::mock::MockOAuthClient {
        client_id: "3MVG9-mock-consumer-key".into(),
        client_secret: SF_CLIENT_SECRET.into(),
        refresh_token: SF_REFRESH_TOKEN.into(),
    };
    let mock = MockSalesforce::start_with_oauth(app, 2000).await.unwrap();
    let options = RestOptions {
        base_url: Some(mock.base_url()),
        ..RestOptions::default()
    };
    let upstream =
        RestUpstream::new("salesforce", builtin("salesforce").unwrap(), options).unwrap();
    let call = |version: u32, registration: Value| {
        let mut ctx = CallContext::detached(Arc::new(ClientContext::legacy(
            "2025-11-25",
            Default::default(),
            None,
        )));
        ctx.credential = Some(Arc::new(Credential::new(
            slot("salesforce"),
            version,
            Secret::from(registration.to_string()),
        )));
        let params =
            json!({"name": "query", "arguments": {"soql": "SELECT Id, Name FROM Account"}});
        let upstream = &upstream;
        async move {
            upstream
                .request("tools/call", params.as_object().cloned(), ctx)
                .await
        }
    };
    let refresh = json!({
        "client_id": "3MVG9-mock-consumer-key",
        "client_secret": SF_CLIENT_SECRET,
        "refresh_token": SF_REFRESH_TOKEN,
    });
    let mut answers = Vec::new();
    for _ in 0..3 {
        let result = call(1, refresh.clone()).await.expect("the query runs");
        assert_eq!(result["isError"], false, "{result}");
        assert!(result.to_string().contains("Acme Corp"), "{result}");
        answers.push(result.to_string());
    }
    // One token for three calls: cached.
    assert_eq!(mock.tokens_issued(), 1);
    assert_eq!(upstream.tokens_fetched(), 1);

    // The org ends the session: the refused token is replaced and the call still succeeds.
    mock.expire_sessions();
    let result = call(1, refresh.clone()).await.expect("renewed");
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(mock.tokens_issued(), 2);

    // A rotated registration (new version) with a revoked refresh token: refused, clearly.
    let mut revoked = refresh.clone();
    revoked["refresh_token"] = json!("sf-CANARY-revoked-0000");
    let error = call(2, revoked).await.unwrap_err();
    assert_eq!(error.code, fortress_mcp::seam::CREDENTIAL_UNAVAILABLE);
    assert!(error.message.contains("invalid_grant"), "{}", error.message);
    answers.push(format!("{error:?}"));

    // The client-credentials grant (no refresh token).
    let client_only =
        json!({"client_id": "3MVG9-mock-consumer-key", "client_secret": SF_CLIENT_SECRET});
    let result = call(3, client_only).await.expect("client credentials");
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(mock.tokens_issued(), 3);
    answers.push(result.to_string());

    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    for text in answers.iter().chain([&logs]) {
        for canary in [SF_CLIENT_SECRET, SF_REFRESH_TOKEN, "00DMOCK!"] {
            assert!(!text.contains(canary), "a credential leaked");
        }
    }
}
