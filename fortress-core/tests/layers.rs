//! Each governance layer: allow, deny, backend error (fails closed) and streaming.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use fortress_core::audit::{MemoryAuditSink, Outcome};
use fortress_core::call::Call;
use fortress_core::call::{Action, Resource};
use fortress_core::decision::Effect;
use fortress_core::denial::{Denial, DenialKind, PlainResponder};
use fortress_core::guard::{AdmitAll, Guard, GuardError, KillSignal, Verdict};
use fortress_core::layer::audit::AuditLayer;
use fortress_core::layer::credential::{
    ConnectorSlot, CredentialLayer, ExtensionInjector, HeaderInjector,
};
use fortress_core::layer::guard::GuardLayer;
use fortress_core::layer::policy::PolicyLayer;
use fortress_core::layer::redaction::{JsonDocument, RedactionLayer, TextStream};
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn responder() -> Arc<PlainResponder> {
    Arc::new(PlainResponder)
}

fn support_policy() -> Arc<AllowListPolicy> {
    Arc::new(AllowListPolicy::new([AllowRule::group(
        "support",
        "tools/call",
        "tool:zendesk/search*",
    )]))
}

// ---------- policy ----------

#[tokio::test]
async fn policy_allows_a_permitted_call() {
    let svc = ServiceBuilder::new()
        .layer(PolicyLayer::new(support_policy(), responder()))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "search_tickets"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(text(response).await.starts_with("upstream ok"));
}

#[tokio::test]
async fn policy_denies_with_the_protocol_answer_and_hides_reasons() {
    let svc = ServiceBuilder::new()
        .layer(PolicyLayer::new(support_policy(), responder()))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "delete_ticket"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = text(response).await;
    assert!(body.contains("denied by policy"), "{body}");
    assert!(!body.contains("no rule allows"), "reasons leaked: {body}");
}

#[tokio::test]
async fn policy_shows_reasons_only_when_asked() {
    let svc = ServiceBuilder::new()
        .layer(PolicyLayer::new(support_policy(), responder()).with_reasons_shown(true))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "delete_ticket"),
        )))
        .await
        .unwrap();
    assert!(text(response).await.contains("no rule allows this call"));
}

#[tokio::test]
async fn policy_error_fails_closed() {
    let svc = ServiceBuilder::new()
        .layer(PolicyLayer::new(Arc::new(FailingPolicy), responder()))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "search_tickets"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(!text(response).await.contains("upstream ok"));
}

#[tokio::test]
async fn undescribed_calls_are_refused() {
    let svc = ServiceBuilder::new()
        .layer(PolicyLayer::new(support_policy(), responder()))
        .service_fn(echo);
    let response = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(response.status(), 503);
}

// ---------- guard ----------

struct KillSwitchFor(&'static str);

#[async_trait::async_trait]
impl Guard for KillSwitchFor {
    async fn admit(&self, call: &Call) -> Result<Verdict, GuardError> {
        if call.connector() == Some(self.0) {
            return Ok(Verdict::Reject(Denial::new(
                DenialKind::KillSwitch,
                format!("connector {} is stopped by a kill switch", self.0),
            )));
        }
        Ok(Verdict::Admit(Some(
            tokio_util::sync::CancellationToken::new(),
        )))
    }
}

#[tokio::test]
async fn guard_admits_and_hands_over_the_kill_signal() {
    let svc = ServiceBuilder::new()
        .layer(GuardLayer::new(
            Arc::new(KillSwitchFor("github")),
            responder(),
        ))
        .service_fn(|req: http::Request<()>| async move {
            let has_signal = req.extensions().get::<KillSignal>().is_some();
            Ok::<_, std::convert::Infallible>(http::Response::new(fortress_core::body::full(
                format!("signal={has_signal}"),
            )))
        });
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(text(response).await, "signal=true");
}

#[tokio::test]
async fn guard_rejects_killed_connectors() {
    let svc = ServiceBuilder::new()
        .layer(GuardLayer::new(
            Arc::new(KillSwitchFor("github")),
            responder(),
        ))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("github", "push"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(text(response).await.contains("kill switch"));
}

#[tokio::test]
async fn guard_error_fails_closed() {
    let svc = ServiceBuilder::new()
        .layer(GuardLayer::new(Arc::new(FailingGuard), responder()))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(!text(response).await.contains("upstream ok"));
}

// ---------- credential ----------

async fn vault_with_zendesk() -> Arc<MemoryVault> {
    let vault = Arc::new(MemoryVault::new());
    vault
        .put(
            &CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk"),
            Secret::from("zd-token-1"),
        )
        .await
        .unwrap();
    vault
}

#[tokio::test]
async fn credential_is_injected_for_the_connector() {
    let vault = vault_with_zendesk().await;
    let svc = ServiceBuilder::new()
        .layer(CredentialLayer::new(
            vault,
            Arc::new(ConnectorSlot::by_connector()),
            ExtensionInjector,
            responder(),
        ))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        )))
        .await
        .unwrap();
    assert_eq!(text(response).await, "upstream ok; credential=acme/zendesk");
}

