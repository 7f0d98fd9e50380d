//! Vault credentials for upstream MCP servers, resolved per call.
//!
//! An upstream configured with a credential resolves it from the vault for the subject of
//! the call it serves — the workspace's credential, or the caller's own (`per_user`) — just
//! before the request that needs it, and drops it (zeroized) right after:
//!
//! - a Streamable HTTP upstream sends it in a header built from a template such as
//!   `Bearer {credential}`, marked sensitive, on every request made for the call;
//! - a stdio upstream gets it as an environment variable of a child process started for
//!   that workspace or user ([`super::credentialed::CredentialedStdio`]).
//!
//! The resolution is recorded in the call's audit event (slot and version, never the
//! value). A missing or unusable credential refuses the call with
//! [`CREDENTIAL_UNAVAILABLE`](crate::seam::CREDENTIAL_UNAVAILABLE), naming the connector
//! only.
//!
//! ```
//! use fortress_core::secret::Secret;
//! use fortress_mcp::upstream::credential::HeaderTemplate;
//!
//! let template = HeaderTemplate::parse("authorization", "Bearer {credential}").unwrap();
//! let value = template.value(&Secret::from("t0ken")).unwrap();
//! assert!(value.is_sensitive());
//! assert_eq!(value, "Bearer t0ken");
//! ```

use std::sync::Arc;

use fortress_core::call::Call;
use fortress_core::layer::CallNotes;
use fortress_core::secret::Secret;
use fortress_core::vault::{Credential, CredentialSlot, Vault, VaultError};
use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::jsonrpc::ErrorObject;
use crate::seam::CREDENTIAL_UNAVAILABLE;

/// The placeholder a header template puts the credential in.
pub const PLACEHOLDER: &str = "{credential}";

/// Where an upstream's credential comes from: the vault slot of the connector, per
/// workspace or per user.
#[derive(Clone)]
pub struct CredentialSource {
    vault: Arc<dyn Vault>,
    connector: String,
    per_user: bool,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("connector", &self.connector)
            .field("per_user", &self.per_user)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// The workspace-wide credential of `connector` in `vault`.
    pub fn new(vault: Arc<dyn Vault>, connector: impl Into<String>) -> Self {
        Self {
            vault,
            connector: connector.into(),
            per_user: false,
        }
    }

    /// Each caller's own credential instead of the workspace's.
    #[must_use]
    pub fn per_user(mut self, per_user: bool) -> Self {
        self.per_user = per_user;
        self
    }

    /// The slot `call`'s subject uses.
    pub fn slot(&self, call: &Call) -> CredentialSlot {
        let workspace = call.subject.workspace.clone();
        if self.per_user {
            CredentialSlot::user(workspace, self.connector.clone(), call.subject.id.clone())
        } else {
            CredentialSlot::workspace(workspace, self.connector.clone())
        }
    }

    /// Resolves the credential for `call` (none: the request is not governed, which a
    /// credentialed upstream refuses), noting slot and version for the audit.
    pub async fn resolve(
        &self,
        call: Option<&Call>,
        notes: Option<&CallNotes>,
    ) -> Result<Credential, ErrorObject> {
        let call = call.ok_or_else(|| {
            unavailable(format!(
                "the credential for {} needs a governed, authenticated call",
                self.connector
            ))
        })?;
        let slot = self.slot(call);
        let credential = self.vault.resolve(&slot).await.map_err(|error| {
            tracing::warn!(request_id = %call.request_id, slot = %slot, %error, "upstream credential unavailable; refusing call");
            unavailable(match error {
                VaultError::NotFound(_) => {
                    format!("no credential is configured for {}", self.connector)
                }
                VaultError::Revoked(_) => {
                    format!("the credential for {} was revoked", self.connector)
                }
                _ => format!("the credential for {} is unavailable", self.connector),
            })
        })?;
        if let Some(notes) = notes {
            notes.credential(&slot, credential.version());
        }
        Ok(credential)
    }
}

fn unavailable(message: String) -> ErrorObject {
    ErrorObject::new(CREDENTIAL_UNAVAILABLE, message)
        .with_data(serde_json::json!({ "denial": "credential_unavailable" }))
}

