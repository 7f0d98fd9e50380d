//! What happens to a detected value: mask it (`[EMAIL]`), keep its last four characters,
//! replace it with a deterministic token, drop the JSON field holding it, or allow it.
//!
//! Tokens are `[ENTITY_<16 hex>]`: the first 64 bits of HMAC-SHA256 under the workspace's
//! key over the entity type and the normalised value (case-folded emails, digits of
//! numbers), so the same person maps to the same token across calls without the value
//! being recoverable from it.
//!
//! ```
//! use fortress_core::redact::{Action, TokenKey};
//!
//! let key = TokenKey::new(b"workspace key of at least 16 bytes".to_vec()).unwrap();
//! let a = Action::Token.replace("EMAIL", "Bob@Example.com", Some(&key));
//! let b = Action::Token.replace("EMAIL", "bob@example.com", Some(&key));
//! assert_eq!(a, b);
//! assert!(a.starts_with("[EMAIL_") && !a.contains("bob"));
//! assert_eq!(Action::Partial.replace("CARD", "4111 1111 1111 1111", None), "**** **** **** 1111");
//! assert_eq!(Action::Mask.replace("SSN", "123-45-6789", None), "[SSN]");
//! ```

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::RedactError;
use super::entity;
use crate::secret::Secret;

/// What to do with a detected value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Replace with `[ENTITY]`.
    #[default]
    Mask,
    /// Keep the last four letters or digits, star the others (values with fewer than
    /// eight are starred entirely).
    Partial,
    /// Replace with a deterministic keyed token `[ENTITY_<hex>]`.
    Token,
    /// Remove the JSON field (or array element) holding the value; in plain text, mask.
    Drop,
    /// Leave the value alone (the entity type is not detected).
    Allow,
}

/// A workspace's key for deterministic tokens (at least 16 bytes).
#[derive(Clone)]
pub struct TokenKey(std::sync::Arc<Secret>);

impl TokenKey {
    /// Wraps key material; refuses keys shorter than 16 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, RedactError> {
        if bytes.len() < 16 {
            return Err(RedactError::InvalidRule {
                name: "token_key".into(),
                message: "a token key needs at least 16 bytes".into(),
            });
        }
        Ok(Self(std::sync::Arc::new(Secret::new(bytes))))
    }

    fn token(&self, entity: &str, value: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.expose()) {
            Ok(mac) => mac,
            Err(e) => unreachable!("HMAC accepts keys of any length: {e}"),
        };
        mac.update(entity.as_bytes());
        mac.update(&[0]);
        mac.update(normalise(entity, value).as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("[{entity}_{}]", hex::encode(&tag[..8]))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// The form of a value that should map to one token.
fn normalise(entity: &str, value: &str) -> String {
    match entity {
        entity::EMAIL | entity::NAME => value.trim().to_lowercase(),
        entity::PHONE | entity::CARD | entity::SSN => {
            value.chars().filter(char::is_ascii_digit).collect()
        }
        entity::IBAN => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase(),
        _ => value.to_owned(),
    }
}

impl Action {
    /// The text that replaces `value`. `key` is needed for [`Action::Token`]; without one
    /// the value is masked (the redactor refuses such configurations up front).
    pub fn replace(self, entity: &str, value: &str, key: Option<&TokenKey>) -> String {
        match self {
            Action::Mask | Action::Drop => format!("[{entity}]"),
            Action::Allow => value.to_owned(),
            Action::Partial => partial(value),
            Action::Token => match key {
                Some(key) => key.token(entity, value),
                None => format!("[{entity}]"),
            },
        }
    }
}

/// Stars every letter and digit but the last four; other characters stay.
fn partial(value: &str) -> String {
    let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = if alnum >= 8 { 4 } else { 0 };
    let mut seen = 0;
    // Punctuation stays and stars stand for letters and digits, so a replacement blocks
    // its neighbours exactly as the value did.
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen > alnum - keep { c } else { '*' }
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_last_four() {
        assert_eq!(partial("123-45-6789"), "***-**-6789");
        assert_eq!(partial("abc"), "***");
        assert_eq!(partial("+1 415 555 0132"), "+* *** *** 0132");
    }

    #[test]
    fn tokens_depend_on_key_and_entity() {
        let k1 = TokenKey::new(vec![1; 32]).unwrap();
        let k2 = TokenKey::new(vec![2; 32]).unwrap();
        let a = Action::Token.replace("PHONE", "(415) 555-0132", Some(&k1));
        assert_eq!(a, Action::Token.replace("PHONE", "415-555-0132", Some(&k1)));
        assert_ne!(a, Action::Token.replace("PHONE", "415-555-0132", Some(&k2)));
        assert_ne!(a, Action::Token.replace("CARD", "415-555-0132", Some(&k1)));
        assert!(TokenKey::new(vec![0; 8]).is_err());
        assert_eq!(format!("{k1:?}"), "TokenKey(<redacted>)");
    }
}