#[tokio::test]
async fn credential_header_is_sensitive() {
    let vault = vault_with_zendesk().await;
    let svc = ServiceBuilder::new()
        .layer(CredentialLayer::new(
            vault,
            Arc::new(ConnectorSlot::fixed("zendesk")),
            HeaderInjector::bearer(),
            responder(),
        ))
        .service_fn(|req: http::Request<()>| async move {
            let value = req.headers().get("authorization").cloned().unwrap();
            assert!(value.is_sensitive());
            Ok::<_, std::convert::Infallible>(http::Response::new(fortress_core::body::full(
                value.as_bytes().to_vec(),
            )))
        });
    let response = svc
        .oneshot(request(call(
            Action::ListModels,
            Resource::workspace("acme"),
        )))
        .await
        .unwrap();
    assert_eq!(text(response).await, "Bearer zd-token-1");
}

#[tokio::test]
async fn missing_or_revoked_credentials_refuse_the_call() {
    let vault = vault_with_zendesk().await;
    let layer = CredentialLayer::new(
        vault.clone(),
        Arc::new(ConnectorSlot::by_connector()),
        ExtensionInjector,
        responder(),
    );
    let svc = ServiceBuilder::new().layer(layer).service_fn(echo);
    let missing = svc
        .clone()
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("github", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(missing.status(), 502);
    assert!(
        text(missing)
            .await
            .contains("no credential is configured for github")
    );

    vault
        .revoke(&CredentialSlot::workspace(
            WorkspaceId::new("acme"),
            "zendesk",
        ))
        .await
        .unwrap();
    let revoked = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(revoked.status(), 502);
    assert!(text(revoked).await.contains("revoked"));
}

#[tokio::test]
async fn vault_error_fails_closed() {
    let svc = ServiceBuilder::new()
        .layer(CredentialLayer::new(
            Arc::new(FailingVault),
            Arc::new(ConnectorSlot::by_connector()),
            ExtensionInjector,
            responder(),
        ))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(!text(response).await.contains("upstream ok"));
}

// ---------- redaction ----------

fn redaction(body: Arc<dyn fortress_core::layer::redaction::BodyRedaction>) -> RedactionLayer {
    RedactionLayer::new(Arc::new(PatternRedactor::basic()), responder()).with_body_redaction(body)
}

#[tokio::test]
async fn redaction_masks_text_and_reports_counts() {
    let notes = fortress_core::layer::CallNotes::new();
    let notes_for_request = notes.clone();
    let svc = ServiceBuilder::new()
        .map_request(move |mut req: http::Request<()>| {
            req.extensions_mut().insert(notes_for_request.clone());
            req
        })
        .layer(redaction(Arc::new(TextStream)))
        .service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(streaming(
                vec![Bytes::from("mail jane@example.com, ssn 078-05-1120")],
                "text/plain",
            ))
        });
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(text(response).await, "mail [EMAIL], ssn [SSN]");
    let report = notes.redaction_report();
    assert_eq!((report.count("EMAIL"), report.count("SSN")), (1, 1));
}

#[tokio::test]
async fn redaction_keeps_json_valid() {
    let svc = ServiceBuilder::new()
        .layer(redaction(Arc::new(JsonDocument::default())))
        .service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(streaming(
                vec![
                    Bytes::from(r#"{"ticket":{"requester":"ja"#),
                    Bytes::from(r#"ne@example.com","id":7}}"#),
                ],
                "application/json",
            ))
        });
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"ticket": {"requester": "[EMAIL]", "id": 7}})
    );
}

