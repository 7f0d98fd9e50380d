//! JSON string escapes (`\"`, `\\`, `\n`, `\u00e9`) in text that is JSON redacted as
//! plain text: a replacement must not start or end inside an escape, or the text stops
//! being JSON (`…abc\"` cut after the backslash leaves `[SECRET]"`, a stray quote).

/// How many backslashes before a position are counted to tell whether the last one
/// starts an escape; bounded so the answer depends only on nearby text (the streaming
/// context is larger).
const MAX_RUN: usize = 32;

/// If `p` lies strictly inside an escape sequence (after its backslash, before its end),
/// where that escape ends.
pub(crate) fn inside_escape(hay: &[u8], p: usize) -> Option<usize> {
    // The escape holding `p` starts at most five bytes before it (`\uXXXX`).
    for k in 1..=p.min(5) {
        if hay[p - k] != b'\\' {
            continue;
        }
        // The nearest backslash decides: it starts an escape only if an odd number of
        // backslashes ends at it; otherwise it ends a `\\` pair that `p` is past.
        let b = p - k;
        let run = hay[b.saturating_sub(MAX_RUN - 1)..=b]
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if run % 2 == 0 {
            return None;
        }
        let len = match hay.get(b + 1) {
            Some(b'u') => {
                2 + hay[(b + 2).min(hay.len())..]
                    .iter()
                    .take(4)
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count()
            }
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') | None => 2,
            // Not a JSON escape (`C:\4111…` is a path, not JSON): nothing to protect.
            Some(_) => return None,
        };
        return (k < len).then(|| (b + len).min(hay.len()));
    }
    None
}

/// Whether an escape sequence ends right before `p` (`\n` in `Call\nbob`): its letter
/// or hex digit ends a word there, as the character it stands for would.
pub(crate) fn escape_ends_at(hay: &[u8], p: usize) -> bool {
    p >= 2
        && (hay[p - 2] == b'\\' || (p >= 6 && hay[p - 6] == b'\\'))
        && inside_escape(hay, p - 1) == Some(p)
}

/// If the span `start..end` is a bare number that is a JSON object's value
/// (`"ssn": 123456789,`), the quote its replacement must be wrapped in to stay JSON: `"`,
/// or `\"` when the JSON is itself inside a JSON string (`\"ssn\": 123456789,`).
pub(crate) fn json_number_quote(hay: &[u8], start: usize, end: usize) -> Option<&'static str> {
    let value = &hay[start..end];
    if !value.iter().all(|&b| super::json_number_byte(b)) {
        return None;
    }
    // What follows must end the value, and must not be something a second pass would
    // read differently once a quote stands before it instead of a digit (`…9,4111…`
    // continues a number, `…",4111…` would not).
    let ends = match hay.get(end) {
        None | Some(b'}' | b'\n' | b'\r' | b'\t' | b'\\') => true,
        Some(b',' | b' ') => !hay
            .get(end + 1)
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'[' | b'*')),
        _ => false,
    };
    if !ends {
        return None;
    }
    let colon = skip_spaces_back(hay, start).checked_sub(1)?;
    if hay[colon] != b':' {
        return None;
    }
    let quote = skip_spaces_back(hay, colon).checked_sub(1)?;
    if hay[quote] != b'"' {
        return None;
    }
    Some(if inside_escape(hay, quote).is_some() {
        "\\\""
    } else {
        "\""
    })
}

/// Where a run of at most four spaces ending at `p` starts.
fn skip_spaces_back(hay: &[u8], p: usize) -> usize {
    p - hay[p.saturating_sub(4)..p]
        .iter()
        .rev()
        .take_while(|&&b| b == b' ')
        .count()
}

#[cfg(test)]
mod tests {
    use super::{inside_escape, json_number_quote};

    #[test]
    fn numbers_under_json_keys() {
        let s = br#"{"ssn": 123456789, "n":1} \"ssn\":123 ssn: 123"#;
        assert_eq!(json_number_quote(s, 8, 17), Some("\""));
        assert_eq!(json_number_quote(s, 23, 24), Some("\""));
        assert_eq!(json_number_quote(s, 34, 37), Some("\\\""));
        assert_eq!(json_number_quote(s, 43, 46), None);
        // Not a number, or not where a number value ends.
        assert_eq!(json_number_quote(b"\"k\": 12ab@x.co", 5, 14), None);
        assert_eq!(json_number_quote(b"\"k\": 123,456", 5, 8), None);
        assert_eq!(json_number_quote(b"\"k\": 123+1", 5, 8), None);
    }

    #[test]
    fn positions_inside_escapes() {
        let s = br#"a\"b\\c\u00e9d\\\"e"#;
        // a \ " b \ \ c \ u 0 0 e 9 d \ \ \ " e
        // 0 1 2 3 4 5 6 7 8 9 ...
        assert_eq!(inside_escape(s, 1), None);
        assert_eq!(inside_escape(s, 2), Some(3));
        assert_eq!(inside_escape(s, 3), None);
        assert_eq!(inside_escape(s, 5), Some(6));
        assert_eq!(inside_escape(s, 6), None);
        for p in 8..13 {
            assert_eq!(inside_escape(s, p), Some(13), "at {p}");
        }
        assert_eq!(inside_escape(s, 13), None);
        assert_eq!(inside_escape(s, 15), Some(16));
        assert_eq!(inside_escape(s, 16), None);
        assert_eq!(inside_escape(s, 17), Some(18));
        assert_eq!(inside_escape(s, 18), None);
        assert_eq!(inside_escape(b"\\", 1), Some(1));
        assert_eq!(inside_escape(br"C:\4111", 3), None);
    }
}
