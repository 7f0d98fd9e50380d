//! `GET /api/archive/{request_id}`: roles, input checks, and the audit record that must
//! exist before any archived content is returned. The reader here serves fixed bytes; the
//! real archive is exercised end to end in `fortress-pat/tests/archive.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use chrono::NaiveDate;
use fortress_core::admin::accounts::AccountStore;
use fortress_core::admin::api::{AdminState, router};
use fortress_core::admin::archive::{ArchiveReadError, ArchiveReader, ArchivedCall};
use fortress_core::admin::rbac::Role;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::subject::WorkspaceId;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Serves one call, `known`, of workspace `acme`.
struct OneCall;

#[async_trait]
impl ArchiveReader for OneCall {
    async fn read(
        &self,
        workspace: &WorkspaceId,
        request_id: &str,
        _date: Option<NaiveDate>,
    ) -> Result<Option<ArchivedCall>, ArchiveReadError> {
        Ok(
            (workspace.as_str() == "acme" && request_id == "known").then(|| ArchivedCall {
                prefix: "acme/2030-01-01/known".into(),
                request: b"{\"q\":1}".to_vec(),
                response: vec![0xff, 0x00, 0x41],
            }),
        )
    }
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn archived_calls_are_read_by_auditors_and_up_and_every_read_is_audited() {
    let accounts = AccountStore::in_memory().await.unwrap();
    let audit = Arc::new(MemoryAuditSink::new());
    let state = AdminState::new(accounts.clone(), audit.clone(), WorkspaceId::new("acme"));
    let unconfigured = router(state.clone());
    let app = router(state.with_archive(Arc::new(OneCall)));
    let token = |role: Role| {
        let accounts = accounts.clone();
        async move {
            let (_, token) = accounts
                .create_token("test", role, role.as_str())
                .await
                .unwrap();
            token.expose_str().unwrap().to_owned()
        }
    };
    let viewer = token(Role::Viewer).await;
    let auditor = token(Role::Auditor).await;

    assert_eq!(
        get(&app, "/api/archive/known", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get(&app, "/api/archive/known", Some(&viewer)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.get("request").is_none());
    assert!(
        audit.events().is_empty(),
        "a refused read returns and records nothing"
    );

    let (status, body) = get(&app, "/api/archive/known", Some(&auditor)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["request"]["text"], "{\"q\":1}");
    assert_eq!(body["response"]["base64"], "/wBB");
    assert_eq!(body["response"]["text"], Value::Null, "not UTF-8");
    let events = audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "archive.read");
    assert_eq!(events[0].resource, "acme/2030-01-01/known");
    assert_eq!(events[0].subject.id, "auditor");

    assert_eq!(
        get(&app, "/api/archive/unknown", Some(&auditor)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/archive/a.b", Some(&auditor)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&unconfigured, "/api/archive/known", Some(&auditor))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        audit.events().len(),
        1,
        "only the successful read is recorded"
    );
}
