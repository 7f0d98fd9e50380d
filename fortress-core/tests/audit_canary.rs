//! Canary secrets: a credential, tool arguments, and request and response content that
//! pass through the governance stack must appear nowhere in the audit database files or
//! in any export format — while the events themselves are there.

use std::convert::Infallible;
use std::sync::Arc;

use fortress_core::audit::export::{ExportFormat, export};
use fortress_core::audit::keys::Ed25519KeyProvider;
use fortress_core::audit::query::AuditFilter;
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

const CANARY_SECRET: &str = "canary-secret-7f3a91c2";
const CANARY_ARGUMENT: &str = "canary-argument-5be1d0";
const CANARY_REQUEST: &str = "canary-request-body-33aa";
const CANARY_RESPONSE: &str = "canary-response-body-9c9c";

fn call(tool: &str) -> Call {
    Call::new(
        Subject::user("alice", WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool("zendesk", tool),
    )
    .with_attributes(Attributes {
        tool_arguments: Some(serde_json::json!({ "query": CANARY_ARGUMENT })),
        ..Attributes::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_never_reach_the_store_or_exports() {
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
    vault
        .put(
            &CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk"),
            Secret::from(CANARY_SECRET),
        )
        .await
        .unwrap();
    let stack = GovernanceStack::builder()
        .audit(sink.clone())
        .policy(Arc::new(AllowListPolicy::new([AllowRule::anyone(
            "tools/call",
            "tool:zendesk/search",
        )])))
        .redactor(Arc::new(PatternRedactor::basic()))
        .vault(vault)
        .responder(Arc::new(PlainResponder))
        .build()
        .unwrap();
    let upstream = tower::service_fn(|req: Request<body::Body>| async move {
        let auth = req.headers().get(http::header::AUTHORIZATION).cloned();
        assert!(auth.is_some_and(|v| v.as_bytes().ends_with(CANARY_SECRET.as_bytes())));
        Ok::<_, Infallible>(Response::new(body::full(format!(
            "found {CANARY_RESPONSE}"
        ))))
    });
    let service = stack.wrap(HeaderInjector::bearer(), upstream);

    for tool in ["search", "delete_everything"] {
        let mut req = Request::new(body::full(format!("{{\"q\":\"{CANARY_REQUEST}\"}}")));
        req.extensions_mut().insert(Arc::new(call(tool)));
        let response = service.clone().oneshot(req).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if tool == "search" {
            assert!(String::from_utf8_lossy(&bytes).contains(CANARY_RESPONSE));
        }
    }
    sink.flush().await.unwrap();

    // The events are there, with the arguments only as a keyed digest.
    let page = store
        .query(&fortress_core::audit::query::AuditQuery::oldest_first(10))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 2);
    let allowed = page.events[0].event().unwrap();
    let denied = page.events[1].event().unwrap();
    assert_eq!(allowed.outcome, Outcome::Success);
    assert_eq!(denied.outcome, Outcome::Denied);
    assert!(
        allowed
            .arguments_digest
            .as_deref()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert_eq!(allowed.arguments_digest, denied.arguments_digest);

    let mut exports = Vec::new();
    for format in [
        ExportFormat::JsonLines,
        ExportFormat::Csv,
        ExportFormat::Ocsf,
    ] {
        let mut out = Vec::new();
        let n = export(
            store.as_ref(),
            &AuditFilter::default(),
            format,
            &mut out,
            sink.as_ref(),
            SubjectRef {
                id: "dpo".into(),
                kind: SubjectKind::User,
            },
        )
        .await
        .unwrap();
        assert!(n >= 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("hmac-sha256:"), "{format:?} lacks the digest");
        exports.push(text);
    }
    sink.shutdown().await.unwrap();
    store.pool().close().await;

    let canaries = [
        CANARY_SECRET,
        CANARY_ARGUMENT,
        CANARY_REQUEST,
        CANARY_RESPONSE,
    ];
    let mut found_subject = false;
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for canary in canaries {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} found in the audit database"
            );
        }
        // The scan does look at real data: the subject is in there.
        found_subject |= bytes.windows(5).any(|w| w == b"alice");
    }
    assert!(found_subject, "the scan found no events at all");
    for text in &exports {
        assert!(text.contains("alice"));
        for canary in canaries {
            assert!(!text.contains(canary), "{canary} found in an export");
        }
    }
}
