//! Tool arguments in the audit trail: by default only a keyed digest; a workspace that
//! opted in gets its arguments recorded too, after redaction — never a PII value or a
//! credential-shaped canary, in the database files or an export. The opt-in is live.

use std::convert::Infallible;
use std::sync::Arc;

use fortress_core::audit::arguments::RedactedArguments;
use fortress_core::audit::export::{ExportFormat, export};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::query::{AuditFilter, AuditQuery};
use fortress_core::audit::store::{AuditStore, SqliteAuditStore};
use fortress_core::audit::{DurableAuditSink, SinkConfig, SubjectRef};
use fortress_core::body;
use fortress_core::call::{Action, Attributes, Call, Resource};
use fortress_core::policy::AllowRule;
use fortress_core::prelude::*;
use fortress_core::vault::CredentialSlot;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

const EMAIL: &str = "jane.doe@example.com";
const SSN: &str = "123-45-6789";
const CANARY_KEY: &str = "sk-ant-canary0123456789abcdef";
const KEPT: &str = "ticket-4711";

fn call(user: &str, workspace: &str) -> Call {
    Call::new(
        Subject::user(user, WorkspaceId::new(workspace)),
        Action::CallTool,
        Resource::tool("zendesk", "search"),
    )
    .with_attributes(Attributes {
        tool_arguments: Some(serde_json::json!({
            "query": format!("{KEPT} opened by {EMAIL}"),
            "ssn": SSN,
            "nested": { "token": CANARY_KEY, "limit": 5 },
        })),
        ..Attributes::default()
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_a_digest_by_default_and_redacted_for_opted_in_workspaces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Arc::new(
        SqliteAuditStore::open_in(&data)
            .await
            .unwrap()
            .with_signer(Arc::new(Ed25519KeyProvider::generate())),
    );
    let sink = Arc::new(DurableAuditSink::start(
        store.clone(),
        SinkConfig::default(),
    ));
    let vault = Arc::new(MemoryVault::new());
    for ws in ["acme", "globex"] {
        vault
            .put(
                &CredentialSlot::workspace(WorkspaceId::new(ws), "zendesk"),
                Secret::from("upstream-token"),
            )
            .await
            .unwrap();
    }
    let opt_in = RedactedArguments::new(["globex"]);
    let stack = GovernanceStack::builder()
        .audit(sink.clone())
        .audit_redacted_arguments(opt_in.clone())
        .policy(Arc::new(AllowListPolicy::new([AllowRule::anyone(
            "tools/call",
            "tool:zendesk/search",
        )])))
        .redactor(Arc::new(PatternRedactor::basic()))
        .vault(vault)
        .responder(Arc::new(PlainResponder))
        .build()
        .unwrap();
    let upstream = tower::service_fn(|_: Request<body::Body>| async move {
        Ok::<_, Infallible>(Response::new(body::full("ok")))
    });
    let service = stack.wrap(HeaderInjector::bearer(), upstream);
    let send = |call: Call| {
        let service = service.clone();
        async move {
            let mut req = Request::new(body::full("{}"));
            req.extensions_mut().insert(Arc::new(call));
            let response = service.oneshot(req).await.unwrap();
            response.into_body().collect().await.unwrap();
        }
    };

    send(call("alice", "acme")).await;
    send(call("bob", "globex")).await;
    // The opt-in is live: acme opts in, globex out.
    opt_in.replace(["acme"]);
    send(call("carol", "acme")).await;
    send(call("dave", "globex")).await;
    sink.flush().await.unwrap();

    let page = store.query(&AuditQuery::oldest_first(10)).await.unwrap();
    let events: Vec<_> = page.events.iter().map(|r| r.event().unwrap()).collect();
    assert_eq!(events.len(), 4);
    for event in &events {
        assert!(
            event
                .arguments_digest
                .as_deref()
                .is_some_and(|d| d.starts_with("hmac-sha256:"))
        );
    }
    // Same arguments, same digest, whatever the workspace's choice.
    assert!(
        events
            .windows(2)
            .all(|w| w[0].arguments_digest == w[1].arguments_digest)
    );
    let recorded: Vec<_> = events.iter().map(|e| e.arguments.clone()).collect();
    assert!(recorded[0].is_none(), "acme did not opt in: digest only");
    assert!(recorded[3].is_none(), "globex opted out again");
    for arguments in [&recorded[1], &recorded[2]] {
        let arguments = arguments.as_ref().expect("opted in: arguments recorded");
        let text = arguments.to_string();
        assert!(text.contains(KEPT), "non-sensitive text is kept: {text}");
        assert_eq!(arguments["nested"]["limit"], 5, "structure is kept: {text}");
        for secret in [EMAIL, SSN, CANARY_KEY] {
            assert!(!text.contains(secret), "{secret} recorded: {text}");
        }
    }

    let mut out = Vec::new();
    export(
        store.as_ref(),
        &AuditFilter::default(),
        ExportFormat::JsonLines,
        &mut out,
        sink.as_ref(),
        SubjectRef {
            id: "dpo".into(),
            kind: SubjectKind::User,
        },
    )
    .await
    .unwrap();
    sink.shutdown().await.unwrap();
    store.pool().close().await;

    assert!(contains(&out, KEPT), "the export carries the redacted arguments");
    let mut kept_in_files = false;
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        kept_in_files |= contains(&bytes, KEPT);
        for secret in [EMAIL, SSN, CANARY_KEY] {
            assert!(!contains(&bytes, secret), "{secret} found in the database");
        }
    }
    assert!(kept_in_files, "the scan found no recorded arguments at all");
    for secret in [EMAIL, SSN, CANARY_KEY] {
        assert!(!contains(&out, secret), "{secret} found in the export");
    }
}
