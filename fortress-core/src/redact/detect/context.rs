//! Context words: some values count only near a keyword ("DOB", "SSN", "phone"), some do
//! not count right after one ("order #", "version").
//!
//! A positive keyword must be within [`NEAR`] bytes before the value with no `[`, `]` or
//! `*` between them. Those characters begin or end every replacement, so a replacement
//! between a keyword and a value (which shortens the gap) never lets a second pass find
//! more than the first did.

use super::{letter_before, word_at};

/// How far before a value a positive keyword may be.
pub(crate) const NEAR: usize = 48;

/// Positive keywords (lowercase ASCII), a table of the bytes they can start with in
/// either case, and a filter of their first two bytes, so a scan for them skips most
/// bytes with one lookup and most remaining ones with a second (`s`, `t`, `c`, `p` start
/// many English words; `ss`, `te`, `ca`, `ph` start far fewer).
pub(crate) struct Words {
    words: &'static [&'static [u8]],
    first: [bool; 256],
    pairs: [u64; PAIR_WORDS],
}

/// The size of the two-byte filter, in 64-bit words.
const PAIR_WORDS: usize = 16;

/// Where the pair of bytes `a`, `b` (ASCII case ignored) sits in the two-byte filter.
/// Distinct pairs may share a bit: the filter only rules candidates out.
const fn pair_bit(a: u8, b: u8) -> usize {
    ((a.to_ascii_lowercase() as usize) * 31 + b.to_ascii_lowercase() as usize) % (PAIR_WORDS * 64)
}

impl Words {
    const fn new(words: &'static [&'static [u8]]) -> Self {
        let mut first = [false; 256];
        let mut pairs = [0u64; PAIR_WORDS];
        let mut i = 0;
        while i < words.len() {
            let b = words[i][0];
            first[b.to_ascii_lowercase() as usize] = true;
            first[b.to_ascii_uppercase() as usize] = true;
            let bit = pair_bit(b, words[i][1]);
            pairs[bit / 64] |= 1 << (bit % 64);
            i += 1;
        }
        Self {
            words,
            first,
            pairs,
        }
    }

    /// Whether a keyword may start at `i` (before `p`), by its first two bytes.
    fn may_start(&self, hay: &[u8], i: usize, p: usize) -> bool {
        if !self.first[usize::from(hay[i])] || i + 1 >= p {
            return false;
        }
        let bit = pair_bit(hay[i], hay[i + 1]);
        self.pairs[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// Keywords that make a date a date of birth.
pub(crate) const DOB_WORDS: Words = Words::new(&[b"dob", b"d.o.b", b"birth", b"born"]);
/// Keywords that make nine bare digits an SSN.
pub(crate) const SSN_WORDS: Words = Words::new(&[b"ssn", b"social security", b"ss#", b"ss no"]);
/// Keywords that make ten bare digits a phone number.
pub(crate) const PHONE_WORDS: Words = Words::new(&[
    b"phone", b"tel", b"mobile", b"cell", b"call", b"fax", b"contact", b"sms",
]);
/// Keywords right before a long number that make it an identifier, not a card.
pub(crate) const ID_WORDS: &[&[u8]] = &[
    b"id",
    b"order",
    b"invoice",
    b"tracking",
    b"ref",
    b"ts",
    b"timestamp",
    b"seq",
    b"trace",
    b"span",
    b"build",
    b"version",
    b"nonce",
    b"serial",
];

/// Whether a keyword from `words` occurs within [`NEAR`] bytes before `p`, with no
/// replacement boundary between it and `p`.
pub(crate) fn near_before(hay: &[u8], p: usize, words: &Words) -> bool {
    // One backward pass that stops at the nearest replacement boundary.
    let start = p.saturating_sub(NEAR);
    let mut i = p;
    while i > start {
        i -= 1;
        let b = hay[i];
        if matches!(b, b'[' | b']' | b'*') {
            return false;
        }
        if words.may_start(hay, i, p)
            && !letter_before(hay, i)
            && words
                .words
                .iter()
                .any(|w| i + w.len() <= p && word_at(hay, i, w))
        {
            return true;
        }
    }
    false
}

/// Whether a keyword from `words` ends right before `p`, separated only by punctuation
/// and spaces (at most 4 bytes of it): `order #4111…`, `version 1.2.3.4`, `id=…`.
///
/// A replacement (`[SECRET]`, `[SECRET_3f9a…]`) in the keyword's place counts as the
/// keyword: it may stand for a value that ended with one (`Bearer 123-45-6789order
/// #4111…`, whose token swallows `order`), and the number it kept from matching must not
/// match on a second pass.
pub(crate) fn right_before(hay: &[u8], p: usize, words: &[&[u8]]) -> bool {
    let mut k = p;
    while k > 0
        && p - k < 4
        && matches!(
            hay[k - 1],
            b' ' | b':' | b'=' | b'#' | b'"' | b'\'' | b'(' | b'-' | b'_' | b'.'
        )
    {
        k -= 1;
    }
    replacement_ends_at(hay, k)
        || words.iter().any(|w| {
            k >= w.len()
                && word_at(hay, k - w.len(), w)
                && hay[k - w.len()..k].eq_ignore_ascii_case(w)
        })
}

/// Whether a mask or token replacement (`[ENTITY]`, `[ENTITY_<hex>]`) ends at `e`.
/// Entity names are at most 32 bytes and tokens add 17, so the look-back stays within
/// the context every detector may read.
fn replacement_ends_at(hay: &[u8], e: usize) -> bool {
    const LONGEST: usize = 1 + 32 + 17 + 1;
    if e < 3 || hay[e - 1] != b']' {
        return false;
    }
    let floor = e.saturating_sub(LONGEST);
    let mut i = e - 1;
    while i > floor {
        i -= 1;
        match hay[i] {
            b'[' => return hay[i + 1].is_ascii_uppercase(),
            b if b.is_ascii_alphanumeric() || b == b'_' => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{DOB_WORDS, PHONE_WORDS, SSN_WORDS, Words, near_before};
    use crate::redact::detect::word_at;

    /// `near_before` without the first-byte table and the two-byte filter.
    fn plain(hay: &[u8], p: usize, words: &Words) -> bool {
        (p.saturating_sub(NEAR_FOR_TEST)..p)
            .rev()
            .take_while(|&i| !matches!(hay[i], b'[' | b']' | b'*'))
            .any(|i| {
                words
                    .words
                    .iter()
                    .any(|w| i + w.len() <= p && word_at(hay, i, w))
            })
    }

    const NEAR_FOR_TEST: usize = super::NEAR;

    #[test]
    fn the_filters_change_no_answer() {
        let text = "Patient SSN: x, ss# y; Social Security z. DOB 1 d.o.b 2 BORN 3 birthday \
                    4 Tel 5 CELL 6 mobile 7 call 8 fax 9 sms 10 contact 11 [PHONE] 12 seq ts s \
                    sn tele phones p h smS ssno ss no d.o dob*7 xdob 8";
        let hay = text.as_bytes();
        for words in [&DOB_WORDS, &SSN_WORDS, &PHONE_WORDS] {
            for p in 0..=hay.len() {
                assert_eq!(near_before(hay, p, words), plain(hay, p, words), "at {p}");
            }
        }
    }
}
