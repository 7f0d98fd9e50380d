//! Phone numbers: NANP (`(415) 555-0132`, `415-555-0132`, `+1 415 555 0132`,
//! `1-800-555-0199`; bare ten digits only near a phone keyword) and E.164 with separators
//! (`+44 20 7946 0958`, 8 to 15 digits after the `+`).

use super::context::{PHONE_WORDS, near_before};
use super::{digits, number_goes_on, right_ok};

/// The end of a phone number starting at `p`, if one does.
pub(crate) fn at(hay: &[u8], p: usize) -> Option<usize> {
    let nanp = nanp(hay, p);
    let e164 = if hay.get(p) == Some(&b'+') {
        e164(hay, p)
    } else {
        None
    };
    match (nanp, e164) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn is_sep(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b' ')
}

/// `[+1 |1-](NXX) NXX-XXXX` and friends.
fn nanp(hay: &[u8], p: usize) -> Option<usize> {
    let mut i = p;
    let mut country = false;
    if hay.get(i) == Some(&b'+') {
        if hay.get(i + 1) != Some(&b'1') {
            return None;
        }
        i += 2;
        country = true;
    } else if hay.get(i) == Some(&b'1') && hay.get(i + 1).is_some_and(|b| is_sep(*b)) {
        i += 1;
        country = true;
    }
    if country {
        match hay.get(i) {
            Some(b) if is_sep(*b) => i += 1,
            Some(b'(') => {}
            _ => return None,
        }
    }
    // Area code, optionally in parentheses.
    let paren = hay.get(i) == Some(&b'(');
    if paren {
        i += 1;
    }
    let (after_area, n) = digits(hay, i, 3);
    if n != 3 || !valid_nxx(&hay[i..after_area]) {
        return None;
    }
    i = after_area;
    let sep;
    if paren {
        if hay.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
        if hay.get(i) == Some(&b' ') {
            i += 1;
        }
        sep = None;
    } else {
        match hay.get(i) {
            Some(b) if is_sep(*b) => {
                sep = Some(*b);
                i += 1;
            }
            Some(b) if b.is_ascii_digit() => {
                // Ten bare digits: a phone only with a +1 prefix or a phone keyword.
                let (end, n) = digits(hay, i, 8);
                if n != 7 || !valid_nxx(&hay[i..i + 3]) {
                    return None;
                }
                if !(country || near_before(hay, p, &PHONE_WORDS)) {
                    return None;
                }
                return finish(hay, end);
            }
            _ => return None,
        }
    }
    let (after_exchange, n) = digits(hay, i, 3);
    if n != 3 || !valid_nxx(&hay[i..after_exchange]) {
        return None;
    }
    i = after_exchange;
    match (sep, hay.get(i)) {
        (Some(s), Some(b)) if *b == s => i += 1,
        (None, Some(b'-' | b'.' | b' ')) => i += 1,
        _ => return None,
    }
    let (end, n) = digits(hay, i, 5);
    if n != 4 {
        return None;
    }
    finish(hay, end)
}

fn finish(hay: &[u8], end: usize) -> Option<usize> {
    (right_ok(hay, end) && !number_goes_on(hay, end)).then_some(end)
}

/// An area code or exchange: first digit 2–9, and no `N11` service code.
fn valid_nxx(d: &[u8]) -> bool {
    d.len() == 3 && d[0] >= b'2' && !(d[1] == b'1' && d[2] == b'1')
}

/// `+CC …`: digits in groups split by single spaces, dashes or dots.
fn e164(hay: &[u8], p: usize) -> Option<usize> {
    let mut i = p + 1;
    if !hay.get(i).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return None;
    }
    let mut total = 0;
    let mut groups = 0;
    let mut end = i;
    loop {
        let (e, n) = digits(hay, i, 16);
        if n == 0 {
            break;
        }
        total += n;
        groups += 1;
        end = e;
        if total > 15 || groups > 6 {
            return None;
        }
        match (hay.get(e), hay.get(e + 1)) {
            (Some(s), Some(d)) if is_sep(*s) && d.is_ascii_digit() => i = e + 1,
            // A replacement after a separator stands for what was another group (which
            // spoiled the number then), so the number must not match now either.
            (Some(s), Some(b'[' | b'*')) if is_sep(*s) => return None,
            _ => break,
        }
    }
    if !(8..=15).contains(&total) {
        return None;
    }
    finish(hay, end)
}

#[cfg(test)]
mod tests {
    use super::at;

    fn ends(s: &str) -> Option<usize> {
        at(s.as_bytes(), 0)
    }

    #[test]
    fn nanp_formats() {
        for s in [
            "(415) 555-0132",
            "415-555-0132",
            "415.555.0132",
            "+1 415 555 0132",
            "1-800-555-0199",
            "+14155550132",
        ] {
            assert_eq!(ends(s), Some(s.len()), "{s}");
        }
    }

    #[test]
    fn rejects_noise() {
        for s in [
            "4155550132",
            "115-555-0132",
            "415-155-0132",
            "415-555-01324",
            "415-555.0132",
            "911-555-0132",
            "1.2.3",
        ] {
            assert_eq!(ends(s), None, "{s}");
        }
        assert_eq!(at(b"phone: 4155550132", 7), Some(17));
    }

    #[test]
    fn e164_formats() {
        for s in [
            "+44 20 7946 0958",
            "+49-30-901820",
            "+33 1 23 45 67 89",
            "+8613812345678",
        ] {
            assert_eq!(ends(s), Some(s.len()), "{s}");
        }
        assert_eq!(ends("+1234"), None);
        assert_eq!(ends("+05:30"), None);
    }
}
