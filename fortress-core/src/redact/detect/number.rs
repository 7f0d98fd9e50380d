//! Everything found from a run of digits: phone numbers, SSNs, payment cards, IBANs, IPv4
//! addresses and dates of birth, in one pass over the digits.
//!
//! A run of digits can be the start of a match, or the match can start a little before
//! it: at `+` or `(` (phones), at two capital letters (an IBAN's country), or at a month
//! name (a date). Starts are tried left to right and, at one start, the longest match wins.

use std::sync::Arc;

use super::escape::escape_ends_at;
use super::{
    Detector, Hit, card, continues_number, dob, iban, ip, left_ok, next_digit, phone, ssn,
};

/// Which number families are on, and their entity names.
#[derive(Clone, Default)]
pub(crate) struct NumberFamilies {
    pub(crate) phone: Option<Arc<str>>,
    pub(crate) ssn: Option<Arc<str>>,
    pub(crate) card: Option<Arc<str>>,
    pub(crate) iban: Option<Arc<str>>,
    pub(crate) ipv4: Option<Arc<str>>,
    pub(crate) dob: Option<Arc<str>>,
}

/// Finds the number families.
pub(crate) struct NumberDetector {
    pub(crate) families: NumberFamilies,
}

impl NumberDetector {
    fn try_start<'a>(&'a self, hay: &[u8], s: usize) -> Option<Hit> {
        if !left_ok(hay, s) {
            return None;
        }
        let f = &self.families;
        let first = hay[s];
        let mut best: Option<(usize, &'a Arc<str>)> = None;
        let mut pick = |end: Option<usize>, entity: &'a Option<Arc<str>>| {
            if let (Some(end), Some(entity)) = (end, entity.as_ref()) {
                if best.is_none_or(|(b, _)| end > b) {
                    best = Some((end, entity));
                }
            }
        };
        if first.is_ascii_digit() {
            if continues_number(hay, s) {
                return None;
            }
            // Dispatch on the run's length and the byte after it, so each run only meets
            // the validators whose formats can start that way.
            let n = hay[s..].iter().take_while(|b| b.is_ascii_digit()).count();
            let next = hay.get(s + n).copied().unwrap_or(0);
            let sep = matches!(next, b'-' | b'.' | b' ');
            if f.phone.is_some() && (((n == 3 || n == 1) && sep) || n == 10) {
                pick(phone::at(hay, s), &f.phone);
            }
            if f.ssn.is_some() && ((n == 3 && matches!(next, b'-' | b' ')) || n == 9) {
                pick(ssn::at(hay, s), &f.ssn);
            }
            if f.card.is_some()
                && (((3..=6).contains(&n) && matches!(next, b'-' | b' ')) || (13..=19).contains(&n))
            {
                pick(card::at(hay, s), &f.card);
            }
            if f.ipv4.is_some() && n <= 3 && next == b'.' {
                pick(ip::v4_at(hay, s), &f.ipv4);
            }
            if f.dob.is_some() && (n == 4 || n <= 2) && matches!(next, b'-' | b'.' | b'/' | b' ') {
                pick(dob::at(hay, s), &f.dob);
            }
        } else if first == b'+' || first == b'(' {
            if f.phone.is_some() && !(s > 0 && hay[s - 1] == b'+') {
                pick(phone::at(hay, s), &f.phone);
            }
        } else if first.is_ascii_uppercase()
            && hay.get(s + 1).is_some_and(u8::is_ascii_uppercase)
            && f.iban.is_some()
        {
            pick(iban::at(hay, s), &f.iban);
        }
        if first.is_ascii_alphabetic() && f.dob.is_some() {
            pick(dob::at(hay, s), &f.dob);
        }
        best.map(|(end, entity)| Hit {
            start: s,
            end,
            entity: entity.clone(),
        })
    }
}

