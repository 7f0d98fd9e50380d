//! Property test: any tampering with a signed trail — flipping any byte of any event or
//! checkpoint field, dropping, reordering, truncating or inserting events (even with the
//! hash chain recomputed by the attacker) — is detected by verification.

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use fortress_core::audit::chain::{GENESIS, link_hash};
use fortress_core::audit::checkpoint::Checkpoint;
use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, TrustedKeys};
use fortress_core::audit::merkle;
use fortress_core::audit::row::{EncodedEvent, StoredEvent};
use fortress_core::audit::verify::{ChainVerifier, Tampered, VerifyOptions, VerifyReport};
use fortress_core::audit::{AuditEvent, EventKind, SubjectRef};
use fortress_core::subject::{SubjectKind, WorkspaceId};
use proptest::prelude::*;

const EVENTS: usize = 24;
const CHECKPOINT_EVERY: usize = 5;

struct Trail {
    events: Vec<StoredEvent>,
    checkpoints: Vec<Checkpoint>,
    trusted: TrustedKeys,
}

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::activity(
        EventKind::Access,
        WorkspaceId::new("acme"),
        SubjectRef {
            id: format!("user-{}", i % 3),
            kind: SubjectKind::User,
        },
        "tools/call",
        format!("tool:zendesk/t{i}"),
    );
    e.timestamp =
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64);
    e.request_id = format!("req-{i}");
    e.connector = Some("zendesk".into());
    e.arguments_digest = Some(format!("hmac-sha256:{i:064x}"));
    e
}

/// Numbers the rows and recomputes the hash chain, as the store does (and as an attacker
/// without the signing key can).
fn rechain(rows: &mut [StoredEvent]) {
    let mut prev = GENESIS;
    for (i, row) in rows.iter_mut().enumerate() {
        row.seq = i as u64 + 1;
        row.hash = link_hash(row.seq, &prev, row.body.as_bytes());
        prev = row.hash;
    }
}

fn trail() -> &'static Trail {
    static TRAIL: OnceLock<Trail> = OnceLock::new();
    TRAIL.get_or_init(|| {
        let key = Ed25519KeyProvider::generate();
        let mut events: Vec<StoredEvent> = (0..EVENTS)
            .map(|i| {
                let encoded = EncodedEvent::new(&event(i)).unwrap();
                StoredEvent {
                    seq: 0,
                    recorded_at_us: 0,
                    hash: [0; 32],
                    columns: encoded.columns,
                    body: encoded.body,
                }
            })
            .collect();
        rechain(&mut events);
        let mut checkpoints = Vec::new();
        for chunk in events.chunks(CHECKPOINT_EVERY) {
            let leaves: Vec<_> = chunk.iter().map(|r| r.hash).collect();
            let last = chunk.last().unwrap();
            checkpoints.push(
                Checkpoint::sign(
                    chunk[0].seq,
                    last.seq,
                    last.hash,
                    merkle::root(&leaves),
                    Utc::now(),
                    &key,
                )
                .unwrap(),
            );
        }
        Trail {
            events,
            checkpoints,
            trusted: TrustedKeys::new([key.verifying_key()]),
        }
    })
}

fn verify(events: &[StoredEvent], checkpoints: &[Checkpoint]) -> Result<VerifyReport, Tampered> {
    let t = trail();
    let mut v = ChainVerifier::new(checkpoints.to_vec(), &t.trusted, VerifyOptions::default())?;
    for row in events {
        v.push(row)?;
    }
    v.finish()
}

fn flip_in_string(s: &mut String, at: usize, bit: u8) {
    // Stay within ASCII so the text stays valid UTF-8: every byte here is ASCII.
    let mut bytes = std::mem::take(s).into_bytes();
    let i = at % bytes.len();
    bytes[i] ^= 1 << (bit % 7);
    *s = String::from_utf8(bytes).unwrap();
}

