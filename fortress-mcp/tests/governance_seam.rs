//! The governance seam in process: resources and prompts lists filtered per subject,
//! reads and prompts decided by policy, results redacted — with the Cedar engine and
//! the MCP result redaction, over a legacy session.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{initialize, post};
use fortress_core::audit::{MemoryAuditSink, Outcome};
use fortress_core::call::Call;
use fortress_core::decision::Effect;
use fortress_core::policy::{CedarEngine, PolicyDocuments};
use fortress_core::redact::DefaultRedactor;
use fortress_core::stack::GovernanceStack;
use fortress_core::vault::MemoryVault;
use fortress_mcp::governance::{Governance, McpResultRedaction};
use fortress_mcp::jsonrpc::{ErrorObject, Notification};
use fortress_mcp::seam::{DescribeLayer, JsonRpcResponder};
use fortress_mcp::server::{McpServer, ServerConfig};
use fortress_mcp::upstream::{CallContext, ServerDescription, Upstream};
use fortress_mcp::version::Era;
use fortress_mcp::virtual_server::{Naming, VirtualServer};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// An upstream with two resources, a template and two prompts.
struct Docs(broadcast::Sender<Notification>);

#[async_trait]
impl Upstream for Docs {
    fn name(&self) -> &str {
        "docs"
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        _ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let params = params.unwrap_or_default();
        match method {
            "resources/list" => Ok(json!({"resources": [
                {"uri": "file:///public.txt", "name": "public"},
                {"uri": "file:///secret.txt", "name": "secret"},
            ]})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": [
                {"uriTemplate": "file:///public/{name}", "name": "public files"},
                {"uriTemplate": "file:///secret/{name}", "name": "secret files"},
            ]})),
            "resources/read" => {
                let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
                Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain",
                    "text": "contact jane.roe@example.com"}]}))
            }
            "prompts/list" => Ok(json!({"prompts": [{"name": "greet"}, {"name": "admin"}]})),
            "prompts/get" => Ok(json!({"messages": [{"role": "user", "content":
                {"type": "text", "text": "greet jane.roe@example.com"}}]})),
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        Ok(ServerDescription {
            era: Era::Legacy,
            protocol_version: "2025-11-25".into(),
            capabilities: json!({"resources": {}, "prompts": {}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            server_info: None,
            instructions: None,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.0.subscribe()
    }
}

const POLICY: &str = r#"
permit (principal, action in [Action::"resources/list", Action::"prompts/list"], resource is Workspace);
permit (principal, action in [Action::"resources/list", Action::"resources/read"],
        resource in Connector::"docs")
when { resource == Resource::"docs/file:///public.txt" || resource == Resource::"docs/file:///public/{name}" };
permit (principal, action in [Action::"prompts/list", Action::"prompts/get"], resource == Prompt::"docs/greet");
"#;

#[tokio::test]
async fn lists_show_only_what_the_subject_may_use_and_results_are_masked() {
    let audit = Arc::new(MemoryAuditSink::new());
    let policy = Arc::new(
        CedarEngine::new(&PolicyDocuments::new().with_policies("p.cedar", POLICY)).unwrap(),
    );
    let stack = GovernanceStack::builder()
        .audit(audit.clone())
        .policy(policy.clone())
        .redactor(Arc::new(DefaultRedactor::new()))
        .body_redaction(Arc::new(McpResultRedaction::default()))
        .vault(Arc::new(MemoryVault::new()))
        .credential_slots(Arc::new(|_: &Call| None))
        .responder(Arc::new(JsonRpcResponder))
        .build()
        .unwrap();
    let upstream: Arc<dyn Upstream> = Arc::new(Docs(broadcast::channel(4).0));
    let server = Arc::new(VirtualServer::new(vec![upstream], Naming::default()).unwrap());
    let seam = Governance::new(stack, policy, None)
        .seam(server.clone(), DescribeLayer::anonymous(server.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let endpoint = McpServer::new(ServerConfig::default(), server, seam);
    tokio::spawn(async move { endpoint.serve(listener, signal).await });

    let session = initialize(&url).await;
    let h = [("mcp-session-id", session.as_str())];
    let call = |id: i64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let resources = post(&url, &h, call(1, "resources/list", json!({})))
        .await
        .json();
    assert_eq!(
        resources["result"]["resources"],
        json!([{"uri": "docs__file:///public.txt", "name": "public"}])
    );
    let templates = post(&url, &h, call(2, "resources/templates/list", json!({})))
        .await
        .json();
    let names: Vec<&str> = templates["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public files"]);
    let prompts = post(&url, &h, call(3, "prompts/list", json!({})))
        .await
        .json();
    assert_eq!(
        prompts["result"]["prompts"],
        json!([{"name": "docs__greet"}])
    );

    let read = post(
        &url,
        &h,
        call(
            4,
            "resources/read",
            json!({"uri": "docs__file:///public.txt"}),
        ),
    )
    .await
    .json();
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("contact ") && !text.contains("jane.roe"),
        "{text}"
    );
    let secret = post(
        &url,
        &h,
        call(
            5,
            "resources/read",
            json!({"uri": "docs__file:///secret.txt"}),
        ),
    )
    .await
    .json();
    assert_eq!(secret["error"]["code"], fortress_mcp::seam::FORBIDDEN);
    let prompt = post(
        &url,
        &h,
        call(6, "prompts/get", json!({"name": "docs__greet"})),
    )
    .await
    .json();
    let text = prompt["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(!text.contains("jane.roe"), "{text}");
    let admin = post(
        &url,
        &h,
        call(7, "prompts/get", json!({"name": "docs__admin"})),
    )
    .await
    .json();
    assert!(
        admin["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("denied by policy")
    );

    let events = audit.wait_for(7).await;
    let hidden: Vec<&Value> = events
        .iter()
        .filter_map(|e| e.detail.get("hidden_items"))
        .collect();
    assert_eq!(
        hidden,
        [&json!(1), &json!(1), &json!(1)],
        "one hidden per list"
    );

    // A name that matches no upstream is refused in front of the stack, and audited as
    // every other refusal is (answered only once recorded).
    let unknown = post(
        &url,
        &h,
        call(
            8,
            "tools/call",
            json!({"name": "nowhere__search", "arguments": {}}),
        ),
    )
    .await
    .json();
    assert_eq!(
        unknown["error"]["code"],
        fortress_mcp::jsonrpc::INVALID_PARAMS
    );
    let events = audit.events();
    let refusal = events
        .iter()
        .find(|e| e.detail.get("refused_by") == Some(&json!("unknown_target")))
        .expect("the unknown tool is audited");
    assert_eq!(refusal.outcome, Outcome::Denied);
    assert_eq!(refusal.action, "tools/call");
    assert_eq!(refusal.resource, "tool:nowhere__search");
    assert_eq!(refusal.connector, None);
    let decision = refusal.decision.as_ref().expect("a decision");
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.reasons[0].contains("unknown tool"), "{decision:?}");
    stop.cancel();
}
