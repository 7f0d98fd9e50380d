//! Embed Fortress in an axum service: an echo handler wrapped in the four governance
//! layers. One request is allowed and one denied; both are printed with their audit events.
//!
//! Run with `cargo run -p fortress-examples --example embed_axum`.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use fortress_core::prelude::*;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

/// The application: any handler. It receives the upstream key Fortress injected.
async fn echo(headers: HeaderMap) -> String {
    let keyed = headers.contains_key("x-upstream-key");
    format!("hello from the app (upstream key injected: {keyed})")
}

/// Describes each HTTP request as a governed call: who (from a header your
/// authentication sets), what (the method) and on what (the path).
fn describe<B>(mut request: Request<B>) -> Request<B> {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    let groups: &[&str] = if user == "alice" { &["staff"] } else { &[] };
    let subject = Subject::user(user, WorkspaceId::new("acme")).with_groups(groups.iter().copied());
    let call = Call::new(
        subject,
        Action::Custom(format!("http:{}", request.method())),
        Resource::new(
            ResourceKind::Endpoint,
            request.uri().path(),
            Some("echo".into()),
        ),
    );
    request.extensions_mut().insert(Arc::new(call));
    request
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let audit = Arc::new(MemoryAuditSink::new());
    let vault = Arc::new(MemoryVault::new());
    vault
        .put(
            &CredentialSlot::workspace(WorkspaceId::new("acme"), "echo"),
            Secret::from("upstream-secret"),
        )
        .await?;

    let stack = GovernanceStack::builder()
        .audit(audit.clone())
        .policy(Arc::new(AllowListPolicy::new([AllowRule::group(
            "staff",
            "http:GET",
            "endpoint:echo//hello",
        )])))
        .redactor(Arc::new(PatternRedactor::basic()))
        .vault(vault)
        .responder(Arc::new(PlainResponder))
        .build()?;

    let app = Router::new().route("/hello", get(echo));
    let service = ServiceBuilder::new()
        .map_request(describe)
        .layer(
            stack.layer(HeaderInjector::new(http::HeaderName::from_static(
                "x-upstream-key",
            ))),
        )
        .map_response(|r: http::Response<axum::body::Body>| r.map(fortress_core::body::boxed))
        .service(app);

    for user in ["alice", "mallory"] {
        let request = Request::get("/hello")
            .header("x-user", user)
            .body(axum::body::Body::empty())?;
        let response = service.clone().oneshot(request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .to_bytes();
        println!("{user:>8}: {status} {}", String::from_utf8_lossy(&body));
    }
    for event in audit.wait_for(2).await {
        println!(
            "audit: {} {} {} -> {:?} (policy {})",
            event.subject.id,
            event.action,
            event.resource,
            event.outcome,
            event.decision.map(|d| d.policy_version).unwrap_or_default()
        );
    }
    Ok(())
}
