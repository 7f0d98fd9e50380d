//! Credential injection, the innermost layer: the upstream credential is resolved from the
//! [`Vault`] for this one call and handed to the upstream request, and nothing outside
//! sees it.
//!
//! Which credential a call needs is a [`SlotSelector`]'s answer (by default the call's
//! connector in the caller's workspace); where it goes is an [`Injector`]'s job (an HTTP
//! header marked sensitive, or a request extension the protocol's upstream client reads).
//! A missing, revoked or undecryptable credential refuses the call (fail closed).

use std::sync::Arc;

use http::{HeaderName, Request};

use super::CallNotes;
use super::check::{Check, CheckLayer, Checked};
use crate::call::Call;
use crate::denial::{Denial, DenialKind, Responder};
use crate::vault::{Credential, CredentialSlot, Vault, VaultError};

/// Chooses the credential slot a call needs; `None` when it needs none.
pub trait SlotSelector: Send + Sync + 'static {
    /// The slot for `call`.
    fn slot(&self, call: &Call) -> Option<CredentialSlot>;
}

impl<F> SlotSelector for F
where
    F: Fn(&Call) -> Option<CredentialSlot> + Send + Sync + 'static,
{
    fn slot(&self, call: &Call) -> Option<CredentialSlot> {
        self(call)
    }
}

/// The default selector: the call's connector (or a fixed upstream name) in the caller's
/// workspace, optionally the caller's own credential.
#[derive(Clone, Debug)]
pub struct ConnectorSlot {
    fixed: Option<String>,
    per_user: bool,
}

impl ConnectorSlot {
    /// The credential of the call's connector; calls without a connector need none.
    pub fn by_connector() -> Self {
        Self {
            fixed: None,
            per_user: false,
        }
    }

    /// Always the credential of one upstream (for example `anthropic`).
    pub fn fixed(upstream: impl Into<String>) -> Self {
        Self {
            fixed: Some(upstream.into()),
            per_user: false,
        }
    }

    /// Use the caller's own credential rather than the workspace's.
    #[must_use]
    pub fn per_user(mut self) -> Self {
        self.per_user = true;
        self
    }
}

impl SlotSelector for ConnectorSlot {
    fn slot(&self, call: &Call) -> Option<CredentialSlot> {
        let connector = self
            .fixed
            .clone()
            .or_else(|| call.connector().map(str::to_owned))?;
        let workspace = call.subject.workspace.clone();
        Some(if self.per_user {
            CredentialSlot::user(workspace, connector, call.subject.id.clone())
        } else {
            CredentialSlot::workspace(workspace, connector)
        })
    }
}

/// The credential could not be placed on the request.
#[derive(Debug, thiserror::Error)]
#[error("credential cannot be injected: {0}")]
pub struct InjectError(pub String);

/// Places a resolved credential where the upstream request is built.
pub trait Injector<ReqB>: Send + Sync + 'static {
    /// Injects `credential` into `request`; the credential is dropped (and zeroized) when
    /// the request no longer needs it.
    fn inject(
        &self,
        request: &mut Request<ReqB>,
        credential: Credential,
    ) -> Result<(), InjectError>;
}

/// Injects the credential as an HTTP header marked sensitive, such as `x-api-key` or
/// `authorization: Bearer …`. The credential itself is dropped right away.
#[derive(Clone, Debug)]
pub struct HeaderInjector {
    name: HeaderName,
    prefix: String,
}

impl HeaderInjector {
    /// A header carrying the bare secret.
    pub fn new(name: HeaderName) -> Self {
        Self {
            name,
            prefix: String::new(),
        }
    }

    /// `Authorization: Bearer <secret>`.
    pub fn bearer() -> Self {
        Self {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        }
    }
}

impl<ReqB> Injector<ReqB> for HeaderInjector {
    fn inject(
        &self,
        request: &mut Request<ReqB>,
        credential: Credential,
    ) -> Result<(), InjectError> {
        let value = credential
            .secret()
            .to_header_value(&self.prefix)
            .ok_or_else(|| InjectError("the credential is not a valid header value".into()))?;
        request.headers_mut().insert(self.name.clone(), value);
        Ok(())
    }
}

/// The credential as a request extension, for upstream clients that build their own
/// requests (MCP connectors). Dropped, and zeroized, with the request.
#[derive(Clone, Debug)]
pub struct InjectedCredential(pub Arc<Credential>);

/// Injects the credential as an [`InjectedCredential`] request extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExtensionInjector;

impl<ReqB> Injector<ReqB> for ExtensionInjector {
    fn inject(
        &self,
        request: &mut Request<ReqB>,
        credential: Credential,
    ) -> Result<(), InjectError> {
        request
            .extensions_mut()
            .insert(InjectedCredential(Arc::new(credential)));
        Ok(())
    }
}

/// The [`Check`] of [`CredentialLayer`].
pub struct CredentialInjection<I> {
    vault: Arc<dyn Vault>,
    selector: Arc<dyn SlotSelector>,
    injector: Arc<I>,
}

impl<I> Clone for CredentialInjection<I> {
    fn clone(&self) -> Self {
        Self {
            vault: self.vault.clone(),
            selector: self.selector.clone(),
            injector: self.injector.clone(),
        }
    }
}

/// Resolves and injects upstream credentials.
pub type CredentialLayer<I> = CheckLayer<CredentialInjection<I>>;

/// The service of [`CredentialLayer`].
pub type InjectCredential<S, I> = Checked<S, CredentialInjection<I>>;

impl<I> CredentialLayer<I> {
    /// Resolves from `vault` the slot chosen by `selector` and injects it with `injector`.
    pub fn new(
        vault: Arc<dyn Vault>,
        selector: Arc<dyn SlotSelector>,
        injector: I,
        responder: Arc<dyn Responder>,
    ) -> Self {
        Self::with_check(
            CredentialInjection {
                vault,
                selector,
                injector: Arc::new(injector),
            },
            responder,
        )
    }
}

fn denial_for(error: &VaultError, slot: &CredentialSlot) -> Denial {
    let message = match error {
        VaultError::NotFound(_) => format!("no credential is configured for {}", slot.connector),
        VaultError::Revoked(_) => format!("the credential for {} was revoked", slot.connector),
        _ => format!("the credential for {} is unavailable", slot.connector),
    };
    Denial::new(DenialKind::CredentialUnavailable, message)
}

impl<I, ReqB> Check<ReqB> for CredentialInjection<I>
where
    I: Injector<ReqB>,
    ReqB: Send,
{
    async fn check(
        &self,
        call: Arc<Call>,
        request: &mut Request<ReqB>,
        notes: Option<&CallNotes>,
    ) -> Result<(), Denial> {
        let Some(slot) = self.selector.slot(&call) else {
            return Ok(());
        };
        let credential = self.vault.resolve(&slot).await.map_err(|error| {
            tracing::warn!(request_id = %call.request_id, slot = %slot, %error, "credential unavailable; refusing call");
            denial_for(&error, &slot)
        })?;
        if let Some(notes) = notes {
            notes.credential(&slot, credential.version());
        }
        self.injector.inject(request, credential).map_err(|error| {
            tracing::warn!(request_id = %call.request_id, slot = %slot, %error, "credential injection failed");
            Denial::new(
                DenialKind::CredentialUnavailable,
                format!("the credential for {} is unusable", slot.connector),
            )
        })
    }
}
