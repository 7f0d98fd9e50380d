//! A compiled rule set: the detectors one scope uses, its actions, and its key rules.
//! The detectors run as one [`MatchFinder`], merged leftmost-longest, so the shared
//! streaming machinery applies unchanged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::Regex;

use super::config::RuleSet;
use super::detect::custom::CustomDetector;
use super::detect::dictionary::DictionaryDetector;
use super::detect::email::EmailDetector;
use super::detect::escape::{inside_escape, json_number_quote};
use super::detect::ip::Ipv6Detector;
use super::detect::json_key::{JsonKeyDetector, KeyRules};
use super::detect::keyword::{KeywordDetector, MAX_KEY_LEN, MRN_WORDS, SECRET_KEYS, Trigger};
use super::detect::number::{NumberDetector, NumberFamilies};
use super::detect::secret::PREFIXES;
use super::detect::{CONTEXT_LEN, Detector, Hit};
use super::stream::{MatchFinder, Span};
use super::{Action, RedactError, TokenKey, entity};

/// Built-in key rules: the whole value under these keys is the entity.
const BUILTIN_KEYS: &[(&str, &str)] = &[
    ("first_name", entity::NAME),
    ("given_name", entity::NAME),
    ("middle_name", entity::NAME),
    ("last_name", entity::NAME),
    ("surname", entity::NAME),
    ("family_name", entity::NAME),
    ("full_name", entity::NAME),
    ("legal_name", entity::NAME),
    ("maiden_name", entity::NAME),
    ("patient_name", entity::NAME),
    ("customer_name", entity::NAME),
    ("contact_name", entity::NAME),
    ("guardian_name", entity::NAME),
    ("cardholder_name", entity::NAME),
    ("dob", entity::DOB),
    ("date_of_birth", entity::DOB),
    ("birth_date", entity::DOB),
    ("birthdate", entity::DOB),
    ("birthday", entity::DOB),
    ("ssn", entity::SSN),
    ("social_security_number", entity::SSN),
    ("mrn", entity::MRN),
    ("medical_record_number", entity::MRN),
    ("password", entity::SECRET),
    ("passwd", entity::SECRET),
    ("client_secret", entity::SECRET),
    ("api_key", entity::SECRET),
    ("access_token", entity::SECRET),
    ("refresh_token", entity::SECRET),
    ("id_token", entity::SECRET),
    ("auth_token", entity::SECRET),
    ("private_key", entity::SECRET),
    ("authorization", entity::SECRET),
];

/// The built-in medical record number format.
const DEFAULT_MRN_FORMAT: &str = r"[A-Z]{0,3}-?\d{6,10}";

/// The longest workspace pattern match.
const MAX_PATTERN_LEN: usize = 1024;

/// The detectors and actions of one scope.
pub(crate) struct ProfileFinder {
    detectors: Vec<Box<dyn Detector>>,
    actions: BTreeMap<String, Action>,
    key: Option<TokenKey>,
    max_len: usize,
}

impl ProfileFinder {
    /// The action for an entity type.
    pub(crate) fn action(&self, entity: &str) -> Action {
        self.actions.get(entity).copied().unwrap_or_default()
    }

    /// The workspace token key, if any.
    pub(crate) fn key(&self) -> Option<&TokenKey> {
        self.key.as_ref()
    }

    fn next(&self, i: usize, hay: &str, at: usize) -> Option<Hit> {
        let mut from = at;
        loop {
            let mut hit = self.detectors[i].next(hay, from)?;
            let found_at = hit.start;
            // JSON redacted as text stays JSON: a span never starts or ends inside an
            // escape (`\nbob@…` starts at `bob`; `…abc\"` takes the whole `\"`).
            let bytes = hay.as_bytes();
            if let Some(e) = inside_escape(bytes, hit.start) {
                hit.start = e;
            }
            if let Some(e) = inside_escape(bytes, hit.end) {
                hit.end = e;
            }
            // A detector working on bytes must not split a character; skip such a hit.
            if hay.is_char_boundary(hit.start)
                && hay.is_char_boundary(hit.end)
                && hit.end > hit.start
            {
                return Some(hit);
            }
            from = found_at + 1;
        }
    }
}

