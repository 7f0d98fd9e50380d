//! Email addresses: a local part of up to 64 characters, `@`, and a domain of dot-separated
//! labels ending in an alphabetic top-level domain (image suffixes such as `icon@2x.png`
//! are not domains). Found from their `@`.

use std::sync::Arc;

use super::{Detector, Hit, left_ok, right_ok};

/// The longest address.
pub(crate) const MAX_LEN: usize = 254;

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

const NOT_TLDS: &[&[u8]] = &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico"];

/// Finds email addresses.
pub(crate) struct EmailDetector {
    pub(crate) entity: Arc<str>,
}

impl Detector for EmailDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut from = at;
        while let Some(off) = memchr::memchr(b'@', &bytes[from..]) {
            let sign = from + off;
            from = sign + 1;
            let mut start = sign;
            while start > 0 && sign - start <= 64 && is_local(bytes[start - 1]) {
                start -= 1;
            }
            // The run must not be glued to a word or a replacement; an over-long run is
            // not an address. Local parts do not start with a dot.
            if sign - start > 64 || !left_ok(bytes, start) {
                continue;
            }
            while start < sign && bytes[start] == b'.' {
                start += 1;
            }
            if start == sign || start < at {
                continue;
            }
            if let Some(end) = domain_end(bytes, sign + 1) {
                if end - start <= MAX_LEN {
                    return Some(Hit {
                        start,
                        end,
                        entity: self.entity.clone(),
                    });
                }
            }
        }
        None
    }

    fn max_len(&self) -> usize {
        MAX_LEN
    }
}

/// The end of the domain starting at `d`: labels up to the last alphabetic TLD.
fn domain_end(bytes: &[u8], d: usize) -> Option<usize> {
    let mut i = d;
    let mut labels = 0;
    let mut best = None;
    loop {
        let start = i;
        while i < bytes.len() && i - start < 63 && is_label(bytes[i]) {
            i += 1;
        }
        if i == start || bytes[start] == b'-' || bytes[i - 1] == b'-' {
            break;
        }
        labels += 1;
        let label = &bytes[start..i];
        if labels >= 2
            && label.len() >= 2
            && label.len() <= 24
            && label.iter().all(u8::is_ascii_alphabetic)
            && !NOT_TLDS.iter().any(|t| label.eq_ignore_ascii_case(t))
            && right_ok(bytes, i)
        {
            best = Some(i);
        }
        if labels > 10 || bytes.get(i) != Some(&b'.') || i - d > 253 {
            break;
        }
        i += 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str) -> Option<&str> {
        let d = EmailDetector {
            entity: Arc::from("EMAIL"),
        };
        d.next(s, 0).map(|h| &s[h.start..h.end])
    }

    #[test]
    fn addresses() {
        assert_eq!(
            find("mail jane.doe+x@mail.example.co.uk."),
            Some("jane.doe+x@mail.example.co.uk")
        );
        assert_eq!(find("<bob@example.org>"), Some("bob@example.org"));
        assert_eq!(find("see icon@2x.png or @Override or user@host"), None);
        assert_eq!(find("x@a.b4"), None);
    }
}
