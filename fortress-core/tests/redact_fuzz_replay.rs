//! Runs the `redact` fuzz target's body on stable, so CI checks what the fuzzer checks:
//! every input in the committed seed corpus (`fuzz/corpus/redact`), any crash the fuzzer
//! left in `fuzz/artifacts/redact`, an extra directory named by `FORTRESS_FUZZ_CORPUS`,
//! and seeded random inputs (`FORTRESS_FUZZ_ITERATIONS`, default 1500).
//!
//! `cargo test -p fortress-core --test redact_fuzz_replay`

#[path = "../fuzz/redact_properties.rs"]
mod redact_properties;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Pieces the random inputs are built from: the bytes and words detectors react to.
const ATOMS: &[&str] = &[
    "0",
    "1",
    "4",
    "5",
    "9",
    "-",
    ".",
    " ",
    "@",
    ":",
    "/",
    "+",
    "(",
    ")",
    "[",
    "]",
    "*",
    "a",
    "Z",
    "x",
    "e",
    "\"",
    "\\",
    "\\n",
    "\\u0001",
    "\\\"",
    "\n",
    ",",
    "=",
    "#",
    "é",
    "日",
    "🦀",
    "DOB ",
    "MRN ",
    "SSN ",
    "phone ",
    "born ",
    "order #",
    "version ",
    "sk-ant-",
    "AKIA",
    "ghp_",
    "xoxb-",
    "eyJ",
    "Bearer ",
    "api_key=",
    "password: ",
    "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----",
    "\"first_name\": \"",
    "\\\"patient_name\\\": \\\"",
    "{\"guardian\": ",
    "Jane Roe",
    "Ana",
    "EMP-123456",
    "PT12345",
    "4111111111111111",
    "4111 1111 1111 1111",
    "123-45-6789",
    "123456789",
    "a@b.co",
    "jane.doe@example.org",
    "2001:db8::1",
    "10.0.0.1",
    "192.168.1.20",
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "(415) 555-0132",
    "+1 415 555 0132",
    "+44 20 7946 0958",
    "1985-03-12",
    "March 12, 1985",
    "12.03.1985",
    "Mar",
    "[EMAIL]",
    "****",
    "Zx81Lq0PmW3nV7bT5rY2",
    "00123456",
    "2024-03-12T10:11:12Z",
    "1700000000000",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Replays every file of `dir`; returns how many there were.
fn replay(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| redact_properties::check(&data));
        assert!(outcome.is_ok(), "fuzz input {} fails", path.display());
    }
    paths.len()
}

#[test]
fn seed_corpus_and_saved_crashes_pass() {
    let seeds = replay(&fuzz_dir().join("corpus/redact"));
    assert!(seeds >= 10, "the seed corpus is missing ({seeds} inputs)");
    replay(&fuzz_dir().join("artifacts/redact"));
    if let Some(dir) = std::env::var_os("FORTRESS_FUZZ_CORPUS") {
        assert!(replay(Path::new(&dir)) > 0, "FORTRESS_FUZZ_CORPUS is empty");
    }
}

/// One random input in the fuzz target's layout: configuration, chunk lengths, text.
fn random_input(r: &mut StdRng) -> Vec<u8> {
    let mut data = vec![r.gen_range(0..=u8::MAX)];
    let lengths = r.gen_range(0..8u8);
    data.push(lengths);
    for _ in 0..lengths {
        data.push(if r.gen_bool(0.5) {
            r.gen_range(0..8)
        } else {
            r.gen_range(0..=u8::MAX)
        });
    }
    for _ in 0..r.gen_range(0..40) {
        if r.gen_bool(0.1) {
            // Raw bytes, including invalid UTF-8.
            data.extend((0..r.gen_range(1..6)).map(|_| r.gen_range(0..=u8::MAX)));
        } else {
            data.extend_from_slice(ATOMS[r.gen_range(0..ATOMS.len())].as_bytes());
        }
    }
    data
}

#[test]
fn random_inputs_pass() {
    let iterations = std::env::var("FORTRESS_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let mut r = StdRng::seed_from_u64(0xf022_5eed);
    for i in 0..iterations {
        let data = random_input(&mut r);
        let outcome = std::panic::catch_unwind(|| redact_properties::check(&data));
        assert!(outcome.is_ok(), "random input {i} fails: {data:?}");
    }
}