impl MatchFinder for ProfileFinder {
    fn find(&self, haystack: &str, from: usize, spans: &mut Vec<Span>) {
        let mut next: Vec<Option<Hit>> = (0..self.detectors.len())
            .map(|i| self.next(i, haystack, from))
            .collect();
        let mut at = from;
        loop {
            let mut best: Option<usize> = None;
            for i in 0..next.len() {
                if next[i].as_ref().is_some_and(|h| h.start < at) {
                    next[i] = self.next(i, haystack, at);
                }
                if let Some(hit) = &next[i] {
                    if best.is_none_or(|b| next[b].as_ref().is_none_or(|bh| hit.beats(bh))) {
                        best = Some(i);
                    }
                }
            }
            let Some(hit) = best.and_then(|b| next[b].clone()) else {
                return;
            };
            let value = &haystack[hit.start..hit.end];
            let mut replacement =
                self.action(&hit.entity)
                    .replace(&hit.entity, value, self.key.as_ref());
            // A number under a JSON key written as text becomes a string, or the text
            // would stop being JSON.
            if let Some(quote) = json_number_quote(haystack.as_bytes(), hit.start, hit.end) {
                replacement = format!("{quote}{replacement}{quote}");
            }
            spans.push(Span {
                start: hit.start,
                end: hit.end,
                entity: hit.entity,
                replacement,
            });
            at = hit.end;
        }
    }

    fn max_match_len(&self) -> usize {
        self.max_len
    }

    fn context_len(&self) -> usize {
        CONTEXT_LEN
    }

    fn settled(&self, haystack: &str) -> usize {
        let bytes = haystack.as_bytes();
        self.detectors
            .iter()
            .map(|d| d.settled(bytes))
            .min()
            .unwrap_or(haystack.len())
    }
}

/// A compiled scope: its finder and its key rules for JSON.
pub(crate) struct Profile {
    pub(crate) finder: Arc<ProfileFinder>,
    key_rules: KeyRules,
}

impl Profile {
    /// The entity a JSON key's whole value is, if a key rule says so and it is not allowed.
    pub(crate) fn key_entity(&self, key: &str) -> Option<&Arc<str>> {
        self.key_rules.get(key)
    }

