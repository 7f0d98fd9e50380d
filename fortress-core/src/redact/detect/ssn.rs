//! US Social Security numbers: `AAA-GG-SSSS` or `AAA GG SSSS`, or nine bare digits near an
//! SSN keyword. Area 000, 666 and 900–999, group 00 and serial 0000 are never issued.

use super::context::{SSN_WORDS, near_before};
use super::{digits, number_goes_on, right_ok, value};

/// The end of an SSN starting at `p`, if one does.
pub(crate) fn at(hay: &[u8], p: usize) -> Option<usize> {
    let (a_end, n) = digits(hay, p, 10);
    let (area, group, serial, end) = match n {
        3 => {
            let sep = *hay.get(a_end)?;
            if sep != b'-' && sep != b' ' {
                return None;
            }
            let (g_end, gn) = digits(hay, a_end + 1, 3);
            if gn != 2 || hay.get(g_end) != Some(&sep) {
                return None;
            }
            let (s_end, sn) = digits(hay, g_end + 1, 5);
            if sn != 4 {
                return None;
            }
            (
                &hay[p..a_end],
                &hay[a_end + 1..g_end],
                &hay[g_end + 1..s_end],
                s_end,
            )
        }
        9 => (
            &hay[p..p + 3],
            &hay[p + 3..p + 5],
            &hay[p + 5..p + 9],
            a_end,
        ),
        _ => return None,
    };
    if !valid(area, group, serial) || !right_ok(hay, end) || number_goes_on(hay, end) {
        return None;
    }
    // Nine bare digits count only near a keyword; checked last, as it costs the most.
    (n == 3 || near_before(hay, p, &SSN_WORDS)).then_some(end)
}

/// The issuance rules.
pub(crate) fn valid(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    let area = value(area);
    area != 0 && area != 666 && area < 900 && value(group) != 0 && value(serial) != 0
}

#[cfg(test)]
mod tests {
    use super::at;

    #[test]
    fn formats_and_rules() {
        assert_eq!(at(b"123-45-6789", 0), Some(11));
        assert_eq!(at(b"123 45 6789", 0), Some(11));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45 6789",
            "123-45-6789-1",
        ] {
            assert_eq!(at(bad.as_bytes(), 0), None, "{bad}");
        }
        assert_eq!(at(b"123456789", 0), None);
        assert_eq!(at(b"SSN 123456789", 4), Some(13));
    }
}
