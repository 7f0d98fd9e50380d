//! Detectors: one small module per entity family, each with its validator.
//!
//! Every detector answers one question — "what is the leftmost match starting at or after
//! `at`?" — and the answer for a position depends only on the text around it (at most
//! [`CONTEXT_LEN`] bytes before and after), never on where the scan started. That is what
//! lets [`HoldBackRedactor`](super::HoldBackRedactor) stream with byte-identical output.
//!
//! Boundaries are shared so redacting twice equals redacting once: a replacement starts
//! with `[` or `*` and ends with `]` or a kept character, and those characters block a
//! neighbouring match exactly as a word character would.

pub(crate) mod card;
pub(crate) mod context;
pub(crate) mod custom;
pub(crate) mod dictionary;
pub(crate) mod dob;
pub(crate) mod email;
pub(crate) mod escape;
pub(crate) mod iban;
pub(crate) mod ip;
pub(crate) mod json_key;
pub(crate) mod keyword;
pub(crate) mod number;
pub(crate) mod phone;
pub(crate) mod secret;
pub(crate) mod ssn;

use std::sync::Arc;

/// How many bytes either side of a match can change whether it matches.
pub(crate) const CONTEXT_LEN: usize = 64;

/// The longest match any built-in detector reports (a PEM private key block).
pub(crate) const MAX_BUILTIN_MATCH: usize = 8192;

/// One match: where it is and what it is.
#[derive(Clone, Debug)]
pub(crate) struct Hit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) entity: Arc<str>,
}

impl Hit {
    /// Whether `self` should win over `other`: leftmost, then longest.
    pub(crate) fn beats(&self, other: &Hit) -> bool {
        self.start < other.start || (self.start == other.start && self.end > other.end)
    }
}

/// Keeps the better of two optional hits.
pub(crate) fn better(best: Option<Hit>, candidate: Hit) -> Option<Hit> {
    match best {
        Some(b) if !candidate.beats(&b) => Some(b),
        _ => Some(candidate),
    }
}

/// A detector of one or more entity families.
pub(crate) trait Detector: Send + Sync {
    /// The leftmost (then longest) match starting at or after `at`.
    fn next(&self, hay: &str, at: usize) -> Option<Hit>;

    /// The longest match this detector reports.
    fn max_len(&self) -> usize;

    /// Where its settled part of `hay` ends: before it, whether this detector finds a
    /// match starting at a position (and where that match ends) does not depend on text
    /// appended later. By default it holds back its longest match and the context.
    fn settled(&self, hay: &[u8]) -> usize {
        hay.len().saturating_sub(self.max_len() + CONTEXT_LEN)
    }
}

/// A character that continues a word: a match may not start right after one.
pub(crate) fn is_word(b: u8) -> bool {
    WORD[usize::from(b)]
}

/// `is_word` as a table: word skipping (hex hashes, identifiers) asks it once a byte.
const WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// Whether a match may start at `p`: not glued to a word or to a previous replacement.
pub(crate) fn left_ok(hay: &[u8], p: usize) -> bool {
    p == 0 || {
        let b = hay[p - 1];
        !((is_word(b) && !escape::escape_ends_at(hay, p)) || b == b']' || b == b'*')
    }
}

/// Whether the byte before `p` is a letter that continues a word (not the letter of an
/// escape such as `\n`, which ends one in JSON written as text).
pub(crate) fn letter_before(hay: &[u8], p: usize) -> bool {
    p > 0 && hay[p - 1].is_ascii_alphabetic() && !escape::escape_ends_at(hay, p)
}

/// Whether a match may end at `e`: not glued to a word or to a following replacement.
pub(crate) fn right_ok(hay: &[u8], e: usize) -> bool {
    e >= hay.len() || {
        let b = hay[e];
        !(is_word(b) || b == b'[' || b == b'*')
    }
}

/// Whether a number starting at `p` is really the tail of a longer one (`1.2`, `3-4`, `5:6`).
pub(crate) fn continues_number(hay: &[u8], p: usize) -> bool {
    // `]` and `*` end replacements, which stand for what was a number or a word.
    p >= 2
        && match hay[p - 1] {
            b' ' => hay[p - 2].is_ascii_digit() || hay[p - 2] == b']',
            b'-' | b'.' | b'/' | b':' | b',' => {
                hay[p - 2].is_ascii_digit() || matches!(hay[p - 2], b']' | b'*')
            }
            _ => false,
        }
}

/// Whether a number ending at `e` goes on (`…-7`, `….7`, `…/7`, `…:7`).
pub(crate) fn number_goes_on(hay: &[u8], e: usize) -> bool {
    e + 1 < hay.len()
        && matches!(hay[e], b'-' | b'.' | b'/' | b':' | b',')
        && (hay[e + 1].is_ascii_digit() || matches!(hay[e + 1], b'[' | b'*'))
}

/// Reads ASCII digits from `i`; returns the end and how many were read (at most `max`).
pub(crate) fn digits(hay: &[u8], i: usize, max: usize) -> (usize, usize) {
    let mut j = i;
    while j < hay.len() && j - i < max && hay[j].is_ascii_digit() {
        j += 1;
    }
    (j, j - i)
}

/// The value of a run of ASCII digits.
pub(crate) fn value(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

/// Whether `word` (lowercase ASCII) occurs case-insensitively at `i`, starting a word.
pub(crate) fn word_at(hay: &[u8], i: usize, word: &[u8]) -> bool {
    hay.len() >= i + word.len()
        && hay[i..i + word.len()].eq_ignore_ascii_case(word)
        && !letter_before(hay, i)
}

/// The first ASCII digit at or after `from`, eight bytes at a time.
pub(crate) fn next_digit(hay: &[u8], from: usize) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // Bytes strictly between M and N, per byte, without carries between bytes.
    const M: u64 = b'0' as u64 - 1;
    const N: u64 = b'9' as u64 + 1;
    let mut i = from;
    while i + 8 <= hay.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(word);
        let t = x & LOW7;
        let found = (L * (127 + N) - t) & !x & (t + L * (127 - M)) & H;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(u8::is_ascii_digit).map(|p| i + p)
}

/// A byte of a JSON number (`-`, digits, `.`, exponent): a bare number under a sensitive key
/// is replaced whole, exponent included, so the text stays JSON.
pub(crate) fn json_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'+' | b'e' | b'E')
}

#[cfg(test)]
mod tests {
    use super::next_digit;

    #[test]
    fn next_digit_matches_a_plain_scan() {
        let text = "abc/:;~ \u{00e9}\u{0660}xx 9 and 0 then----------------------5@";
        let bytes = text.as_bytes();
        for from in 0..=bytes.len() {
            let plain = bytes[from..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|p| from + p);
            assert_eq!(next_digit(bytes, from), plain, "from {from}");
        }
        let all: Vec<u8> = (0..=255u8).collect();
        for from in 0..all.len() {
            let plain = all[from..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|p| from + p);
            assert_eq!(next_digit(&all, from), plain);
        }
    }
}
