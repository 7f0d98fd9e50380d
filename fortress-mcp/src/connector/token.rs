//! OAuth 2.0 access tokens obtained from a token endpoint (RFC 6749 §6 refresh, §4.4 client
//! credentials), for connectors whose vault credential is the client registration rather
//! than an access token.
//!
//! The vault holds a JSON object `{"client_id": …, "client_secret": …, "refresh_token": …}`
//! (without `refresh_token`: the client-credentials grant). The access token obtained with it
//! is cached per credential slot and version until it expires (`expires_in`, less a margin;
//! Salesforce sends none, so [`DEFAULT_LIFETIME`]), and forgotten at once when the API
//! refuses it, so the next attempt fetches a fresh one. A rotated credential (a new vault
//! version) never reuses the old one's token. Tokens and client secrets are held as
//! [`Secret`]s and never logged; a refused grant reports the endpoint's `error` code only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fortress_core::secret::Secret;
use fortress_core::vault::Credential;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::jsonrpc::ErrorObject;
use crate::seam::CREDENTIAL_UNAVAILABLE;

/// What `application/x-www-form-urlencoded` leaves as is (WHATWG URL, urlencoded serializer).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// How long a token without `expires_in` is reused.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(30);

/// The client registration a vault credential holds.
#[derive(Deserialize)]
struct Registration {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.client_id.zeroize();
        self.client_secret.zeroize();
        if let Some(token) = &mut self.refresh_token {
            token.zeroize();
        }
    }
}

impl Registration {
    /// The registration in `credential`, if it holds one (else it is an access token).
    fn of(credential: &Credential) -> Option<Self> {
        serde_json::from_slice(credential.secret().expose()).ok()
    }

    /// The form body of the token request.
    fn form(&self) -> Zeroizing<String> {
        let mut pairs = vec![
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        match &self.refresh_token {
            Some(token) => {
                pairs.insert(0, ("grant_type", "refresh_token"));
                pairs.push(("refresh_token", token.as_str()));
            }
            None => pairs.insert(0, ("grant_type", "client_credentials")),
        }
        let mut body = Zeroizing::new(String::new());
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                body.push('&');
            }
            body.push_str(key);
            body.push('=');
            body.extend(utf8_percent_encode(value, FORM));
        }
        body
    }
}

/// What the token endpoint answers (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

/// The access token of one call.
pub(crate) struct Access {
    /// The token (or the credential itself, when it is an access token).
    pub(crate) secret: Secret,
    /// Where it is cached (`None`: not from a token endpoint).
    key: Option<String>,
}

impl Access {
    /// The credential itself as the access token.
    pub(crate) fn plain(credential: &Credential) -> Self {
        Self {
            secret: credential.secret().clone(),
            key: None,
        }
    }

    /// Whether a refusal of this token may be cured by fetching a new one.
    pub(crate) fn renewable(&self) -> bool {
        self.key.is_some()
    }
}

/// Access tokens by credential slot and version.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
    fetched: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Secret, Instant)>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many tokens were fetched from the endpoint.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The access token for `credential`: cached, or fetched from `endpoint` with the
    /// registration it holds; the credential itself when it holds no registration.
    pub(crate) async fn access(
        &self,
        client: &reqwest::Client,
        endpoint: &reqwest::Url,
        connector: &str,
        credential: &Credential,
    ) -> Result<Access, ErrorObject> {
        let Some(registration) = Registration::of(credential) else {
            return Ok(Access::plain(credential));
        };
        let key = format!("{}#{}", credential.slot(), credential.version());
        if let Some((token, expires)) = self.tokens().get(&key)
            && Instant::now() < *expires
        {
            return Ok(Access {
                secret: token.clone(),
                key: Some(key),
            });
        }
        let (token, lifetime) = self
            .fetch(client, endpoint, connector, &registration)
            .await?;
        let expires = Instant::now() + lifetime.saturating_sub(MARGIN);
        let mut tokens = self.tokens();
        // Tokens of older versions of this slot are of no further use.
        let slot = format!("{}#", credential.slot());
        tokens.retain(|k, _| !k.starts_with(&slot));
        tokens.insert(key.clone(), (token.clone(), expires));
        Ok(Access {
            secret: token,
            key: Some(key),
        })
    }

    /// Forgets a token the API refused.
    pub(crate) fn forget(&self, access: &Access) {
        if let Some(key) = &access.key {
            self.tokens().remove(key);
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        endpoint: &reqwest::Url,
        connector: &str,
        registration: &Registration,
    ) -> Result<(Secret, Duration), ErrorObject> {
        let unavailable = |why: String| {
            ErrorObject::new(
                CREDENTIAL_UNAVAILABLE,
                format!("no access token for {connector}: {why}"),
            )
        };
        let form = registration.form();
        let response = client
            .post(endpoint.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(form.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| unavailable(format!("the token endpoint is unreachable ({e})")))?;
        drop(form);
        let status = response.status();
        let bytes = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|e| unavailable(format!("the token endpoint's answer broke ({e})")))?
                .to_vec(),
        );
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable(format!("the token endpoint answered HTTP {status}")))?;
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match answer.access_token {
            Some(token) if status.is_success() => {
                let lifetime = answer
                    .expires_in
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_LIFETIME);
                Ok((Secret::from_text(token), lifetime))
            }
            _ => {
                // The RFC 6749 error code is safe to show; anything else may not be.
                let code = answer
                    .error
                    .filter(|c| c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or_else(|| "no access_token".into());
                Err(unavailable(format!(
                    "the token endpoint refused the credential (HTTP {}, {code})",
                    status.as_u16()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_core::subject::WorkspaceId;
    use fortress_core::vault::CredentialSlot;

    fn credential(text: &str) -> Credential {
        Credential::new(
            CredentialSlot::workspace(WorkspaceId::new("w"), "sf"),
            1,
            Secret::from(text),
        )
    }

    #[test]
    fn registrations_choose_the_grant_and_encode_the_form() {
        let refresh = Registration::of(&credential(
            r#"{"client_id":"id 1","client_secret":"s&2","refresh_token":"r=3"}"#,
        ))
        .unwrap();
        assert_eq!(
            refresh.form().as_str(),
            "grant_type=refresh_token&client_id=id%201&client_secret=s%262&refresh_token=r%3D3"
        );
        let client =
            Registration::of(&credential(r#"{"client_id":"a","client_secret":"b"}"#)).unwrap();
        assert!(client.form().starts_with("grant_type=client_credentials&"));
        // A plain access token is used as it is.
        assert!(Registration::of(&credential("00Dxx!token")).is_none());
    }
}
