//! Everything found from a keyword, in one Aho-Corasick pass: secrets with a literal
//! prefix (`sk-ant-`, `AKIA`, `ghp_`, `xoxb-`, `eyJ`, `-----BEGIN `), values after a
//! context keyword (`Bearer …`, `api_key=…`, `MRN: …`). The JSON-text form of a value
//! under a sensitive key is parsed here and found by [`super::json_key`].

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind, packed};
use regex::Regex;

use super::secret::{self, Prefixed};
use super::{
    CONTEXT_LEN, Detector, Hit, MAX_BUILTIN_MATCH, better, left_ok, letter_before, right_ok,
    word_at,
};

/// What a keyword triggers.
#[derive(Clone, Debug)]
pub(crate) enum Trigger {
    /// A secret with this exact (case-sensitive) prefix.
    Prefix(Prefixed, Arc<str>),
    /// `Bearer <token>`.
    Bearer(Arc<str>),
    /// `<secret-named key> = <value>`; `true` for passwords.
    Assign(bool, Arc<str>),
    /// `MRN: <value>`: a medical record number in one of the formats.
    Mrn(Arc<str>),
}

/// Secret-named keys and whether they hold passwords.
pub(crate) const SECRET_KEYS: &[(&str, bool)] = &[
    ("token", false),
    ("secret", false),
    ("api_key", false),
    ("apikey", false),
    ("api-key", false),
    ("access_key", false),
    ("private_key", false),
    ("credential", false),
    ("password", true),
    ("passwd", true),
];

/// Keywords before a medical record number.
pub(crate) const MRN_WORDS: &[&str] = &["mrn", "medical record"];

/// The longest key accepted in a key rule (the keyword must fit in the context window).
pub(crate) const MAX_KEY_LEN: usize = 40;

/// How far past its keyword's start a match other than a JWT or PEM block can reach,
/// look-ahead included: a token of [`secret::TOKEN_MAX`] bytes after at most 40 bytes of
/// keyword, key continuation and separators.
const SHORT_REACH: usize = secret::TOKEN_MAX + 64;

/// The most text lowercased at once for the packed keyword search (on the stack).
const BLOCK: usize = 4096;
/// The first block of a search: most searches in keyword-rich text end within it.
const FIRST_BLOCK: usize = 256;

/// Finds keyword-triggered values.
pub(crate) struct KeywordDetector {
    /// The keywords (lowercase) as a SIMD (Teddy) searcher, run over lowercased blocks of
    /// text: several times faster than the automaton, which scans a byte per step. `None`
    /// where the CPU has no support; the automaton is used then.
    packed: Option<packed::Searcher>,
    /// The longest keyword.
    longest: usize,
    ac: AhoCorasick,
    /// The prefixes whose matches can be long (JWT, PEM), for the streaming hold-back.
    long_prefixes: Vec<memchr::memmem::Finder<'static>>,
    triggers: Vec<Vec<Trigger>>,
    mrn_formats: Vec<Regex>,
    mrn_max: usize,
}