/// Whether the digit run at `q` is glued to a word before it, so no family can start at
/// it: not at `q` (the left boundary fails), not at a month name (that needs a space), not
/// at `+` or `(`, and not at an IBAN's country letters (they need a boundary before them).
/// Later runs of the same word are glued the same way.
fn inside_word(hay: &[u8], q: usize) -> bool {
    if q == 0 {
        return false;
    }
    let b = hay[q - 1];
    let iban_letters =
        b.is_ascii_uppercase() && q >= 2 && hay[q - 2].is_ascii_uppercase() && left_ok(hay, q - 2);
    (b.is_ascii_alphabetic() || b == b'_') && !iban_letters && !escape_ends_at(hay, q)
}

/// A cheap test that rules out most digit runs in ordinary text, from the run's length
/// and the two bytes after it (and the byte before it): the conditions under which each
/// family's validator can accept a match starting at the run or at a prefix of it. Most
/// runs in logs and code (`=200 `, `12:30`, `3 days`, `v1.2`) fail it.
fn could_start(hay: &[u8], q: usize, run_end: usize) -> bool {
    let n = run_end - q;
    // Nine or ten bare digits (SSN, phone near a keyword) and 13–19 (cards).
    if matches!(n, 9 | 10 | 13..=19) {
        return true;
    }
    let before = if q > 0 { hay[q - 1] } else { 0 };
    // `+` or `(` (phones), capital letters (an IBAN's country); `inside_word` has already
    // let through only capitals that can start an IBAN.
    if matches!(before, b'+' | b'(') || before.is_ascii_uppercase() {
        return true;
    }
    let next = hay.get(run_end).copied().unwrap_or(0);
    let after = hay.get(run_end + 1).copied().unwrap_or(0);
    match next {
        // A month name before: `March 12, 1985`, `Mar. 12 1985`.
        b',' | b' '
            if n <= 2
                && before == b' '
                && q >= 2
                && (hay[q - 2].is_ascii_alphabetic() || hay[q - 2] == b'.') =>
        {
            true
        }
        // `12 March 1985`.
        b' ' if n <= 2 && dob::month_initial(after) => true,
        // Phones (`415-555-…`, `1-800-…`, `1 (800) …`), SSNs and card groups (3–6
        // digits), dates (`1985-03-…`, `12.03.…`, `3/12/…`), IPv4 (`10.0.…`).
        b'-' | b'.' | b' ' | b'/' => {
            after.is_ascii_digit() && n <= 6 || (n == 1 && after == b'(' && hay[q] == b'1')
        }
        _ => false,
    }
}

impl Detector for NumberDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut i = at;
        // A run already under way at `at` cannot start a match.
        while i < bytes.len() && i > 0 && bytes[i - 1].is_ascii_digit() && bytes[i].is_ascii_digit()
        {
            i += 1;
        }
        loop {
            let q = next_digit(bytes, i)?;
            let run_end = q + bytes[q..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(bytes.len() - q);
            if inside_word(bytes, q) {
                // Nothing can start at a run inside a word (hex, identifiers), nor at any
                // later run of the same word: skip the word.
                i = run_end
                    + bytes[run_end..]
                        .iter()
                        .position(|&b| !super::is_word(b))
                        .unwrap_or(bytes.len() - run_end);
                continue;
            }
            if !could_start(bytes, q, run_end) {
                i = run_end;
                continue;
            }
            let mut starts = [usize::MAX; 4];
            // A month name needs a space before a day of one or two digits.
            if self.families.dob.is_some() && run_end - q <= 2 {
                if let Some(m) = dob::month_before(bytes, q) {
                    starts[0] = m;
                }
            }
            if q >= 2
                && self.families.iban.is_some()
                && bytes[q - 1].is_ascii_uppercase()
                && bytes[q - 2].is_ascii_uppercase()
            {
                starts[1] = q - 2;
            }
            if q >= 1 && matches!(bytes[q - 1], b'+' | b'(') {
                starts[2] = q - 1;
            }
            starts[3] = q;
            for &s in &starts {
                if s != usize::MAX && s >= at {
                    if let Some(hit) = self.try_start(bytes, s) {
                        return Some(hit);
                    }
                }
            }
            i = run_end;
        }
    }

    fn max_len(&self) -> usize {
        // The longest: a spaced IBAN.
        iban::MAX_LEN.max(dob::MAX_LEN).max(24)
    }
}
