//! Payment card numbers: 13–19 digits, optionally grouped by spaces or dashes, with a known
//! issuer prefix for that length and a valid Luhn check digit. Bare digit runs right after
//! an identifier keyword (`order #`, `id=`, `ts:`) are identifiers, not cards.

use super::context::{ID_WORDS, right_before};
use super::{number_goes_on, right_ok};

/// The end of a card number starting at `p`, if one does.
pub(crate) fn at(hay: &[u8], p: usize) -> Option<usize> {
    let mut number = [0u8; 19];
    let mut count = 0;
    let mut i = p;
    let mut sep: Option<u8> = None;
    let mut group = 0;
    let mut groups = 0;
    let mut end = p;
    while i < hay.len() {
        let b = hay[i];
        if b.is_ascii_digit() {
            if count == 19 {
                return None;
            }
            number[count] = b - b'0';
            count += 1;
            group += 1;
            i += 1;
            end = i;
            continue;
        }
        let next_is_digit = hay.get(i + 1).is_some_and(u8::is_ascii_digit);
        if b == b' ' && matches!(hay.get(i + 1), Some(b'[' | b'*')) && sep.is_none_or(|s| s == b) {
            // A replacement after a group separator stands for what was another group
            // (which spoiled the number then), so the number must not match now either.
            return None;
        }
        if (b == b' ' || b == b'-') && next_is_digit && sep.is_none_or(|s| s == b) {
            // Groups of three to six digits, as printed on cards.
            if !(3..=6).contains(&group) {
                return None;
            }
            sep = Some(b);
            groups += 1;
            group = 0;
            i += 1;
            continue;
        }
        break;
    }
    let grouped = groups > 0;
    if grouped && !(1..=6).contains(&group) {
        return None;
    }
    let digits = &number[..count];
    if !issuer_accepts(digits) || !luhn(digits) || !right_ok(hay, end) || number_goes_on(hay, end) {
        return None;
    }
    if !grouped && right_before(hay, p, ID_WORDS) {
        return None;
    }
    Some(end)
}

/// The Luhn checksum.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn prefix(digits: &[u8], n: usize) -> u32 {
    digits[..n]
        .iter()
        .fold(0, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether an issuer uses this prefix with this length.
pub(crate) fn issuer_accepts(d: &[u8]) -> bool {
    let len = d.len();
    if !(13..=19).contains(&len) {
        return false;
    }
    let p2 = prefix(d, 2);
    let p3 = prefix(d, 3);
    let p4 = prefix(d, 4);
    let p6 = prefix(d, 6);
    match d[0] {
        // Visa.
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51–55 and 2221–2720.
        5 => (51..=55).contains(&p2) && len == 16,
        2 => (2221..=2720).contains(&p4) && len == 16,
        // American Express, Diners Club, JCB.
        3 => {
            (matches!(p2, 34 | 37) && len == 15)
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&len)
                || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        }
        // Discover, UnionPay, Maestro.
        6 => {
            (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622126..=622925).contains(&p6))
                && (16..=19).contains(&len)
                || p2 == 62 && (16..=19).contains(&len)
                || matches!(p4, 6304 | 6759 | 6761 | 6762 | 6763) && (12..=19).contains(&len)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{at, luhn};

    #[test]
    fn known_test_numbers() {
        for s in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
        ] {
            assert_eq!(at(s.as_bytes(), 0), Some(s.len()), "{s}");
        }
    }

    #[test]
    fn rejects_noise() {
        // Luhn-valid but no issuer, a timestamp, wrong grouping, identifier context.
        for s in [
            "1700000000000007",
            "4111111111111112",
            "41 11111111111111",
            "4111.1111.1111.1111",
        ] {
            assert_eq!(at(s.as_bytes(), 0), None, "{s}");
        }
        assert!(luhn(&[0, 0, 0, 0]));
        assert_eq!(at(b"order #4111111111111111", 7), None);
    }

    #[test]
    fn a_replacement_in_an_id_words_place_keeps_an_identifier_one() {
        // A token that swallowed `order` (`Bearer 123-45-6789order #…`) stands where the
        // keyword was, so the number stays an identifier on a second pass.
        for s in [
            "[SECRET] #4111111111111111",
            "[SECRET_0123456789abcdef] #4111111111111111",
        ] {
            let p = s.find('#').map(|i| i + 1).unwrap();
            assert_eq!(at(s.as_bytes(), p), None, "{s}");
        }
        // Brackets that are not a replacement do not count.
        for s in [
            "[see] 4111111111111111",
            "x] 4111111111111111",
            "[] 4111111111111111",
        ] {
            let p = s.find('4').unwrap();
            assert_eq!(at(s.as_bytes(), p), Some(s.len()), "{s}");
        }
    }
}