/// Any split of a streamed body — including splits inside a UTF-8 character — gives
/// the same output as the unsplit body.
#[tokio::test]
async fn redaction_of_a_stream_split_at_every_byte_offset_equals_the_unsplit_body() {
    // Several times longer than the hold-back window, so text is emitted mid-stream.
    let text_body = "Hi ünïcødé — write to jane.doe@example.org or call about 078-05-1120; \
                     token sk-ant-api03-AbCdEf_123456 expired. bob@x.io ✓ "
        .repeat(8);
    let body = text_body.as_bytes();
    let run = |chunks: Vec<Bytes>| async move {
        let svc = ServiceBuilder::new()
            .layer(redaction(Arc::new(TextStream)))
            .service_fn(move |_req| {
                let chunks = chunks.clone();
                async move { Ok::<_, std::convert::Infallible>(streaming(chunks, "text/plain")) }
            });
        text(
            svc.oneshot(request(call(
                Action::CallTool,
                Resource::tool("zendesk", "x"),
            )))
            .await
            .unwrap(),
        )
        .await
    };
    let whole = run(vec![Bytes::copy_from_slice(body)]).await;
    assert_eq!(whole.matches("[EMAIL]").count(), 16);
    assert_eq!(whole.matches("[SSN]").count(), 8);
    assert_eq!(whole.matches("[SECRET]").count(), 8);
    assert!(!whole.contains("jane.doe") && !whole.contains("078-05"));
    for split in 0..=body.len() {
        let chunks = vec![
            Bytes::copy_from_slice(&body[..split / 2]),
            Bytes::copy_from_slice(&body[split / 2..split]),
            Bytes::copy_from_slice(&body[split..]),
        ];
        assert_eq!(run(chunks).await, whole, "split at byte {split}");
    }
    // And one byte per frame.
    let bytes: Vec<Bytes> = body.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
    assert_eq!(run(bytes).await, whole);
}

#[tokio::test]
async fn redaction_refuses_invalid_utf8_instead_of_passing_it() {
    let svc = ServiceBuilder::new()
        .layer(redaction(Arc::new(TextStream)))
        .service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(streaming(
                vec![Bytes::from_static(b"ok \xff\xfe")],
                "text/plain",
            ))
        });
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert!(
        fortress_core::body::collect(response.into_body())
            .await
            .is_err()
    );
}

// ---------- audit ----------

#[tokio::test]
async fn audit_records_allowed_and_denied_calls_with_decisions() {
    let sink = Arc::new(MemoryAuditSink::new());
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(sink.clone()))
        .layer(PolicyLayer::new(support_policy(), responder()))
        .service_fn(echo);

    let ok = svc
        .clone()
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "search_tickets"),
        )))
        .await
        .unwrap();
    text(ok).await;
    let denied = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "delete_ticket"),
        )))
        .await
        .unwrap();
    text(denied).await;

    let events = sink.wait_for(2).await;
    assert_eq!(events[0].outcome, Outcome::Success);
    assert_eq!(events[0].status, Some(200));
    assert_eq!(events[0].decision.as_ref().unwrap().effect, Effect::Allow);
    assert_eq!(events[0].decision.as_ref().unwrap().policy_ids, ["allow-0"]);
    assert_eq!(events[1].outcome, Outcome::Denied);
    assert_eq!(events[1].denial.as_deref(), Some("forbidden"));
    let decision = events[1].decision.as_ref().unwrap();
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reasons, ["no rule allows this call"]);
    assert_eq!(events[1].resource, "tool:zendesk/delete_ticket");
    assert_eq!(events[1].subject.id, "alice");
}

#[tokio::test]
async fn audit_failure_fails_the_response_instead_of_completing_it() {
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(Arc::new(FailingAudit)))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert!(
        fortress_core::body::collect(response.into_body())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn audit_records_a_client_that_goes_away() {
    let sink = Arc::new(MemoryAuditSink::new());
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(sink.clone()))
        .service_fn(echo);
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    drop(response);
    let events = sink.wait_for(1).await;
    assert_eq!(events[0].outcome, Outcome::ClientClosed);
}

#[tokio::test]
async fn audit_digests_tool_arguments_with_a_stable_key() {
    let sink = Arc::new(MemoryAuditSink::new());
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(sink.clone()).with_argument_key(Secret::from("k")))
        .service_fn(echo);
    for _ in 0..2 {
        let mut c = Call::new(
            alice(),
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        );
        c.attributes.tool_arguments = Some(serde_json::json!({"query": "patient 078-05-1120"}));
        let response = svc.clone().oneshot(request(Arc::new(c))).await.unwrap();
        text(response).await;
    }
    let events = sink.wait_for(2).await;
    let digest = events[0].arguments_digest.clone().unwrap();
    assert!(digest.starts_with("hmac-sha256:"));
    assert_eq!(events[1].arguments_digest.as_ref(), Some(&digest));
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains("078-05-1120"));
}

#[tokio::test]
async fn admit_all_guard_changes_nothing() {
    let svc = ServiceBuilder::new()
        .layer(GuardLayer::new(Arc::new(AdmitAll), responder()))
        .service(service_fn(echo));
    let response = svc
        .oneshot(request(call(
            Action::CallTool,
            Resource::tool("zendesk", "x"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
