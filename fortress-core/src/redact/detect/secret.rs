//! Secrets and credentials: Anthropic `sk-ant-` keys, AWS access key ids, GitHub and Slack
//! tokens, Slack webhooks, JWTs, PEM private key blocks, and high-entropy values after
//! `Bearer` or an assignment to a secret-named key (`api_key=…`, `"password": "…"`).
//!
//! Each function gets the position of its trigger and returns the end of the secret.

use super::{MAX_BUILTIN_MATCH, is_word, left_ok, right_ok};

/// The kinds of secret found by a literal prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefixed {
    /// `sk-ant-…`
    Anthropic,
    /// `AKIA…`, `ASIA…`
    AwsAccessKey,
    /// `ghp_…` and the other classic GitHub token prefixes.
    GitHub,
    /// `github_pat_…`
    GitHubFineGrained,
    /// `xoxb-…`, `xapp-…`
    Slack,
    /// `hooks.slack.com/services/…`
    SlackWebhook,
    /// `eyJ….eyJ….…`
    Jwt,
    /// `-----BEGIN … PRIVATE KEY-----`
    PemPrivateKey,
}

impl Prefixed {
    /// Whether its matches can be longer than a token ([`TOKEN_MAX`]): JWTs and PEM blocks.
    pub(crate) fn is_long(self) -> bool {
        matches!(self, Prefixed::Jwt | Prefixed::PemPrivateKey)
    }
}

/// The literal prefixes and their kinds.
pub(crate) const PREFIXES: &[(&str, Prefixed)] = &[
    ("sk-ant-", Prefixed::Anthropic),
    ("AKIA", Prefixed::AwsAccessKey),
    ("ASIA", Prefixed::AwsAccessKey),
    ("ghp_", Prefixed::GitHub),
    ("gho_", Prefixed::GitHub),
    ("ghu_", Prefixed::GitHub),
    ("ghs_", Prefixed::GitHub),
    ("ghr_", Prefixed::GitHub),
    ("github_pat_", Prefixed::GitHubFineGrained),
    ("xoxb-", Prefixed::Slack),
    ("xoxp-", Prefixed::Slack),
    ("xoxa-", Prefixed::Slack),
    ("xoxr-", Prefixed::Slack),
    ("xoxs-", Prefixed::Slack),
    ("xoxe-", Prefixed::Slack),
    ("xapp-", Prefixed::Slack),
    ("hooks.slack.com/services/", Prefixed::SlackWebhook),
    ("eyJ", Prefixed::Jwt),
    ("-----BEGIN ", Prefixed::PemPrivateKey),
];

/// The longest token-like secret (not a PEM block).
pub(crate) const TOKEN_MAX: usize = 1024;

