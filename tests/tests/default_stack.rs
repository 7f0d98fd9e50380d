//! The default engines working together through the governance stack: Cedar policy, the
//! envelope-encrypted SQLite vault, the default redactor and the hash-chained audit store.
//! A canary credential is used for real and must surface nowhere.

use std::sync::Arc;

use bytes::Bytes;
use fortress_core::audit::keys::{Ed25519KeyProvider, TrustedKeys};
use fortress_core::audit::{
    AuditSink, AuditStore, DurableAuditSink, Outcome, SinkConfig, SqliteAuditStore, VerifyOptions,
    verify_store,
};
use fortress_core::body::{self, Body};
use fortress_core::call::{Action, Call, Resource};
use fortress_core::denial::PlainResponder;
use fortress_core::layer::credential::{ExtensionInjector, InjectedCredential};
use fortress_core::policy::{CedarEngine, PolicyDocuments};
use fortress_core::redact::DefaultRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::keys::{ManagedKeys, RootKey};
use fortress_core::vault::{CredentialSlot, EnvelopeVault, Vault};
use http_body_util::BodyExt;
use tower::{ServiceExt, service_fn};

const CANARY: &str = "zd-CANARY-5b1e0f9a7c3d";

const POLICY: &str = r#"
@id("support-search")
@reason("support agents may search Zendesk tickets")
permit (principal in Group::"support", action == Action::"tools/call", resource == Tool::"zendesk/search_tickets");

@id("support-crm")
permit (principal in Group::"support", action == Action::"tools/call", resource == Tool::"crm/lookup");

@id("no-deletes")
@reason("tickets are never deleted through assistants")
forbid (principal, action == Action::"tools/call", resource == Tool::"zendesk/delete_ticket");
"#;

fn call(tool: (&str, &str)) -> Arc<Call> {
    let subject = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["support"]);
    Arc::new(Call::new(
        subject,
        Action::CallTool,
        Resource::tool(tool.0, tool.1),
    ))
}

async fn text(response: http::Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn default_engines_govern_a_call_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(Ed25519KeyProvider::generate());
    let trusted = TrustedKeys::from_hex_lines(&signer.verifying_key_hex(), "test").unwrap();
    let store = Arc::new(
        SqliteAuditStore::open_in(dir.path())
            .await
            .unwrap()
            .with_signer(signer),
    );
    let audit = Arc::new(DurableAuditSink::start(
        store.clone(),
        SinkConfig::default(),
    ));
    let vault = Arc::new(
        EnvelopeVault::open_sqlite(
            dir.path(),
            Arc::new(ManagedKeys::new(RootKey::from_bytes([7; 32]))),
            audit.clone(),
        )
        .await
        .unwrap(),
    );
    vault
        .put(
            &CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk"),
            Secret::from(CANARY),
        )
        .await
        .unwrap();
    let policy = Arc::new(
        CedarEngine::new(&PolicyDocuments::new().with_policies("main.cedar", POLICY)).unwrap(),
    );

    let stack = GovernanceStack::builder()
        .audit(audit.clone())
        .policy(policy)
        .redactor(Arc::new(DefaultRedactor::new()))
        .vault(vault.clone())
        .responder(Arc::new(PlainResponder))
        .build()
        .unwrap();
    // The upstream builds its request with the credential, then answers with PII.
    let upstream = service_fn(|req: http::Request<()>| async move {
        let credential = req.extensions().get::<InjectedCredential>().cloned();
        let used = credential
            .map(|c| c.0.secret().to_header_value("Bearer ").is_some())
            .unwrap_or(false);
        let answer = format!(
            r#"{{"authorized":{used},"tickets":[{{"requester":"jane.roe@example.com","note":"SSN 078-05-1120"}}]}}"#
        );
        let mut response = http::Response::new(body::full(Bytes::from(answer)));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = stack.wrap(ExtensionInjector, upstream);
    let send = |c: Arc<Call>| {
        let service = service.clone();
        async move {
            let mut request = http::Request::new(());
            request.extensions_mut().insert(c);
            service.oneshot(request).await.unwrap()
        }
    };

    // Allowed: the credential was used, the PII is masked, the JSON is intact.
    let allowed = send(call(("zendesk", "search_tickets"))).await;
    assert_eq!(allowed.status(), 200);
    let value: serde_json::Value = serde_json::from_str(&text(allowed).await).unwrap();
    assert_eq!(value["authorized"], true);
    let ticket = &value["tickets"][0];
    assert!(
        !ticket.to_string().contains("jane.roe") && !ticket.to_string().contains("078-05-1120"),
        "{ticket}"
    );

    // Forbidden by policy, even though nothing else stops it.
    let denied = send(call(("zendesk", "delete_ticket"))).await;
    assert_eq!(denied.status(), 403);
    // Allowed by policy but no credential for the connector: refused, fail closed.
    let no_credential = send(call(("crm", "lookup"))).await;
    assert_eq!(no_credential.status(), 502);
    let bodies = text(denied).await + &text(no_credential).await;

    audit.flush().await.unwrap();
    let report = verify_store(
        &*store,
        &trusted,
        VerifyOptions {
            allow_unsigned_tail: true,
        },
    )
    .await
    .unwrap();
    assert!(report.events >= 4, "put + three calls: {report:?}");
    let events: Vec<_> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event().unwrap())
        .collect();
    let calls: Vec<_> = events.iter().filter(|e| e.action == "tools/call").collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].outcome, Outcome::Success);
    assert!(
        calls[0].redactions.values().sum::<u64>() >= 2,
        "{:?}",
        calls[0].redactions
    );
    assert_eq!(calls[1].outcome, Outcome::Denied);
    assert_eq!(
        calls[1].decision.as_ref().unwrap().policy_ids,
        ["no-deletes"]
    );
    assert_eq!(calls[2].outcome, Outcome::Error);
    assert_eq!(calls[2].denial.as_deref(), Some("credential_unavailable"));

    // The canary is in no response, audit event or database file.
    let audit_json = serde_json::to_string(&events).unwrap();
    let mut files = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        files.push_str(&String::from_utf8_lossy(&bytes));
    }
    for (place, text) in [
        ("responses", &bodies),
        ("audit events", &audit_json),
        ("data files", &files),
    ] {
        assert!(!text.contains(CANARY), "the canary leaked into {place}");
    }
    audit.shutdown().await.unwrap();
}
