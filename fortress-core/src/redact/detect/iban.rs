//! IBANs: a country code, two check digits and the country's fixed-length account part,
//! either compact or in groups of four split by single spaces, with a valid ISO 7064
//! mod-97 checksum.

use super::right_ok;

/// IBAN lengths by country.
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// The longest IBAN as written with spaces.
pub(crate) const MAX_LEN: usize = 34 + 8;

/// The end of an IBAN starting at `p`, if one does.
pub(crate) fn at(hay: &[u8], p: usize) -> Option<usize> {
    let country = hay.get(p..p + 2)?;
    let &(_, len) = LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?;
    let mut compact = [0u8; 34];
    let mut n = 0;
    let mut i = p;
    let mut grouped = false;
    while n < len {
        let b = *hay.get(i)?;
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            // Once grouped, every group of four is followed by a space.
            if grouped && n % 4 == 0 && hay[i - 1] != b' ' {
                return None;
            }
            compact[n] = b;
            n += 1;
            i += 1;
        } else if b == b' ' && n % 4 == 0 && n > 0 && (grouped || n == 4) {
            grouped = true;
            i += 1;
        } else {
            return None;
        }
    }
    if !compact[2].is_ascii_digit() || !compact[3].is_ascii_digit() || !right_ok(hay, i) {
        return None;
    }
    mod97(&compact[..len]).then_some(i)
}

/// ISO 7064 mod 97-10 over the rearranged IBAN.
pub(crate) fn mod97(iban: &[u8]) -> bool {
    let mut rem: u32 = 0;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        rem = if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            (rem * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::at;

    #[test]
    fn valid_and_invalid() {
        for s in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "NO9386011117947",
        ] {
            assert_eq!(at(s.as_bytes(), 0), Some(s.len()), "{s}");
        }
        for s in [
            "DE89370400440532013001",
            "DE8937040044053201300",
            "XX89370400440532013000",
            "DE89 37040044 0532 0130 00",
        ] {
            assert_eq!(at(s.as_bytes(), 0), None, "{s}");
        }
    }
}