fn run(hay: &[u8], from: usize, max: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    while i < hay.len() && i - from < max && ok(hay[i]) {
        i += 1;
    }
    i
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The end of a prefixed secret whose prefix (of `prefix_len` bytes) starts at `p`.
pub(crate) fn prefixed_at(
    hay: &[u8],
    p: usize,
    prefix_len: usize,
    kind: Prefixed,
) -> Option<usize> {
    let body = p + prefix_len;
    let end = match kind {
        Prefixed::Anthropic => {
            if !left_ok_token(hay, p) {
                return None;
            }
            let end = run(hay, body, TOKEN_MAX, token_char);
            (end - body >= 16).then_some(end)?
        }
        Prefixed::AwsAccessKey => {
            let end = run(hay, body, 17, |b| {
                b.is_ascii_uppercase() || b.is_ascii_digit()
            });
            (end - body == 16 && left_ok(hay, p) && right_ok(hay, end)).then_some(end)?
        }
        Prefixed::GitHub => {
            let end = run(hay, body, TOKEN_MAX, |b| b.is_ascii_alphanumeric());
            (end - body >= 36 && left_ok(hay, p) && right_ok(hay, end)).then_some(end)?
        }
        Prefixed::GitHubFineGrained => {
            let end = run(hay, body, TOKEN_MAX, |b| {
                b.is_ascii_alphanumeric() || b == b'_'
            });
            (end - body >= 22 && left_ok(hay, p) && right_ok(hay, end)).then_some(end)?
        }
        Prefixed::Slack => {
            let end = run(hay, body, TOKEN_MAX, |b| {
                b.is_ascii_alphanumeric() || b == b'-'
            });
            (end - body >= 10 && left_ok_token(hay, p) && right_ok(hay, end)).then_some(end)?
        }
        Prefixed::SlackWebhook => {
            let end = run(hay, body, 128, |b| b.is_ascii_alphanumeric() || b == b'/');
            (end - body >= 20).then_some(end)?
        }
        Prefixed::Jwt => jwt(hay, p)?,
        Prefixed::PemPrivateKey => pem(hay, p, body)?,
    };
    Some(end)
}

/// Tokens may follow `=`, quotes or spaces but not another token character.
fn left_ok_token(hay: &[u8], p: usize) -> bool {
    left_ok(hay, p) && (p == 0 || hay[p - 1] != b'-')
}

/// Three base64url segments, the first two JSON objects (`eyJ`).
fn jwt(hay: &[u8], p: usize) -> Option<usize> {
    if !left_ok(hay, p) || (p > 0 && hay[p - 1] == b'-') {
        return None;
    }
    let h = run(hay, p, TOKEN_MAX, b64url);
    if h - p < 10 || hay.get(h) != Some(&b'.') || hay.get(h + 1..h + 4) != Some(b"eyJ") {
        return None;
    }
    let b = run(hay, h + 1, 4 * TOKEN_MAX, b64url);
    if b - h - 1 < 10 || hay.get(b) != Some(&b'.') {
        return None;
    }
    let s = run(hay, b + 1, TOKEN_MAX, b64url);
    (s - b > 10 && right_ok(hay, s)).then_some(s)
}

const PEM_BODY_MAX: usize = MAX_BUILTIN_MATCH - 64;

/// `-----BEGIN [TYPE ]PRIVATE KEY[ BLOCK]-----`, through its END line (or, if that is
/// missing or too far, through the base64 body, so no key material is left).
fn pem(hay: &[u8], p: usize, body: usize) -> Option<usize> {
    let label_end = run(hay, body, 24, |b| b.is_ascii_uppercase() || b == b' ');
    let label = &hay[body..label_end];
    let label = label.strip_suffix(b" BLOCK").unwrap_or(label);
    if !label.ends_with(b"PRIVATE KEY") || hay.get(label_end..label_end + 5) != Some(b"-----") {
        return None;
    }
    let head = label_end + 5;
    let limit = (p + PEM_BODY_MAX).min(hay.len());
    let window = &hay[head..limit];
    if let Some(off) = find(window, b"-----END ") {
        let end_line = head + off + 9;
        let close = run(hay, end_line, 40, |b| b.is_ascii_uppercase() || b == b' ');
        if hay.get(close..close + 5) == Some(b"-----") {
            return Some(close + 5);
        }
    }
    let end = run(hay, head, PEM_BODY_MAX - (head - p), |b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ' | b'\t' | b'\\' | b':' | b'-' | b','
            )
    });
    Some(end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Shannon entropy in bits per character.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let f = f64::from(c) / n;
            -f * f.log2()
        })
        .sum()
}

fn bearer_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'-')
}

/// A bearer credential starting at `v`: 16+ token characters, mixed, high entropy.
pub(crate) fn bearer_value(hay: &[u8], v: usize) -> Option<usize> {
    let end = run(hay, v, TOKEN_MAX + 1, bearer_char);
    let value = &hay[v..end];
    (value.len() >= 16 && value.len() <= TOKEN_MAX && right_ok(hay, end) && high_entropy(value))
        .then_some(end)
}

fn high_entropy(value: &[u8]) -> bool {
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let has_alpha = value.iter().any(u8::is_ascii_alphabetic);
    has_digit && has_alpha && entropy(value) >= 3.0
}

