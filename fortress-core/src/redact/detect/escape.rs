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

#[cfg(test)]
mod tests {
    use super::inside_escape;

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