/// A header carrying the credential: a name and a value template with one `{credential}`.
#[derive(Clone, Debug)]
pub struct HeaderTemplate {
    name: HeaderName,
    prefix: String,
    suffix: String,
}

/// A header template that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("credential header: {0}")]
pub struct TemplateError(String);

impl HeaderTemplate {
    /// `name: template`, where `template` holds `{credential}` exactly once.
    pub fn parse(name: &str, template: &str) -> Result<Self, TemplateError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TemplateError(format!("{name:?} is not a header name")))?;
        let (prefix, suffix) = template
            .split_once(PLACEHOLDER)
            .filter(|(_, suffix)| !suffix.contains(PLACEHOLDER))
            .ok_or_else(|| {
                TemplateError(format!("the value must contain {PLACEHOLDER} exactly once"))
            })?;
        for part in [prefix, suffix] {
            HeaderValue::from_str(part)
                .map_err(|_| TemplateError("the value template is not a header value".into()))?;
        }
        Ok(Self {
            name,
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The header name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The header value for `secret`, marked sensitive; `None` when the secret cannot be a
    /// header value (the error never carries it).
    pub fn value(&self, secret: &Secret) -> Option<HeaderValue> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(
            self.prefix.len() + secret.len() + self.suffix.len(),
        ));
        bytes.extend_from_slice(self.prefix.as_bytes());
        bytes.extend_from_slice(secret.expose());
        bytes.extend_from_slice(self.suffix.as_bytes());
        let mut value = HeaderValue::from_bytes(&bytes).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The header for `credential`, or the call's refusal.
    pub fn header(
        &self,
        credential: &Credential,
        connector: &str,
    ) -> Result<(HeaderName, HeaderValue), ErrorObject> {
        let value = self.value(credential.secret()).ok_or_else(|| {
            unavailable(format!(
                "the credential for {connector} cannot be used in a header"
            ))
        })?;
        Ok((self.name.clone(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::call::{Action, Resource};
    use fortress_core::subject::{Subject, WorkspaceId};
    use fortress_core::vault::MemoryVault;

    fn call(user: &str) -> Call {
        Call::new(
            Subject::user(user, WorkspaceId::new("acme")),
            Action::CallTool,
            Resource::tool("gh", "t"),
        )
    }

    #[test]
    fn templates_need_one_placeholder_and_valid_parts() {
        assert!(HeaderTemplate::parse("authorization", "Bearer").is_err());
        assert!(HeaderTemplate::parse("authorization", "{credential}{credential}").is_err());
        assert!(HeaderTemplate::parse("bad header", "{credential}").is_err());
        let t = HeaderTemplate::parse("x-token", "{credential};v=1").unwrap();
        assert_eq!(t.value(&Secret::from("s")).unwrap(), "s;v=1");
        assert!(t.value(&Secret::from("new\nline")).is_none());
    }

    #[tokio::test]
    async fn credentials_resolve_per_workspace_or_per_user_and_fail_closed() {
        let vault = Arc::new(MemoryVault::new());
        let workspace = CredentialSlot::workspace(WorkspaceId::new("acme"), "gh");
        vault.put(&workspace, Secret::from("team")).await.unwrap();
        let own = CredentialSlot::user(WorkspaceId::new("acme"), "gh", "alice");
        vault.put(&own, Secret::from("alice's")).await.unwrap();

        let shared = CredentialSource::new(vault.clone(), "gh");
        let notes = CallNotes::new();
        let got = shared
            .resolve(Some(&call("bob")), Some(&notes))
            .await
            .unwrap();
        assert_eq!(got.secret().expose(), b"team");

        let personal = CredentialSource::new(vault, "gh").per_user(true);
        let got = personal.resolve(Some(&call("alice")), None).await.unwrap();
        assert_eq!(got.secret().expose(), b"alice's");
        let missing = personal
            .resolve(Some(&call("bob")), None)
            .await
            .unwrap_err();
        assert_eq!(missing.code, CREDENTIAL_UNAVAILABLE);
        assert!(missing.message.contains("gh"));
        let ungoverned = personal.resolve(None, None).await.unwrap_err();
        assert_eq!(ungoverned.code, CREDENTIAL_UNAVAILABLE);
    }
}
