//! The standard governance stack, composed in one place.
//!
//! ```text
//! client ─▶ [audit] ─▶ [guard] ─▶ [policy] ─▶ [redaction] ─▶ [credential] ─▶ upstream
//! ```
//!
//! Why this order:
//! - **audit** is outermost so every outcome — admitted, refused by a kill switch or a rate
//!   limit, denied by policy, failed upstream — is recorded, with the decision's reasons.
//! - **guard** (kill switch, rate limits) comes before policy: a stopped workspace or an
//!   exhausted limit costs no policy evaluation, and a kill switch wins over any allow.
//! - **policy** decides before anything touches content or credentials.
//! - **redaction** wraps the upstream answer, so what the credential-bearing inner part
//!   returns is masked before any outer layer, log or client sees it.
//! - **credential** is innermost: the decrypted secret exists only while the upstream
//!   request is built, and no other layer, log or error can see it.
//!
//! ```
//! use std::sync::Arc;
//! use fortress_core::prelude::*;
//!
//! let stack = GovernanceStack::builder()
//!     .audit(Arc::new(MemoryAuditSink::new()))
//!     .policy(Arc::new(AllowListPolicy::new([])))
//!     .redactor(Arc::new(PatternRedactor::basic()))
//!     .vault(Arc::new(MemoryVault::new()))
//!     .responder(Arc::new(PlainResponder))
//!     .build()
//!     .unwrap();
//! let service = tower::ServiceBuilder::new()
//!     .layer(stack.layer(ExtensionInjector))
//!     .service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(fortress_core::body::empty()))
//!     });
//! # let _ = service;
//! ```

use std::sync::Arc;

use tower_layer::{Layer, Stack};

use crate::audit::AuditSink;
use crate::audit::arguments::RedactedArguments;
use crate::denial::Responder;
use crate::guard::{AdmitAll, Guard};
use crate::layer::audit::AuditLayer;
use crate::layer::credential::{ConnectorSlot, CredentialLayer, SlotSelector};
use crate::layer::guard::GuardLayer;
use crate::layer::policy::PolicyLayer;
use crate::layer::redaction::{BodyRedaction, ByContentType, RedactionLayer};
use crate::policy::PolicyEngine;
use crate::redact::Redactor;
use crate::secret::Secret;
use crate::vault::Vault;

