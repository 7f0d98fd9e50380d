//! A secret value that zeroizes itself, never prints, and cannot be serialized.
//!
//! `Secret` is the only type through which credential bytes travel. It deliberately
//! implements neither `Serialize` nor `Display`, and its `Debug` prints `<redacted>`,
//! so a secret cannot leak into logs, errors, audit records or JSON by accident.
//!
//! ```
//! use fortress_core::secret::Secret;
//!
//! let key = Secret::from("sk-live-123");
//! assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
//! assert_eq!(key.expose(), b"sk-live-123");
//! ```

use std::fmt;

use http::HeaderValue;
use zeroize::{Zeroize, Zeroizing};

/// Secret bytes, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes; the caller's buffer is moved, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads a secret from text, trimming one trailing newline (as `echo` or a file adds).
    pub fn from_text(mut text: String) -> Self {
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        let secret = Self::new(text.as_bytes().to_vec());
        text.zeroize();
        secret
    }

    /// The raw bytes. Call this only where the upstream request is built.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, if it is text.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds a header value marked sensitive (HTTP/2 never indexes it, `Debug` hides it),
    /// optionally with a prefix such as `"Bearer "`.
    ///
    /// Returns `None` when the secret contains bytes a header cannot carry.
    pub fn to_header_value(&self, prefix: &str) -> Option<HeaderValue> {
        let mut buf = Zeroizing::new(Vec::with_capacity(prefix.len() + self.0.len()));
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(&self.0);
        let mut value = HeaderValue::from_bytes(&buf).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes().to_vec())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::from_text(value)
    }
}

impl From<Vec<u8>> for Secret {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::from("canary-7f3a");
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("canary"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn header_value_is_sensitive_and_prefixed() {
        let s = Secret::from("abc");
        let v = s.to_header_value("Bearer ").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.as_bytes(), b"Bearer abc");
        assert!(!format!("{v:?}").contains("abc"));
    }

    #[test]
    fn from_text_trims_one_newline() {
        assert_eq!(Secret::from_text("k\r\n".into()).expose(), b"k");
        assert_eq!(Secret::from_text("k\n\n".into()).expose(), b"k\n");
    }

    #[test]
    fn invalid_header_bytes_are_refused() {
        assert!(Secret::from("a\nb").to_header_value("").is_none());
    }
}
