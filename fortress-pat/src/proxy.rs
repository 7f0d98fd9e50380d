//! The innermost service: forwards a governed call to the Claude API, with the two
//! governance steps that need the upstream's answer or the body's inside:
//! - `GET /v1/models` is filtered to the models policy lets the caller see
//!   ([`PolicyEngine::decide_each`], one `models/get` decision per model);
//! - `POST /v1/messages/batches` has every request inside it decided as a
//!   `messages/create` call before the batch is forwarded;
//! - batch results (`GET …/batches/{id}/results`) have their usage collected for metering
//!   ([`crate::batch_usage`]), and every batch object's `results_url` points back at the
//!   gateway.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fortress_core::body::{self, Body};
use fortress_core::call::{Action, Call, Resource, call_of};
use fortress_core::denial::{Denial, DenialKind};
use fortress_core::layer::notes_of;
use fortress_core::policy::PolicyEngine;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;

/// Reads a whole body of at most `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

use crate::api::BatchParams;
use crate::batch_usage::{BatchCreated, BatchResultsBody, BatchTap, localize_results_urls};
use crate::error::{ErrorType, error_response};
use crate::upstream::Upstream;
use crate::usage::UsageTap;

/// The largest model listing read for filtering.
const MAX_LISTING_BYTES: usize = 8 * 1024 * 1024;

/// Forwards governed calls to the Claude API.
#[derive(Clone)]
pub struct ClaudeUpstream {
    upstream: Upstream,
    policy: Arc<dyn PolicyEngine>,
}

impl ClaudeUpstream {
    /// Forwards through `upstream`; filters listings and batches with `policy`.
    pub fn new(upstream: Upstream, policy: Arc<dyn PolicyEngine>) -> Self {
        Self { upstream, policy }
    }
}

impl tower_service::Service<Request<Bytes>> for ClaudeUpstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

fn refuse(request: &Request<Bytes>, kind: ErrorType, denial: Denial) -> Response<Body> {
    if let Some(notes) = notes_of(request) {
        notes.denial(&denial);
    }
    error_response(kind, &denial.message, None, None)
}

impl ClaudeUpstream {
    async fn forward(&self, request: Request<Bytes>) -> Response<Body> {
        let call = call_of(&request).cloned();
        let tap = request.extensions().get::<UsageTap>().cloned();
        let batch_tap = request.extensions().get::<BatchTap>().cloned();
        let created = request.extensions().get::<BatchCreated>().cloned();
        let notes = notes_of(&request).cloned();
        let action = call.as_ref().map(|c| c.action.clone());
        if let (Some(Action::CreateBatch), Some(call)) = (&action, &call)
            && let Some(response) = self.check_batch(call, &request).await
        {
            return response;
        }
        let mut response = match self.upstream.send(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "upstream unavailable");
                if let Some(notes) = &notes {
                    notes.failed(format!("upstream unavailable: {error}"));
                }
                if let Some(tap) = &tap {
                    tap.report(Default::default(), false);
                }
                return error_response(ErrorType::Api, "upstream unavailable", None, None);
            }
        };
        if let (Some(Action::ListModels), Some(call)) = (&action, &call)
            && response.status().is_success()
        {
            response = self.filter_models(call, response).await;
        }
        if matches!(
            action,
            Some(Action::CreateBatch | Action::ReadBatch | Action::CancelBatch)
        ) && response.status().is_success()
            && is_json(&response)
        {
            response = localize_batch(response, created.as_ref()).await;
        }
        if let Some(batch_tap) = batch_tap
            && response.status().is_success()
        {
            // Usage is read from the upstream's bytes, before redaction touches them.
            response = response.map(|b| body::boxed(BatchResultsBody::new(b, batch_tap)));
        }
        if let Some(tap) = tap {
            response.extensions_mut().insert(tap);
        }
        response
    }

    /// Decides each request of a batch; the first denied one refuses the batch.
    async fn check_batch(&self, call: &Call, request: &Request<Bytes>) -> Option<Response<Body>> {
        let params: BatchParams = match serde_json::from_slice(request.body()) {
            Ok(p) => p,
            Err(e) => {
                return Some(error_response(
                    ErrorType::InvalidRequest,
                    &format!("invalid batch: {e}"),
                    None,
                    None,
                ));
            }
        };
        for item in params.requests {
            let mut item_call = call.clone();
            item_call.action = Action::CreateMessage;
            item_call.resource = Resource::model(item.params.model.clone());
            item_call.attributes.model = Some(item.params.model.clone());
            item_call.attributes.max_tokens = item.params.max_tokens;
            let allowed = match self.policy.decide(&item_call).await {
                Ok(decision) if decision.is_allowed() => true,
                Ok(_) => false,
                Err(error) => {
                    tracing::warn!(%error, "policy failed on a batch request; denying");
                    false
                }
            };
            if !allowed {
                let message = format!("batch request {:?} is denied by policy", item.custom_id);
                let denial = Denial::new(DenialKind::Forbidden, message);
                return Some(refuse(request, ErrorType::Permission, denial));
            }
        }
        None
    }

    /// Keeps only the models the caller may see.
    async fn filter_models(&self, call: &Call, response: Response<Body>) -> Response<Body> {
        let (parts, body) = response.into_parts();
        let Some(bytes) = read_limited(body, MAX_LISTING_BYTES).await else {
            return error_response(ErrorType::Api, "model listing unreadable", None, None);
        };
        let Ok(mut listing) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return error_response(ErrorType::Api, "model listing unreadable", None, None);
        };
        let Some(models) = listing.get("data").and_then(|d| d.as_array()).cloned() else {
            return error_response(ErrorType::Api, "model listing unreadable", None, None);
        };
        let candidates: Vec<Resource> = models
            .iter()
            .map(|m| Resource::model(m.get("id").and_then(|i| i.as_str()).unwrap_or_default()))
            .collect();
        let mut template = call.clone();
        template.action = Action::GetModel;
        let decisions = match self.policy.decide_each(&template, &candidates).await {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, "policy failed on the model listing; hiding all");
                Vec::new()
            }
        };
        let visible: Vec<serde_json::Value> = models
            .into_iter()
            .zip(
                decisions
                    .iter()
                    .map(|d| d.is_allowed())
                    .chain(std::iter::repeat(false)),
            )
            .filter_map(|(m, allowed)| allowed.then_some(m))
            .collect();
        let first = visible.first().and_then(|m| m.get("id")).cloned();
        let last = visible.last().and_then(|m| m.get("id")).cloned();
        listing["data"] = serde_json::Value::Array(visible);
        listing["first_id"] = first.unwrap_or(serde_json::Value::Null);
        listing["last_id"] = last.unwrap_or(serde_json::Value::Null);
        let mut response = Response::from_parts(parts, body::full(listing.to_string()));
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        response
    }
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// Rewrites the `results_url` of a batch answer to the gateway's path
/// ([`localize_results_urls`]) and reports a created batch's id.
async fn localize_batch(
    response: Response<Body>,
    created: Option<&BatchCreated>,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let Some(bytes) = read_limited(body, MAX_LISTING_BYTES).await else {
        return error_response(ErrorType::Api, "batch answer unreadable", None, None);
    };
    let mut value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) => value,
        Err(_) => return Response::from_parts(parts, body::full(bytes)),
    };
    if let (Some(created), Some(id)) = (created, value.get("id").and_then(|i| i.as_str())) {
        created.report(id);
    }
    if !localize_results_urls(&mut value) {
        return Response::from_parts(parts, body::full(bytes));
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, body::full(value.to_string()))
}