impl KeywordDetector {
    /// Builds the automaton over `(keyword, trigger)` pairs; `mrn_formats` are anchored.
    pub(crate) fn new(
        pairs: Vec<(String, Trigger)>,
        mrn_formats: Vec<Regex>,
        mrn_max: usize,
    ) -> Result<Self, aho_corasick::BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut triggers: Vec<Vec<Trigger>> = Vec::new();
        let mut long_prefixes = Vec::new();
        for (keyword, trigger) in pairs {
            if let Trigger::Prefix(kind, _) = &trigger {
                if kind.is_long() {
                    long_prefixes
                        .push(memchr::memmem::Finder::new(keyword.as_bytes()).into_owned());
                }
            }
            let lower = keyword.to_ascii_lowercase();
            match patterns.iter().position(|p| *p == lower) {
                Some(i) => triggers[i].push(trigger),
                None => {
                    patterns.push(lower);
                    triggers.push(vec![trigger]);
                }
            }
        }
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(&patterns)
            .build();
        let longest = patterns.iter().map(String::len).max().unwrap_or(1);
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)?;
        Ok(Self {
            packed,
            longest,
            ac,
            long_prefixes,
            triggers,
            mrn_formats,
            mrn_max,
        })
    }

    fn fire(&self, hay: &[u8], k: usize, k_end: usize, trigger: &Trigger) -> Option<Hit> {
        let hit = |start: usize, end: usize, entity: &Arc<str>| Hit {
            start,
            end,
            entity: entity.clone(),
        };
        match trigger {
            Trigger::Prefix(kind, entity) => {
                let exact = secret::PREFIXES
                    .iter()
                    .any(|(p, k2)| k2 == kind && hay[k..k_end] == *p.as_bytes());
                if !exact {
                    return None;
                }
                secret::prefixed_at(hay, k, k_end - k, *kind).map(|end| hit(k, end, entity))
            }
            Trigger::Bearer(entity) => {
                if !word_at(hay, k, b"bearer") {
                    return None;
                }
                let v = k_end + spaces(hay, k_end, 3);
                if v == k_end {
                    return None;
                }
                secret::bearer_value(hay, v).map(|end| hit(v, end, entity))
            }
            Trigger::Assign(password, entity) => {
                secret::assigned_value(hay, k_end, *password).map(|(v, end)| hit(v, end, entity))
            }
            Trigger::Mrn(entity) => {
                // The keyword matched ignoring case; it must also start a word.
                if letter_before(hay, k) {
                    return None;
                }
                let v = mrn_value_start(hay, k_end);
                let tail = &hay[v..(v + self.mrn_max + 1).min(hay.len())];
                let text = std::str::from_utf8(tail).ok().or_else(|| {
                    let valid = std::str::from_utf8(tail).err()?.valid_up_to();
                    std::str::from_utf8(&tail[..valid]).ok()
                })?;
                self.mrn_formats
                    .iter()
                    .filter_map(|re| re.find(text).map(|m| v + m.end()))
                    .filter(|&end| end > v && right_ok(hay, end))
                    .max()
                    .filter(|_| left_ok(hay, v))
                    .map(|end| hit(v, end, entity))
            }
        }
    }
}

fn spaces(hay: &[u8], i: usize, max: usize) -> usize {
    hay[i..]
        .iter()
        .take(max)
        .take_while(|&&b| b == b' ')
        .count()
}

/// Skips `number`/`no.`/`#` and separators after an MRN keyword.
fn mrn_value_start(hay: &[u8], mut i: usize) -> usize {
    for filler in [&b" number"[..], b" no.", b" no", b" #"] {
        if hay.len() >= i + filler.len() && hay[i..i + filler.len()].eq_ignore_ascii_case(filler) {
            i += filler.len();
            break;
        }
    }
    let start = i;
    while i < hay.len()
        && i - start < 6
        && matches!(
            hay[i],
            b' ' | b':' | b'#' | b'=' | b'"' | b'\'' | b'\\' | b'-'
        )
    {
        i += 1;
    }
    i
}

/// `"key": "value"` (quotes possibly escaped) or `"key": 123`: the value's span.
pub(crate) fn json_value(hay: &[u8], k: usize, k_end: usize) -> Option<(usize, usize)> {
    if k == 0 || hay[k - 1] != b'"' {
        return None;
    }
    let mut i = k_end;
    if hay.get(i) == Some(&b'\\') {
        i += 1;
    }
    if hay.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    i += spaces(hay, i, 4);
    if hay.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    i += spaces(hay, i, 4);
    if hay.get(i) == Some(&b'\\') {
        i += 1;
    }
    match hay.get(i) {
        Some(b'"') => {
            let v = i + 1;
            let len = hay[v..]
                .iter()
                .take(257)
                .position(|&b| b == b'"' || b == b'\\')?;
            let value = &hay[v..v + len];
            // A value holding a replacement (`[NAME]`, a token, stars) is left alone.
            // Redaction only ever adds these characters, so the choice is the same on
            // every pass.
            let redacted = value.iter().any(|b| matches!(b, b'[' | b']' | b'*'));
            (len > 0 && len <= 256 && !redacted).then_some((v, v + len))
        }
        Some(b) if b.is_ascii_digit() => {
            // The whole JSON number, exponent included (`12345678e9`): replacing only its
            // digits would leave `[SSN]e9`, which is not JSON.
            let len = hay[i..]
                .iter()
                .take(33)
                .take_while(|&&b| super::json_number_byte(b))
                .count();
            (len <= 32).then_some((i, i + len))
        }
        _ => None,
    }
}