    /// Compiles a rule set.
    pub(crate) fn compile(rules: &RuleSet, key: Option<TokenKey>) -> Result<Self, RedactError> {
        let invalid = |name: &str, message: String| RedactError::InvalidRule {
            name: name.to_owned(),
            message,
        };
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |name: &str| {
            names
                .entry(name.to_owned())
                .or_insert_with(|| Arc::from(name))
                .clone()
        };
        for (name, action) in &rules.actions {
            if !entity::is_valid_name(name) {
                return Err(invalid(name, "entity names use A-Z, 0-9 and _".into()));
            }
            if *action == Action::Token && key.is_none() {
                return Err(invalid(
                    name,
                    "the token action needs a token key for this workspace".into(),
                ));
            }
        }
        let on = |name: &str| rules.actions.get(name).copied().unwrap_or_default() != Action::Allow;
        let mut detectors: Vec<Box<dyn Detector>> = Vec::new();

        let pick =
            |name: &str, intern: &mut dyn FnMut(&str) -> Arc<str>| on(name).then(|| intern(name));
        let families = NumberFamilies {
            phone: pick(entity::PHONE, &mut intern),
            ssn: pick(entity::SSN, &mut intern),
            card: pick(entity::CARD, &mut intern),
            iban: pick(entity::IBAN, &mut intern),
            ipv4: pick(entity::IP, &mut intern),
            dob: pick(entity::DOB, &mut intern),
        };
        detectors.push(Box::new(NumberDetector { families }));
        if on(entity::EMAIL) {
            detectors.push(Box::new(EmailDetector {
                entity: intern(entity::EMAIL),
            }));
        }
        if on(entity::IP) {
            detectors.push(Box::new(Ipv6Detector {
                entity: intern(entity::IP),
            }));
        }

        // Keyword-triggered detectors share one automaton.
        let mut pairs: Vec<(String, Trigger)> = Vec::new();
        if on(entity::SECRET) {
            let secret = intern(entity::SECRET);
            for (prefix, kind) in PREFIXES {
                pairs.push(((*prefix).to_owned(), Trigger::Prefix(*kind, secret.clone())));
            }
            pairs.push(("bearer".to_owned(), Trigger::Bearer(secret.clone())));
            for (word, password) in SECRET_KEYS {
                pairs.push((
                    (*word).to_owned(),
                    Trigger::Assign(*password, secret.clone()),
                ));
            }
        }
        let mut mrn_formats = Vec::new();
        let mut mrn_max = 0;
        if on(entity::MRN) {
            let mrn = intern(entity::MRN);
            for word in MRN_WORDS {
                pairs.push(((*word).to_owned(), Trigger::Mrn(mrn.clone())));
            }
            for format in std::iter::once(DEFAULT_MRN_FORMAT)
                .chain(rules.mrn_formats.iter().map(String::as_str))
            {
                let max = bounded_len(entity::MRN, format, 64)?;
                mrn_max = mrn_max.max(max);
                mrn_formats.push(
                    Regex::new(&format!("^(?:{format})"))
                        .map_err(|e| invalid(entity::MRN, e.to_string()))?,
                );
            }
        }
        let mut key_rules = KeyRules::default();
        let custom_keys = rules
            .keys
            .iter()
            .map(|k| (k.key.as_str(), k.entity.as_str()));
        for (key_name, entity_name) in BUILTIN_KEYS.iter().copied().chain(custom_keys) {
            if !entity::is_valid_name(entity_name) {
                return Err(invalid(
                    entity_name,
                    "entity names use A-Z, 0-9 and _".into(),
                ));
            }
            if key_name.is_empty() || key_name.len() > MAX_KEY_LEN {
                return Err(invalid(
                    key_name,
                    format!("keys must have 1 to {MAX_KEY_LEN} bytes"),
                ));
            }
            if !on(entity_name) {
                continue;
            }
            key_rules.insert(key_name, intern(entity_name));
        }
        if !key_rules.is_empty() {
            detectors.push(Box::new(JsonKeyDetector {
                keys: key_rules.clone(),
            }));
        }
        if !pairs.is_empty() {
            let keywords = KeywordDetector::new(pairs, mrn_formats, mrn_max)
                .map_err(|e| invalid("keywords", e.to_string()))?;
            detectors.push(Box::new(keywords));
        }

        if on(entity::NAME) && rules.names.iter().any(|n| !n.trim().is_empty()) {
            let dictionary = DictionaryDetector::new(&rules.names, intern(entity::NAME))
                .map_err(|e| invalid(entity::NAME, e.to_string()))?;
            detectors.push(Box::new(dictionary));
        }
        for pattern in &rules.patterns {
            if !entity::is_valid_name(&pattern.entity) {
                return Err(invalid(
                    &pattern.entity,
                    "entity names use A-Z, 0-9 and _".into(),
                ));
            }
            let max_len = bounded_len(&pattern.entity, &pattern.regex, MAX_PATTERN_LEN)?;
            if !on(&pattern.entity) {
                continue;
            }
            let regex =
                Regex::new(&pattern.regex).map_err(|e| invalid(&pattern.entity, e.to_string()))?;
            detectors.push(Box::new(CustomDetector {
                regex,
                max_len,
                entity: intern(&pattern.entity),
            }));
        }

        let max_len = detectors.iter().map(|d| d.max_len()).max().unwrap_or(1);
        Ok(Self {
            finder: Arc::new(ProfileFinder {
                detectors,
                actions: rules.actions.clone(),
                key,
                max_len,
            }),
            key_rules,
        })
    }
}

/// Checks a pattern compiles, cannot match empty text, and has a bounded match length.
fn bounded_len(name: &str, pattern: &str, limit: usize) -> Result<usize, RedactError> {
    let invalid = |message: String| RedactError::InvalidRule {
        name: name.to_owned(),
        message,
    };
    let hir = regex_syntax::parse(pattern).map_err(|e| invalid(e.to_string()))?;
    let props = hir.properties();
    if props.minimum_len().unwrap_or(0) == 0 {
        return Err(invalid("pattern can match empty text".into()));
    }
    match props.maximum_len() {
        Some(max) if max <= limit => Ok(max),
        _ => Err(invalid(format!(
            "pattern can match more than {limit} bytes"
        ))),
    }
}
