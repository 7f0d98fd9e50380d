//! A canary secret planted in the vault must never surface: not in audit events, log
//! lines, error messages, responses or `Debug` output — for allowed and denied calls alike.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::call::{Action, Resource};
use fortress_core::denial::PlainResponder;
use fortress_core::layer::credential::InjectedCredential;
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use tower::{ServiceExt, service_fn};

const CANARY: &str = "CANARY-9f8e7d6c5b4a";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_canary_appears_nowhere() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let vault = Arc::new(MemoryVault::new());
    let ws = WorkspaceId::new("acme");
    let zendesk = CredentialSlot::workspace(ws.clone(), "zendesk");
    vault.put(&zendesk, Secret::from(CANARY)).await.unwrap();
    let revoked = CredentialSlot::workspace(ws.clone(), "github");
    vault.put(&revoked, Secret::from(CANARY)).await.unwrap();
    vault.revoke(&revoked).await.unwrap();

    let sink = Arc::new(MemoryAuditSink::new());
    let stack = GovernanceStack::builder()
        .audit(sink.clone())
        .policy(Arc::new(AllowListPolicy::new([AllowRule::group(
            "support",
            "tools/call",
            "tool:*",
        )])))
        .redactor(Arc::new(PatternRedactor::basic()))
        .vault(vault.clone())
        .responder(Arc::new(PlainResponder))
        .build()
        .unwrap();

    let debug_seen = Arc::new(Mutex::new(String::new()));
    let debug_sink = debug_seen.clone();
    // The upstream uses the credential the way a real client does: to build a header.
    let upstream = service_fn(move |req: http::Request<()>| {
        let debug_sink = debug_sink.clone();
        async move {
            let credential = req.extensions().get::<InjectedCredential>().cloned();
            if let Some(credential) = &credential {
                let header = credential.0.secret().to_header_value("Bearer ").unwrap();
                debug_sink
                    .lock()
                    .unwrap()
                    .push_str(&format!("{credential:?} {header:?} {req:?}"));
                tracing::info!(?credential, ?header, "upstream request built");
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(fortress_core::body::full(
                "upstream answered",
            )))
        }
    });
    let service = stack.wrap(
        fortress_core::layer::credential::ExtensionInjector,
        upstream,
    );

    let calls = [
        // allowed, credential resolved
        call(
            Action::CallTool,
            Resource::tool("zendesk", "search_tickets"),
        ),
        // allowed by policy, credential revoked
        call(Action::CallTool, Resource::tool("github", "push")),
        // denied by policy
        call(
            Action::ReadResource,
            Resource::tool("zendesk", "secret_doc"),
        ),
    ];
    let mut bodies = String::new();
    for c in calls {
        let response = service.clone().oneshot(request(c)).await.unwrap();
        bodies.push_str(&format!("{:?}", response.headers()));
        bodies.push_str(&text(response).await);
    }
    assert!(
        bodies.contains("upstream answered"),
        "the allowed call went through"
    );
    assert!(bodies.contains("revoked") && bodies.contains("denied by policy"));

    let events = sink.wait_for(3).await;
    let audit = serde_json::to_string(&events).unwrap() + &format!("{events:?}");
    let errors = [
        vault.resolve(&revoked).await.unwrap_err().to_string(),
        format!("{:?}", vault.resolve(&revoked).await.unwrap_err()),
        format!("{:?}", vault.resolve(&zendesk).await.unwrap()),
        format!("{:?}", vault.list(&ws).await.unwrap()),
    ]
    .join("\n");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let debug = debug_seen.lock().unwrap().clone();

    assert!(
        logs.contains("upstream request built"),
        "logs were captured"
    );
    assert!(debug.contains("<redacted>"), "Debug output was captured");
    for (place, text) in [
        ("audit events", &audit),
        ("responses", &bodies),
        ("errors", &errors),
        ("logs", &logs),
        ("Debug output", &debug),
    ] {
        assert!(
            !text.contains(CANARY),
            "the canary leaked into {place}: {text}"
        );
    }
}