/// How far before a value its keyword may start.
const LOOKBACK: usize = CONTEXT_LEN;

impl KeywordDetector {
    /// The leftmost (then longest) keyword at or after `pos`, ignoring ASCII case: its
    /// start, end and pattern index.
    fn keyword(&self, hay: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
        let Some(packed) = &self.packed else {
            let m = self.ac.find(Input::new(hay).span(pos..hay.len()))?;
            return Some((m.start(), m.end(), m.pattern().as_usize()));
        };
        // Blocks grow, so a search that stops early (the next keyword is close) neither
        // clears nor lowercases a whole block. Larger blocks go to a buffer that is filled,
        // never cleared: zeroing 4 KiB per search cost 7% of the time on clean text.
        let mut first = [0u8; FIRST_BLOCK];
        let mut big: Vec<u8> = Vec::new();
        let mut size = FIRST_BLOCK;
        let mut b = pos;
        while b < hay.len() {
            let e = (b + size).min(hay.len());
            let lower = hay[b..e].iter().map(u8::to_ascii_lowercase);
            let block: &[u8] = if size == FIRST_BLOCK {
                for (l, h) in first.iter_mut().zip(lower) {
                    *l = h;
                }
                &first[..e - b]
            } else {
                big.clear();
                big.extend(lower);
                &big
            };
            size = (size * 2).min(BLOCK);
            let complete = e == hay.len();
            match packed.find(block) {
                // A longer keyword at the same start could run past the block's end:
                // trust a match only if the longest keyword would fit.
                Some(m) if complete || b + m.start() + self.longest <= e => {
                    return Some((b + m.start(), b + m.end(), m.pattern().as_usize()));
                }
                Some(m) => b += m.start(),
                None if complete => return None,
                None => b = e + 1 - self.longest,
            }
        }
        None
    }
}

impl Detector for KeywordDetector {
    fn next(&self, hay: &str, at: usize) -> Option<Hit> {
        let bytes = hay.as_bytes();
        let mut pos = at.saturating_sub(LOOKBACK);
        let mut best: Option<Hit> = None;
        while pos < bytes.len() {
            let Some((start, end, pattern)) = self.keyword(bytes, pos) else {
                break;
            };
            if best.as_ref().is_some_and(|b| start >= b.start) {
                break;
            }
            for trigger in &self.triggers[pattern] {
                if let Some(hit) = self.fire(bytes, start, end, trigger) {
                    if hit.start >= at && hit.end > hit.start && hay.is_char_boundary(hit.end) {
                        best = better(best, hit);
                    }
                }
            }
            pos = start + 1;
        }
        best
    }

    fn max_len(&self) -> usize {
        MAX_BUILTIN_MATCH.max(self.mrn_max)
    }

    /// Only a JWT or PEM prefix needs the long hold-back, from where it starts; every
    /// other keyword decides its match within [`SHORT_REACH`] bytes.
    fn settled(&self, hay: &[u8]) -> usize {
        let short = hay.len().saturating_sub(SHORT_REACH + CONTEXT_LEN);
        let window = hay.len().saturating_sub(self.max_len() + CONTEXT_LEN);
        self.long_prefixes
            .iter()
            .filter_map(|f| f.find(&hay[window..]))
            .map(|off| window + off)
            .fold(short, usize::min)
    }
}
