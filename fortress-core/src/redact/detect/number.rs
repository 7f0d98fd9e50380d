//! Everything found from a run of digits: phone numbers, SSNs, payment cards, IBANs, IPv4
//! addresses and dates of birth, in one pass over the digits.
//!
//! A run of digits can be the start of a match, or the match can start a little before
//! it: at `+` or `(` (phones), at two capital letters (an IBAN's country), or at a month
//! name (a date). Starts are tried left to right and, at one start, the longest match wins.

use std::sync::Arc;

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
            if f.phone.is_some() {
                pick(phone::at(hay, s), &f.phone);
            }
            if f.ssn.is_some() {
                pick(ssn::at(hay, s), &f.ssn);
            }
            if f.card.is_some() {
                pick(card::at(hay, s), &f.card);
            }
            if f.ipv4.is_some() {
                pick(ip::v4_at(hay, s), &f.ipv4);
            }
            if f.dob.is_some() {
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
            let mut starts = [usize::MAX; 4];
            if self.families.dob.is_some() {
                if let Some(m) = dob::month_before(bytes, q) {
                    starts[0] = m;
                }
            }
            if q >= 2 && self.families.iban.is_some() {
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
            i = q + bytes[q..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(bytes.len() - q);
        }
    }

    fn max_len(&self) -> usize {
        // The longest: a spaced IBAN.
        iban::MAX_LEN.max(dob::MAX_LEN).max(24)
    }
}
