//! IP addresses. IPv4: four dotted octets without leading zeros, not part of a longer
//! dotted number and not right after `version`; the unspecified, loopback and broadcast
//! addresses identify nobody and are left alone. IPv6: a run of hex digits and colons
//! (optionally ending in a dotted IPv4) that parses as an address, found by its colons.

use std::net::Ipv6Addr;
use std::sync::Arc;

use super::context::right_before;
use super::{Detector, Hit, is_word, left_ok, right_ok};

const VERSION_WORDS: &[&[u8]] = &[b"version", b"ver", b"release", b"v"];

/// The end of an IPv4 address starting at `p`, if one does.
pub(crate) fn v4_at(hay: &[u8], p: usize) -> Option<usize> {
    if p > 0 && hay[p - 1] == b'.' {
        return None;
    }
    let mut octets = [0u32; 4];
    let mut i = p;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if hay.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let (end, n) = super::digits(hay, i, 4);
        if n == 0 || n > 3 || (n > 1 && hay[i] == b'0') {
            return None;
        }
        *octet = super::value(&hay[i..end]);
        if *octet > 255 {
            return None;
        }
        i = end;
    }
    // Not the start of a longer dotted number (an OID or a five-part version).
    if hay.get(i) == Some(&b'.') && hay.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if !right_ok(hay, i) || right_before(hay, p, VERSION_WORDS) {
        return None;
    }
    let boring = octets == [0, 0, 0, 0] || octets[0] == 127 || octets == [255, 255, 255, 255];
    (!boring).then_some(i)
}

fn is_v6_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// Finds IPv6 addresses from their colons.
pub(crate) struct Ipv6Detector {
    pub(crate) entity: Arc<str>,
}

/// The longest IPv6 address text (with an embedded IPv4 tail).
const V6_MAX: usize = 45;

impl Detector for Ipv6Detector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut from = at;
        while let Some(off) = memchr::memchr(b':', &bytes[from..]) {
            let colon = from + off;
            // The run of address characters around this colon.
            let mut start = colon;
            while start > 0 && colon - start <= V6_MAX && is_v6_char(bytes[start - 1]) {
                start -= 1;
            }
            let mut end = colon;
            while end < bytes.len() && end - start <= V6_MAX && is_v6_char(bytes[end]) {
                end += 1;
            }
            from = end.max(colon + 1);
            if start < at || end - start > V6_MAX || !left_ok(bytes, start) {
                continue;
            }
            // A sentence may end right after an address.
            let mut stop = end;
            while stop > start && bytes[stop - 1] == b'.' {
                stop -= 1;
            }
            // A replacement right after the run stands for text that may have continued
            // it (`…::1.EMP-…` was `…::1.E` glued to a word): no address then, nor now.
            let glued = matches!(bytes.get(end), Some(b'[' | b'*'));
            if glued || !right_ok(bytes, stop) || (stop < bytes.len() && is_word(bytes[stop])) {
                continue;
            }
            let text = &hay[start..stop];
            if plausible_v6(text) {
                return Some(Hit {
                    start,
                    end: stop,
                    entity: self.entity.clone(),
                });
            }
        }
        None
    }

    fn max_len(&self) -> usize {
        V6_MAX
    }
}

/// Parses as IPv6, has at least three groups or a `::`, and is not loopback/unspecified.
fn plausible_v6(text: &str) -> bool {
    let colons = text.bytes().filter(|&b| b == b':').count();
    if colons < 2 || !text.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    match text.parse::<Ipv6Addr>() {
        Ok(addr) => !addr.is_loopback() && !addr.is_unspecified(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4() {
        assert_eq!(v4_at(b"192.168.1.20", 0), Some(12));
        assert_eq!(v4_at(b"8.8.8.8.", 0), Some(7));
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
        ] {
            assert_eq!(v4_at(s.as_bytes(), 0), None, "{s}");
        }
        assert_eq!(v4_at(b"version 1.2.3.4", 8), None);
    }

    #[test]
    fn v6() {
        let d = Ipv6Detector {
            entity: Arc::from("IP"),
        };
        let hit = |s: &str| d.next(s, 0).map(|h| (h.start, h.end));
        assert_eq!(hit("addr 2001:db8::8a2e:370:7334 ok"), Some((5, 28)));
        assert_eq!(hit("fe80::1ff:fe23:4567:890a."), Some((0, 24)));
        assert_eq!(hit("std::fmt::Display at 12:30:45 and ::1"), None);
        assert_eq!(hit("mac 00:1A:2B:3C:4D:5E"), None);
    }
}