fn assigned_char(b: u8) -> bool {
    b > b' '
        && b < 0x7f
        && !matches!(
            b,
            b'"' | b'\''
                | b'`'
                | b','
                | b';'
                | b'\\'
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
        )
}

/// After a secret-named key: `[a-z_]*` continuation, quotes, `:` or `=`, quotes, value.
/// Returns where the value starts and ends.
pub(crate) fn assigned_value(hay: &[u8], key_end: usize, password: bool) -> Option<(usize, usize)> {
    let mut i = run(hay, key_end, 16, |b| {
        b.is_ascii_alphabetic() || b == b'_' || b == b'-'
    });
    if i < hay.len() && is_word(hay[i]) {
        return None;
    }
    let sep_start = i;
    let mut assign = false;
    while i < hay.len() && i - sep_start < 8 {
        match hay[i] {
            b':' | b'=' if !assign => assign = true,
            b' ' | b'"' | b'\'' | b'\\' => {}
            _ => break,
        }
        i += 1;
    }
    if !assign {
        return None;
    }
    let end = run(hay, i, TOKEN_MAX + 1, assigned_char);
    let value = &hay[i..end];
    if end - i > TOKEN_MAX || !right_ok(hay, end) || (end < hay.len() && is_word(hay[end])) {
        return None;
    }
    let ok = if password {
        // Passwords are short and low-entropy; an identifier (`read_password`) is code.
        let identifier = value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            && !value.iter().any(u8::is_ascii_digit);
        value.len() >= 8
            && value.iter().any(u8::is_ascii_alphabetic)
            && value.iter().any(|b| !b.is_ascii_alphabetic())
            && !identifier
    } else {
        value.len() >= 16 && high_entropy(value)
    };
    ok.then_some((i, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(s: &str, kind: Prefixed, len: usize) -> Option<&str> {
        prefixed_at(s.as_bytes(), 0, len, kind).map(|e| &s[..e])
    }

    #[test]
    fn prefixed_tokens() {
        let key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789_-ABCDEF";
        assert_eq!(pre(key, Prefixed::Anthropic, 7), Some(key));
        assert_eq!(
            pre("AKIAIOSFODNN7EXAMPLE", Prefixed::AwsAccessKey, 4),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
        assert_eq!(
            pre("AKIAIOSFODNN7EXAMPLEX", Prefixed::AwsAccessKey, 4),
            None
        );
        let gh = "ghp_0123456789abcdefghijklmnopqrstuvwxyz";
        assert_eq!(pre(gh, Prefixed::GitHub, 4), Some(gh));
        assert_eq!(
            pre("xoxb-1234-5678-abcdefgh", Prefixed::Slack, 5),
            Some("xoxb-1234-5678-abcdefgh")
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(pre(jwt, Prefixed::Jwt, 3), Some(jwt));
    }

    #[test]
    fn pem_blocks() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            pre(&format!("{pem} tail"), Prefixed::PemPrivateKey, 11),
            Some(pem)
        );
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34Gkx";
        assert_eq!(pre(cut, Prefixed::PemPrivateKey, 11), Some(cut));
        assert_eq!(
            pre(
                "-----BEGIN CERTIFICATE-----\nMIIB",
                Prefixed::PemPrivateKey,
                11
            ),
            None
        );
    }

    #[test]
    fn entropy_gates_values() {
        let h = b"Bearer tokens are nice";
        assert_eq!(bearer_value(h, 7), None);
        let h = b"Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0Zq";
        assert_eq!(bearer_value(h, 7), Some(h.len()));
        let h = b"api_key = \"Zx81Lq0PmW3nV7bT5rY2\"";
        assert_eq!(assigned_value(h, 7, false), Some((11, 31)));
        assert_eq!(
            assigned_value(b"token = read_token_from_env()", 5, false),
            None
        );
        assert_eq!(
            assigned_value(b"password: hunter2!x", 8, true),
            Some((10, 19))
        );
        assert_eq!(assigned_value(b"password: String,", 8, true), None);
    }
}