/// A required part of the stack was not given to the builder.
#[derive(Debug, thiserror::Error)]
#[error("the governance stack needs {0}")]
pub struct MissingPart(&'static str);

/// The four engines and the protocol adapters, ready to wrap a service.
#[derive(Clone)]
pub struct GovernanceStack {
    audit: AuditLayer,
    guard: GuardLayer,
    policy: PolicyLayer,
    redaction: RedactionLayer,
    vault: Arc<dyn Vault>,
    selector: Arc<dyn SlotSelector>,
    responder: Arc<dyn Responder>,
}

/// The layer type [`GovernanceStack::layer`] returns: audit ▸ guard ▸ policy ▸ redaction ▸ credential.
pub type GovernanceLayer<I> = Stack<
    CredentialLayer<I>,
    Stack<RedactionLayer, Stack<PolicyLayer, Stack<GuardLayer, AuditLayer>>>,
>;

impl GovernanceStack {
    /// Starts a builder.
    pub fn builder() -> GovernanceStackBuilder {
        GovernanceStackBuilder::default()
    }

    /// The whole stack as one layer, with `injector` placing credentials on requests.
    pub fn layer<I>(&self, injector: I) -> GovernanceLayer<I> {
        let credential = CredentialLayer::new(
            self.vault.clone(),
            self.selector.clone(),
            injector,
            self.responder.clone(),
        );
        // `Stack<Inner, Outer>`: the outer layer sees the request first.
        let outer = Stack::new(self.guard.clone(), self.audit.clone());
        let outer = Stack::new(self.policy.clone(), outer);
        let outer = Stack::new(self.redaction.clone(), outer);
        Stack::new(credential, outer)
    }

    /// Wraps `service` in the whole stack.
    pub fn wrap<S, I>(&self, injector: I, service: S) -> <GovernanceLayer<I> as Layer<S>>::Service {
        self.layer(injector).layer(service)
    }
}

/// Builds a [`GovernanceStack`]; audit, policy, redactor, vault and responder are required.
#[derive(Default)]
#[must_use]
pub struct GovernanceStackBuilder {
    audit: Option<Arc<dyn AuditSink>>,
    argument_key: Option<Secret>,
    redacted_arguments: Option<RedactedArguments>,
    guard: Option<Arc<dyn Guard>>,
    policy: Option<Arc<dyn PolicyEngine>>,
    show_reasons: bool,
    redactor: Option<Arc<dyn Redactor>>,
    body_redaction: Option<Arc<dyn BodyRedaction>>,
    vault: Option<Arc<dyn Vault>>,
    selector: Option<Arc<dyn SlotSelector>>,
    responder: Option<Arc<dyn Responder>>,
}

impl GovernanceStackBuilder {
    /// Where audit events go.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The key that digests tool arguments in audit events.
    pub fn audit_argument_key(mut self, key: Secret) -> Self {
        self.argument_key = Some(key);
        self
    }

    /// The workspaces whose audit events record tool arguments, redacted by the stack's
    /// redactor (default: none; every workspace gets the keyed digest only).
    pub fn audit_redacted_arguments(mut self, opt_in: RedactedArguments) -> Self {
        self.redacted_arguments = Some(opt_in);
        self
    }

    /// Kill switches and rate limits (default: admit all).
    pub fn guard(mut self, guard: Arc<dyn Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The policy engine.
    pub fn policy(mut self, engine: Arc<dyn PolicyEngine>) -> Self {
        self.policy = Some(engine);
        self
    }

    /// Whether callers see the reasons of a denial (default: no).
    pub fn show_denial_reasons(mut self, show: bool) -> Self {
        self.show_reasons = show;
        self
    }

    /// The redactor.
    pub fn redactor(mut self, redactor: Arc<dyn Redactor>) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// How response bodies are redacted (default: by content type).
    pub fn body_redaction(mut self, redaction: Arc<dyn BodyRedaction>) -> Self {
        self.body_redaction = Some(redaction);
        self
    }

    /// The credential vault.
    pub fn vault(mut self, vault: Arc<dyn Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Which credential a call needs (default: its connector's, workspace-wide).
    pub fn credential_slots(mut self, selector: Arc<dyn SlotSelector>) -> Self {
        self.selector = Some(selector);
        self
    }

    /// The protocol's answer to refusals.
    pub fn responder(mut self, responder: Arc<dyn Responder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Assembles the stack.
    pub fn build(self) -> Result<GovernanceStack, MissingPart> {
        let responder = self.responder.ok_or(MissingPart("a responder"))?;
        let mut audit = AuditLayer::new(self.audit.ok_or(MissingPart("an audit sink"))?);
        if let Some(key) = self.argument_key {
            audit = audit.with_argument_key(key);
        }
        let redactor = self.redactor.ok_or(MissingPart("a redactor"))?;
        if let Some(opt_in) = self.redacted_arguments {
            audit = audit.with_redacted_arguments(redactor.clone(), opt_in);
        }
        let guard = GuardLayer::new(
            self.guard.unwrap_or_else(|| Arc::new(AdmitAll)),
            responder.clone(),
        );
        let policy = PolicyLayer::new(
            self.policy.ok_or(MissingPart("a policy engine"))?,
            responder.clone(),
        )
        .with_reasons_shown(self.show_reasons);
        let redaction = RedactionLayer::new(redactor, responder.clone())
        .with_body_redaction(
            self.body_redaction
                .unwrap_or_else(|| Arc::new(ByContentType::default())),
        );
        Ok(GovernanceStack {
            audit,
            guard,
            policy,
            redaction,
            vault: self.vault.ok_or(MissingPart("a vault"))?,
            selector: self
                .selector
                .unwrap_or_else(|| Arc::new(ConnectorSlot::by_connector())),
            responder,
        })
    }
}