#[derive(Clone, Debug)]
enum Tamper {
    FlipBody {
        row: usize,
        at: usize,
        bit: u8,
    },
    FlipHash {
        row: usize,
        at: usize,
        bit: u8,
    },
    FlipColumn {
        row: usize,
        column: usize,
        at: usize,
        bit: u8,
    },
    FlipCheckpoint {
        index: usize,
        field: usize,
        at: usize,
        bit: u8,
    },
    Drop {
        row: usize,
    },
    DropCheckpoint {
        index: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
    SwapContents {
        a: usize,
        b: usize,
    },
    Truncate {
        keep: usize,
    },
    Insert {
        at: usize,
        rechain: bool,
    },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let row = 0..EVENTS;
    let cps = 0..EVENTS.div_ceil(CHECKPOINT_EVERY);
    prop_oneof![
        (row.clone(), any::<usize>(), any::<u8>()).prop_map(|(row, at, bit)| Tamper::FlipBody {
            row,
            at,
            bit
        }),
        (row.clone(), 0..32usize, any::<u8>()).prop_map(|(row, at, bit)| Tamper::FlipHash {
            row,
            at,
            bit
        }),
        (row.clone(), 0..6usize, any::<usize>(), any::<u8>()).prop_map(|(row, column, at, bit)| {
            Tamper::FlipColumn {
                row,
                column,
                at,
                bit,
            }
        }),
        (cps.clone(), 0..6usize, any::<usize>(), any::<u8>()).prop_map(
            |(index, field, at, bit)| Tamper::FlipCheckpoint {
                index,
                field,
                at,
                bit
            }
        ),
        row.clone().prop_map(|row| Tamper::Drop { row }),
        cps.prop_map(|index| Tamper::DropCheckpoint { index }),
        (row.clone(), row.clone())
            .prop_filter("distinct", |(a, b)| a != b)
            .prop_map(|(a, b)| Tamper::Swap { a, b }),
        (row.clone(), row.clone())
            .prop_filter("distinct", |(a, b)| a != b)
            .prop_map(|(a, b)| Tamper::SwapContents { a, b }),
        (0..EVENTS).prop_map(|keep| Tamper::Truncate { keep }),
        (0..=EVENTS, any::<bool>()).prop_map(|(at, rechain)| Tamper::Insert { at, rechain }),
    ]
}

/// Applies a tampering; returns the rows, checkpoints, and the lowest sequence number
/// verification must name (when it is determined by the tampering alone).
fn apply(t: &Tamper) -> (Vec<StoredEvent>, Vec<Checkpoint>, Option<u64>) {
    let base = trail();
    let mut events = base.events.clone();
    let mut cps = base.checkpoints.clone();
    let expect = match *t {
        Tamper::FlipBody { row, at, bit } => {
            flip_in_string(&mut events[row].body, at, bit);
            Some(events[row].seq)
        }
        Tamper::FlipHash { row, at, bit } => {
            events[row].hash[at] ^= 1 << (bit % 8);
            Some(events[row].seq)
        }
        Tamper::FlipColumn {
            row,
            column,
            at,
            bit,
        } => {
            let c = &mut events[row].columns;
            let field = match column {
                0 => &mut c.workspace,
                1 => &mut c.subject_id,
                2 => &mut c.action,
                3 => &mut c.resource,
                4 => &mut c.outcome,
                _ => &mut c.request_id,
            };
            flip_in_string(field, at, bit);
            Some(events[row].seq)
        }
        Tamper::FlipCheckpoint {
            index,
            field,
            at,
            bit,
        } => {
            let cp = &mut cps[index];
            let mask = 1u8 << (bit % 8);
            match field {
                0 => cp.signature[at % 64] ^= mask,
                1 => cp.chain_head[at % 32] ^= mask,
                2 => cp.merkle_root[at % 32] ^= mask,
                3 => cp.last_seq ^= u64::from(mask),
                4 => cp.first_seq ^= u64::from(mask),
                _ => cp.created_at += chrono::Duration::microseconds(i64::from(mask)),
            }
            None
        }
        Tamper::Drop { row } => {
            events.remove(row);
            Some(row as u64 + 1)
        }
        Tamper::DropCheckpoint { index } => {
            cps.remove(index);
            None
        }
        Tamper::Swap { a, b } => {
            // Rows delivered out of order (a store always returns them in sequence order,
            // so this exists only at this level): detected, but which sequence is "first
            // bad" is a matter of reading, e.g. row 6 first looks like a purge anchored at 5.
            events.swap(a, b);
            None
        }
        Tamper::SwapContents { a, b } => {
            let (ba, bb) = (events[a].body.clone(), events[b].body.clone());
            events[a].body = bb;
            events[b].body = ba;
            let (ca, cb) = (events[a].columns.clone(), events[b].columns.clone());
            events[a].columns = cb;
            events[b].columns = ca;
            Some(a.min(b) as u64 + 1)
        }
        Tamper::Truncate { keep } => {
            events.truncate(keep);
            Some(keep as u64 + 1)
        }
        Tamper::Insert {
            at,
            rechain: attacker_rechains,
        } => {
            let forged = EncodedEvent::new(&event(999)).unwrap();
            events.insert(
                at,
                StoredEvent {
                    seq: at as u64 + 1,
                    recorded_at_us: 0,
                    hash: [0; 32],
                    columns: forged.columns,
                    body: forged.body,
                },
            );
            if attacker_rechains {
                // The attacker renumbers and recomputes every hash: only the signed
                // checkpoints can catch this.
                rechain(&mut events);
                None
            } else {
                Some(at as u64 + 1)
            }
        }
    };
    (events, cps, expect)
}

#[test]
fn the_genuine_trail_verifies() {
    let t = trail();
    let report = verify(&t.events, &t.checkpoints).unwrap();
    assert_eq!(report.events, EVENTS as u64);
    assert_eq!(report.checkpoints, t.checkpoints.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_tampering_is_detected(t in tamper()) {
        let (events, cps, expect) = apply(&t);
        let result = verify(&events, &cps);
        prop_assert!(result.is_err(), "undetected: {:?}", t);
        if let (Some(seq), Err(err)) = (expect, &result) {
            prop_assert_eq!(err.seq, seq, "{:?} named the wrong sequence: {}", t, err);
        }
    }
}
