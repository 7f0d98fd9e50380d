//! The authentication header of one outbound request, built from the credential the
//! governance stack resolved for this call. The value is marked sensitive (never indexed
//! by HTTP/2, hidden from `Debug`) and intermediate buffers are zeroized.

use base64::Engine as _;
use fortress_core::secret::Secret;
use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::definition::AuthScheme;

/// The authentication as configured for one connector instance (the username rendered).
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    Bearer,
    Basic { username: Option<String> },
    Header { name: HeaderName, prefix: String },
}

impl Auth {
    pub(crate) fn new(scheme: &AuthScheme, username: Option<String>) -> Self {
        match scheme {
            AuthScheme::Basic { .. } => Self::Basic { username },
            AuthScheme::Header { name, prefix } => Self::Header {
                name: name.clone(),
                prefix: prefix.clone(),
            },
            _ => Self::Bearer,
        }
    }

    /// The header carrying `secret`; `None` when the secret cannot be a header value.
    pub(crate) fn header(&self, secret: &Secret) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Self::Bearer => Some((
                http::header::AUTHORIZATION,
                secret.to_header_value("Bearer ")?,
            )),
            Self::Header { name, prefix } => Some((name.clone(), secret.to_header_value(prefix)?)),
            Self::Basic { username } => {
                let mut pair = Zeroizing::new(Vec::new());
                if let Some(user) = username {
                    pair.extend_from_slice(user.as_bytes());
                    pair.push(b':');
                }
                pair.extend_from_slice(secret.expose());
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*pair));
                let encoded = Secret::new(encoded.as_bytes().to_vec());
                Some((
                    http::header::AUTHORIZATION,
                    encoded.to_header_value("Basic ")?,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_sensitive_and_shaped_per_scheme() {
        let secret = Secret::from("tok");
        let (name, value) = Auth::Basic {
            username: Some("a@b.c/token".into()),
        }
        .header(&secret)
        .unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value.as_bytes(), b"Basic YUBiLmMvdG9rZW46dG9r");
        assert!(value.is_sensitive());
        let (_, value) = Auth::Bearer.header(&secret).unwrap();
        assert_eq!(value.as_bytes(), b"Bearer tok");
        assert!(value.is_sensitive());
        let (name, value) = Auth::Header {
            name: HeaderName::from_static("x-api-key"),
            prefix: String::new(),
        }
        .header(&secret)
        .unwrap();
        assert_eq!(
            (name.as_str(), value.as_bytes()),
            ("x-api-key", &b"tok"[..])
        );
        assert!(Auth::Bearer.header(&Secret::from("a\nb")).is_none());
    }
}
