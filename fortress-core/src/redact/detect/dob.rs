//! Dates of birth: a plausible date (years 1900–2099) near "DOB", "date of birth",
//! "birth" or "born". Formats: `1985-03-12`, `1985/03/12`, `03/12/1985`, `12.03.1985`,
//! `3-12-1985`, `12 March 1985`, `March 12, 1985`, `Mar. 12 1985`.

use super::context::{DOB_WORDS, near_before};
use super::escape::escape_ends_at;
use super::{digits, is_word, number_goes_on, right_ok, value};

const MONTHS: &[&[u8]] = &[
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];

/// The longest date text.
pub(crate) const MAX_LEN: usize = 20;

/// If a month name (and a space) ends at `q`, where it starts.
pub(crate) fn month_before(hay: &[u8], q: usize) -> Option<usize> {
    let mut j = q.checked_sub(1)?;
    if hay[j] != b' ' {
        return None;
    }
    if j > 0 && hay[j - 1] == b'.' {
        j -= 1;
    }
    let mut k = j;
    while k > 0 && j - k < 9 && hay[k - 1].is_ascii_alphabetic() {
        k -= 1;
    }
    // In JSON written as text, `\nMarch` is a newline and a month.
    if k < j && escape_ends_at(hay, k + 1) {
        k += 1;
    }
    let glued = k > 0 && is_word(hay[k - 1]) && !escape_ends_at(hay, k);
    (month(&hay[k..j]).is_some() && !glued).then_some(k)
}

/// Whether a month name can start with this byte.
pub(crate) fn month_initial(b: u8) -> bool {
    matches!(
        b | 0x20,
        b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd'
    ) && b.is_ascii_alphabetic()
}

/// A month name, full or abbreviated to three letters (or "Sept").
fn month(word: &[u8]) -> Option<u32> {
    // Every month name starts with one of these letters: most words stop here.
    if word.len() < 3 || !month_initial(word[0]) {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| {
            word.len() <= m.len()
                && m[..word.len()].eq_ignore_ascii_case(word)
                && (word.len() == 3 || word.len() == m.len() || word.eq_ignore_ascii_case(b"sept"))
        })
        .map(|i| i as u32 + 1)
}

fn plausible(year: u32, month: u32, day: u32) -> bool {
    (1900..=2099).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// The end of a date of birth starting at `p`, if one does.
pub(crate) fn at(hay: &[u8], p: usize) -> Option<usize> {
    let end = date_at(hay, p)?;
    (right_ok(hay, end) && !number_goes_on(hay, end) && near_before(hay, p, &DOB_WORDS))
        .then_some(end)
}

fn date_at(hay: &[u8], p: usize) -> Option<usize> {
    let first = *hay.get(p)?;
    if first.is_ascii_alphabetic() {
        return month_first(hay, p);
    }
    let (e1, n1) = digits(hay, p, 5);
    let sep = *hay.get(e1)?;
    if matches!(sep, b'-' | b'/' | b'.') {
        let (e2, n2) = digits(hay, e1 + 1, 3);
        if hay.get(e2) != Some(&sep) || n2 == 0 || n2 > 2 {
            return None;
        }
        let (e3, n3) = digits(hay, e2 + 1, 5);
        let (a, b, c) = (
            value(&hay[p..e1]),
            value(&hay[e1 + 1..e2]),
            value(&hay[e2 + 1..e3]),
        );
        let ok = match (n1, n3) {
            (4, 1..=2) => plausible(a, b, c),
            (1..=2, 4) => plausible(c, a, b) || plausible(c, b, a),
            _ => false,
        };
        return ok.then_some(e3);
    }
    // `12 March 1985`
    if sep == b' ' && (1..=2).contains(&n1) {
        let mut k = e1 + 1;
        let word_start = k;
        while k < hay.len() && k - word_start < 9 && hay[k].is_ascii_alphabetic() {
            k += 1;
        }
        let m = month(&hay[word_start..k])?;
        if hay.get(k) == Some(&b'.') {
            k += 1;
        }
        if hay.get(k) == Some(&b',') {
            k += 1;
        }
        if hay.get(k) != Some(&b' ') {
            return None;
        }
        let (e3, n3) = digits(hay, k + 1, 5);
        return (n3 == 4 && plausible(value(&hay[k + 1..e3]), m, value(&hay[p..e1]))).then_some(e3);
    }
    None
}

/// `March 12, 1985`
fn month_first(hay: &[u8], p: usize) -> Option<usize> {
    let mut k = p;
    while k < hay.len() && k - p < 9 && hay[k].is_ascii_alphabetic() {
        k += 1;
    }
    let m = month(&hay[p..k])?;
    if hay.get(k) == Some(&b'.') {
        k += 1;
    }
    if hay.get(k) != Some(&b' ') {
        return None;
    }
    let (e2, n2) = digits(hay, k + 1, 3);
    if n2 == 0 || n2 > 2 {
        return None;
    }
    let mut i = e2;
    if hay.get(i) == Some(&b',') {
        i += 1;
    }
    if hay.get(i) != Some(&b' ') {
        return None;
    }
    let (e3, n3) = digits(hay, i + 1, 5);
    (n3 == 4 && plausible(value(&hay[i + 1..e3]), m, value(&hay[k + 1..e2]))).then_some(e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dob(s: &str) -> Option<&str> {
        let p = s.find(|c: char| c.is_ascii_digit())?;
        let p = month_before(s.as_bytes(), p).unwrap_or(p);
        at(s.as_bytes(), p).map(|e| &s[p..e])
    }

    #[test]
    fn formats_near_keywords() {
        assert_eq!(dob("DOB: 1985-03-12"), Some("1985-03-12"));
        assert_eq!(dob("date of birth 03/12/1985."), Some("03/12/1985"));
        assert_eq!(dob("born on March 12, 1985"), Some("March 12, 1985"));
        assert_eq!(dob("Birthdate: 12 Sept 1985"), Some("12 Sept 1985"));
        assert_eq!(dob("dob=12.03.1985"), Some("12.03.1985"));
    }

    #[test]
    fn needs_context_and_plausibility() {
        assert_eq!(dob("released 1985-03-12"), None);
        assert_eq!(dob("DOB 1985-13-12"), None);
        assert_eq!(dob("DOB 1885-03-12"), None);
        assert_eq!(dob("DOB [x] 1985-03-12"), None);
        assert_eq!(dob("adobe 1985-03-12"), None);
    }
}
