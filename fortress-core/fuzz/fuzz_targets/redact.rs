//! Fuzzes the default redactor over text, JSON and streams split at fuzzer-chosen points:
//! it never panics, redacting twice equals redacting once, streaming equals one-shot, and
//! JSON stays JSON. The properties live in `../redact_properties.rs`, which the stable
//! replay test `fortress-core/tests/redact_fuzz_replay.rs` runs too.
#![no_main]

#[path = "../redact_properties.rs"]
mod redact_properties;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| redact_properties::check(data));
