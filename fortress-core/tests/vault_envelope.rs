//! The envelope primitives on their own: round trip, tamper, wrong key, swapped context, and
//! nonce uniqueness over a million encryptions.

use std::collections::HashSet;

use fortress_core::subject::WorkspaceId;
use fortress_core::vault::CredentialSlot;
use fortress_core::vault::envelope::{self, CryptoError, DataKey, NONCE_LEN, SymmetricKey};

fn slot(workspace: &str, connector: &str, user: Option<&str>) -> CredentialSlot {
    CredentialSlot {
        workspace: WorkspaceId::new(workspace),
        connector: connector.into(),
        user: user.map(str::to_owned),
    }
}

#[test]
fn sealed_secrets_round_trip_through_wrapped_data_keys() {
    let s = slot("acme", "zendesk", None);
    let kek = SymmetricKey::generate();
    let data_key = DataKey::generate();
    let wrapped = envelope::wrap_data_key(&kek, &data_key, &s, 3, 1).unwrap();
    let sealed = data_key.seal_secret(&s, 3, b"sk-live-123").unwrap();
    assert_ne!(&sealed.ciphertext[..11], b"sk-live-123");
    assert_eq!(sealed.ciphertext.len(), 11 + envelope::TAG_LEN);

    let key = envelope::unwrap_data_key(&kek, &wrapped, &s, 3, 1).unwrap();
    let plain = envelope::open(&key, &envelope::secret_aad(&s, 3), &sealed).unwrap();
    assert_eq!(&plain[..], b"sk-live-123");
}

#[test]
fn a_flipped_byte_anywhere_fails_authentication() {
    let s = slot("acme", "zendesk", None);
    let key = SymmetricKey::generate();
    let aad = envelope::secret_aad(&s, 1);
    let sealed = envelope::seal(&key, &aad, b"secret value").unwrap();
    for i in 0..sealed.ciphertext.len() {
        let mut tampered = sealed.clone();
        tampered.ciphertext[i] ^= 0x01;
        assert_eq!(
            envelope::open(&key, &aad, &tampered).unwrap_err(),
            CryptoError::Authentication
        );
    }
    let mut tampered = sealed.clone();
    tampered.nonce[0] ^= 0x01;
    assert_eq!(
        envelope::open(&key, &aad, &tampered).unwrap_err(),
        CryptoError::Authentication
    );
    assert!(envelope::open(&key, &aad, &sealed).is_ok());
}

#[test]
fn a_wrong_kek_fails_with_a_clear_error() {
    let s = slot("acme", "zendesk", None);
    let data_key = DataKey::generate();
    let wrapped = envelope::wrap_data_key(&SymmetricKey::generate(), &data_key, &s, 1, 1).unwrap();
    let err = envelope::unwrap_data_key(&SymmetricKey::generate(), &wrapped, &s, 1, 1).unwrap_err();
    assert_eq!(err, CryptoError::Authentication);
    assert!(err.to_string().contains("wrong key"), "{err}");
}

#[test]
fn a_swapped_context_fails() {
    let s = slot("acme", "zendesk", Some("alice"));
    let kek = SymmetricKey::generate();
    let data_key = DataKey::generate();
    let wrapped = envelope::wrap_data_key(&kek, &data_key, &s, 2, 5).unwrap();
    let key = envelope::unwrap_data_key(&kek, &wrapped, &s, 2, 5).unwrap();
    let sealed = data_key.seal_secret(&s, 2, b"v").unwrap();

    let others = [
        slot("globex", "zendesk", Some("alice")),
        slot("acme", "github", Some("alice")),
        slot("acme", "zendesk", Some("bob")),
        slot("acme", "zendesk", None),
    ];
    for other in &others {
        assert!(
            envelope::open(&key, &envelope::secret_aad(other, 2), &sealed).is_err(),
            "{other}"
        );
        assert!(
            envelope::unwrap_data_key(&kek, &wrapped, other, 2, 5).is_err(),
            "{other}"
        );
    }
    assert!(envelope::open(&key, &envelope::secret_aad(&s, 1), &sealed).is_err());
    assert!(envelope::unwrap_data_key(&kek, &wrapped, &s, 1, 5).is_err());
    assert!(envelope::unwrap_data_key(&kek, &wrapped, &s, 2, 4).is_err());
}

#[test]
fn nonces_are_unique_over_a_million_encryptions() {
    const N: usize = 1_000_000;
    const THREADS: usize = 2;
    let key = SymmetricKey::generate();
    // Real encryptions on two threads (as concurrent requests would run), one shared key.
    let batches: Vec<Vec<[u8; NONCE_LEN]>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    (0..N / THREADS)
                        .map(|_| envelope::seal(&key, b"aad", b"").unwrap().nonce)
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut seen: HashSet<[u8; NONCE_LEN]> = HashSet::with_capacity(N);
    for nonce in batches.into_iter().flatten() {
        assert!(seen.insert(nonce), "nonce repeated");
    }
    assert_eq!(seen.len(), N);
}
