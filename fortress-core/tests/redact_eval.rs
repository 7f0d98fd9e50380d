//! Per-type precision and recall of the default redactor on seeded labelled corpora, and
//! its false-positive rate on a clean corpus of code, logs and prose full of numbers.
//!
//! `cargo test -p fortress-core --test redact_eval -- --nocapture` prints the table.
//! Targets: recall ≥ 0.99 for every entity type; precision ≥ 0.98 for every type over
//! the labelled and clean corpora together; at most 2% of clean lines touched.

mod redact_support;

use std::collections::BTreeMap;

use fortress_core::redact::{DefaultRedactor, RedactionConfig, RedactionScope, RuleSet};
use fortress_core::subject::WorkspaceId;
use redact_support::{DICTIONARY, ENTITIES, clean_line, rng, sample};

const PER_TYPE: usize = 600;
const CLEAN_LINES: usize = 6000;

#[derive(Default)]
struct Tally {
    planted: u64,
    found: u64,
    detections: u64,
    correct: u64,
}

fn redactor() -> DefaultRedactor {
    let config = RedactionConfig {
        defaults: RuleSet {
            names: DICTIONARY.iter().map(|s| (*s).to_owned()).collect(),
            ..RuleSet::default()
        },
        ..RedactionConfig::default()
    };
    DefaultRedactor::builder().config(config).build().unwrap()
}

#[test]
fn precision_and_recall_meet_targets() {
    let redactor = redactor();
    let scope = RedactionScope::new(WorkspaceId::new("eval"));
    let mut tally: BTreeMap<&str, Tally> =
        ENTITIES.iter().map(|e| (*e, Tally::default())).collect();
    let mut misses: Vec<String> = Vec::new();
    let mut r = rng(0x5eed_f0f7);
    for entity in ENTITIES {
        for _ in 0..PER_TYPE {
            let s = sample(&mut r, entity);
            let found = redactor.detect(&scope, &s.text).unwrap();
            for &(start, end, label) in &s.labels {
                let t = tally.get_mut(label).unwrap();
                t.planted += 1;
                if found
                    .iter()
                    .any(|d| d.entity == label && d.start <= start && d.end >= end)
                {
                    t.found += 1;
                } else if misses.len() < 20 {
                    misses.push(format!("missed {label} in {:?}", s.text));
                }
            }
            for d in &found {
                let t = tally
                    .entry(
                        ENTITIES
                            .iter()
                            .find(|e| **e == d.entity)
                            .copied()
                            .unwrap_or("?"),
                    )
                    .or_default();
                t.detections += 1;
                if s.labels
                    .iter()
                    .any(|&(start, end, label)| label == d.entity && d.start < end && start < d.end)
                {
                    t.correct += 1;
                } else if misses.len() < 40 {
                    misses.push(format!(
                        "false {} {:?} in {:?}",
                        d.entity,
                        &s.text[d.start..d.end],
                        s.text
                    ));
                }
            }
        }
    }
    let mut touched = 0;
    for _ in 0..CLEAN_LINES {
        let line = clean_line(&mut r);
        let found = redactor.detect(&scope, &line).unwrap();
        if !found.is_empty() {
            touched += 1;
        }
        for d in &found {
            let t = tally
                .entry(
                    ENTITIES
                        .iter()
                        .find(|e| **e == d.entity)
                        .copied()
                        .unwrap_or("?"),
                )
                .or_default();
            t.detections += 1;
            if misses.len() < 60 {
                misses.push(format!(
                    "clean {} {:?} in {:?}",
                    d.entity,
                    &line[d.start..d.end],
                    line
                ));
            }
        }
    }
    println!(
        "{:<8} {:>8} {:>8} {:>10} {:>10}",
        "entity", "planted", "recall", "detected", "precision"
    );
    let mut failures = Vec::new();
    for (entity, t) in &tally {
        let recall = t.found as f64 / t.planted.max(1) as f64;
        let precision = if t.detections == 0 {
            1.0
        } else {
            t.correct as f64 / t.detections as f64
        };
        println!(
            "{entity:<8} {:>8} {recall:>8.4} {:>10} {precision:>10.4}",
            t.planted, t.detections
        );
        if recall < 0.99 {
            failures.push(format!("{entity} recall {recall:.4}"));
        }
        if precision < 0.98 {
            failures.push(format!("{entity} precision {precision:.4}"));
        }
    }
    let clean_rate = touched as f64 / CLEAN_LINES as f64;
    println!(
        "clean corpus: {touched} of {CLEAN_LINES} lines touched ({:.4})",
        clean_rate
    );
    for m in &misses {
        println!("  {m}");
    }
    assert!(clean_rate <= 0.02, "clean corpus touched {clean_rate:.4}");
    assert!(failures.is_empty(), "targets missed: {failures:?}");
}

#[test]
fn the_clean_corpus_is_left_byte_identical() {
    use fortress_core::redact::Redactor;
    use std::borrow::Cow;
    let redactor = redactor();
    let scope = RedactionScope::new(WorkspaceId::new("eval"));
    let mut r = rng(7);
    let text: String = (0..400).map(|_| clean_line(&mut r) + "\n").collect();
    let (out, report) = redactor.redact_text(&scope, &text).unwrap();
    // A few lines may be touched; most text stays borrowed line by line.
    let borrowed = text
        .lines()
        .filter(|l| matches!(redactor.redact_text(&scope, l).unwrap().0, Cow::Borrowed(_)))
        .count();
    assert!(borrowed >= 392, "{borrowed} of 400 clean lines left alone");
    assert!(report.total() <= 8, "{report:?}");
    assert!(out.len() <= text.len());
}
