//! Shared helpers for the layer tests: calls, echo upstreams and failing backends.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use fortress_core::audit::{AuditError, AuditEvent, AuditSink};
use fortress_core::body::{self, Body};
use fortress_core::call::{Action, Call, Resource};
use fortress_core::decision::Decision;
use fortress_core::guard::{Guard, GuardError, Verdict};
use fortress_core::layer::credential::InjectedCredential;
use fortress_core::policy::{PolicyEngine, PolicyError};
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::{Credential, CredentialInfo, CredentialSlot, Vault, VaultError};
use http::{Request, Response};

pub fn alice() -> Subject {
    Subject::user("alice", WorkspaceId::new("acme")).with_groups(["support"])
}

pub fn call(action: Action, resource: Resource) -> Arc<Call> {
    Arc::new(Call::new(alice(), action, resource))
}

pub fn request(call: Arc<Call>) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(call);
    request
}

/// An upstream that answers with fixed text and reports whether it saw a credential.
pub async fn echo(request: Request<()>) -> Result<Response<Body>, Infallible> {
    let saw = request
        .extensions()
        .get::<InjectedCredential>()
        .map(|c| c.0.slot().to_string())
        .unwrap_or_else(|| "none".into());
    let mut response = Response::new(body::full(format!("upstream ok; credential={saw}")));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// An upstream that streams the given chunks as separate frames.
pub fn streaming(chunks: Vec<Bytes>, content_type: &'static str) -> Response<Body> {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, fortress_core::body::BoxError>(http_body::Frame::data(c))),
    );
    let mut response = Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    response
}

pub async fn text(response: Response<Body>) -> String {
    String::from_utf8(body::collect(response.into_body()).await.unwrap().to_vec()).unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("backend is down")]
pub struct Down;

pub struct FailingPolicy;

#[async_trait]
impl PolicyEngine for FailingPolicy {
    async fn decide(&self, _call: &Call) -> Result<Decision, PolicyError> {
        Err(PolicyError::Backend(Box::new(Down)))
    }
    fn version(&self) -> String {
        "broken".into()
    }
}

pub struct FailingGuard;

#[async_trait]
impl Guard for FailingGuard {
    async fn admit(&self, _call: &Call) -> Result<Verdict, GuardError> {
        Err(GuardError::Backend(Box::new(Down)))
    }
}

pub struct FailingAudit;

#[async_trait]
impl AuditSink for FailingAudit {
    async fn record(&self, _event: AuditEvent) -> Result<(), AuditError> {
        Err(AuditError::Storage(Box::new(Down)))
    }
    async fn flush(&self) -> Result<(), AuditError> {
        Err(AuditError::Storage(Box::new(Down)))
    }
}

pub struct FailingVault;

#[async_trait]
impl Vault for FailingVault {
    async fn put(&self, _: &CredentialSlot, _: Secret) -> Result<CredentialInfo, VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn resolve(&self, _: &CredentialSlot) -> Result<Credential, VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn rotate(&self, _: &CredentialSlot, _: Secret) -> Result<CredentialInfo, VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn revoke(&self, _: &CredentialSlot) -> Result<(), VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn delete(&self, _: &CredentialSlot) -> Result<(), VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn list(&self, _: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
    async fn delete_workspace(&self, _: &WorkspaceId) -> Result<u64, VaultError> {
        Err(VaultError::Backend(Box::new(Down)))
    }
}
