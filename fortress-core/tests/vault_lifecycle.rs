//! The envelope vault's promises, each checked against SQLite and PostgreSQL: round trip,
//! tamper and context-swap detection, wrong key, rotation, revocation, deletion that leaves
//! no ciphertext on disk, workspace termination, KEK rotation before the nonce limit, audit
//! events without values.

mod vault_support;

use std::sync::Arc;

use fortress_core::audit::EventKind;
use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::keys::{ManagedKeys, RootKey};
use fortress_core::vault::{CredentialSlot, CredentialState, Vault, VaultError, VaultOptions};
use vault_support::Backend;

fn slot(workspace: &str, connector: &str) -> CredentialSlot {
    CredentialSlot::workspace(WorkspaceId::new(workspace), connector)
}

fn canary() -> String {
    format!("CANARY-{}", uuid::Uuid::new_v4().simple())
}

fn is_crypto(result: Result<fortress_core::vault::Credential, VaultError>) -> String {
    match result {
        Err(e @ VaultError::Crypto { .. }) => e.to_string(),
        other => panic!("expected a decryption failure, got {other:?}"),
    }
}

async fn round_trip(b: Arc<Backend>) {
    let (vault, audit) = b.vault();
    let shared = slot("acme", "zendesk");
    let personal = CredentialSlot::user(WorkspaceId::new("acme"), "zendesk", "alice");
    let value = canary();
    let info = vault
        .put(&shared, Secret::from(value.as_str()))
        .await
        .unwrap();
    assert_eq!((info.version, info.state), (1, CredentialState::Active));
    vault
        .put(&personal, Secret::from("alice-token"))
        .await
        .unwrap();

    assert_eq!(
        vault.resolve(&shared).await.unwrap().secret().expose(),
        value.as_bytes()
    );
    assert_eq!(
        vault.resolve(&personal).await.unwrap().secret().expose(),
        b"alice-token"
    );
    // Served from the cached data key the second time, with the same result.
    assert!(vault.cached_data_keys() >= 1);
    assert_eq!(
        vault.resolve(&shared).await.unwrap().secret().expose(),
        value.as_bytes()
    );

    let listed = vault.list(&WorkspaceId::new("acme")).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        vault
            .list(&WorkspaceId::new("other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        vault.resolve(&slot("acme", "github")).await,
        Err(VaultError::NotFound(_))
    ));

    let events = audit.events();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventKind::Credential && e.action == "credential.put")
    );
    assert_eq!(events[0].resource, "credential:acme/zendesk");
    let recorded = serde_json::to_string(&events).unwrap();
    assert!(
        !recorded.contains(&value),
        "audit events must not carry the value"
    );
    assert!(!recorded.contains("alice-token"));
}

async fn tampered_ciphertext_is_refused(b: Arc<Backend>) {
    let (vault, _) = b.vault();
    let s = slot("acme", "zendesk");
    vault.put(&s, Secret::from("token")).await.unwrap();
    let store = b.store();

    let original = store.get(&s).await.unwrap().unwrap();
    let mut tampered = original.clone();
    tampered.secret.ciphertext[0] ^= 0x01;
    assert!(
        store
            .write(&tampered, Some(tampered.version))
            .await
            .unwrap()
    );
    let message = is_crypto(vault.resolve(&s).await);
    assert!(
        message.contains("acme/zendesk") && message.contains("authentication failed"),
        "{message}"
    );

    // A flipped byte in the wrapped data key is caught too (on a cold cache).
    let mut tampered = original.clone();
    tampered.wrapped_key.ciphertext[5] ^= 0x80;
    assert!(
        store
            .write(&tampered, Some(tampered.version))
            .await
            .unwrap()
    );
    vault.forget_cached_keys(&s.workspace);
    is_crypto(vault.resolve(&s).await);

    // And the untouched row still opens.
    assert!(
        store
            .write(&original, Some(original.version))
            .await
            .unwrap()
    );
    assert_eq!(vault.resolve(&s).await.unwrap().secret().expose(), b"token");
}

async fn swapped_context_is_refused(b: Arc<Backend>) {
    let (vault, _) = b.vault();
    let store = b.store();
    let a = slot("acme", "zendesk");
    let other_connector = slot("acme", "github");
    let other_workspace = slot("globex", "zendesk");
    for s in [&a, &other_connector, &other_workspace] {
        vault
            .put(s, Secret::from(format!("value of {s}")))
            .await
            .unwrap();
    }
    let row_a = store.get(&a).await.unwrap().unwrap();

    // Ciphertext and wrapped key of one row moved into another (same version and
    // generation, so only the AAD differs).
    for target in [&other_connector, &other_workspace] {
        let mut moved = store.get(target).await.unwrap().unwrap();
        let version = moved.version;
        moved.secret = row_a.secret.clone();
        moved.wrapped_key = row_a.wrapped_key.clone();
        moved.kek_generation = row_a.kek_generation;
        assert!(store.write(&moved, Some(version)).await.unwrap());
        is_crypto(vault.resolve(target).await);
    }

    // An old version replayed under a newer version number.
    vault.rotate(&a, Secret::from("second")).await.unwrap();
    let mut replay = row_a.clone();
    replay.version = 2;
    assert!(store.write(&replay, Some(2)).await.unwrap());
    vault.forget_cached_keys(&a.workspace);
    is_crypto(vault.resolve(&a).await);
}

async fn wrong_master_key_is_refused(b: Arc<Backend>) {
    let (vault, _) = b.vault();
    let s = slot("acme", "zendesk");
    vault.put(&s, Secret::from("token")).await.unwrap();
    let (other, _) = b.vault_with(
        Arc::new(ManagedKeys::new(RootKey::generate())),
        VaultOptions::default(),
    );
    let message = is_crypto(other.resolve(&s).await);
    assert!(!message.contains("token"));
}

async fn rotation_replaces_the_value(b: Arc<Backend>) {
    let (vault, audit) = b.vault();
    let s = slot("acme", "anthropic");
    assert!(matches!(
        vault.rotate(&s, Secret::from("x")).await,
        Err(VaultError::NotFound(_))
    ));
    vault.put(&s, Secret::from("first")).await.unwrap();
    assert_eq!(vault.resolve(&s).await.unwrap().secret().expose(), b"first");
    let info = vault.rotate(&s, Secret::from("second")).await.unwrap();
    assert_eq!(info.version, 2);
    // Once rotate returns, only the new version resolves (even with a warm cache).
    let credential = vault.resolve(&s).await.unwrap();
    assert_eq!(
        (credential.version(), credential.secret().expose()),
        (2, &b"second"[..])
    );
    let row = b.store().get(&s).await.unwrap().unwrap();
    assert_eq!(row.version, 2);
    let listed = vault.list(&s.workspace).await.unwrap();
    assert_eq!((listed.len(), listed[0].version), (1, 2));
    let last = audit.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), &last.detail["version"]),
        ("credential.rotate", &serde_json::json!(2))
    );
}

async fn revoked_credentials_never_resolve(b: Arc<Backend>) {
    let (vault, audit) = b.vault();
    let s = slot("acme", "zendesk");
    assert!(matches!(
        vault.revoke(&s).await,
        Err(VaultError::NotFound(_))
    ));
    vault.put(&s, Secret::from("token")).await.unwrap();
    vault.resolve(&s).await.unwrap(); // warms the data-key cache
    vault.revoke(&s).await.unwrap();
    assert!(matches!(
        vault.resolve(&s).await,
        Err(VaultError::Revoked(_))
    ));
    assert_eq!(
        vault.list(&s.workspace).await.unwrap()[0].state,
        CredentialState::Revoked
    );
    assert_eq!(vault.cached_data_keys(), 0);
    assert_eq!(audit.events().last().unwrap().action, "credential.revoke");
}

async fn delete_leaves_no_ciphertext_on_disk(b: Arc<Backend>) {
    let (vault, audit) = b.vault();
    let keep = slot("acme", "github");
    let gone = slot("acme", "zendesk");
    vault.put(&keep, Secret::from(canary())).await.unwrap();
    vault.put(&gone, Secret::from(canary())).await.unwrap();
    vault.resolve(&gone).await.unwrap();
    let row = b.store().get(&gone).await.unwrap().unwrap();
    // The scan can see stored ciphertext: otherwise the check below would prove nothing.
    assert!(
        b.on_disk(&row.secret.ciphertext).await,
        "ciphertext should be on disk before delete"
    );

    vault.delete(&gone).await.unwrap();
    assert!(matches!(
        vault.resolve(&gone).await,
        Err(VaultError::NotFound(_))
    ));
    assert!(matches!(
        vault.delete(&gone).await,
        Err(VaultError::NotFound(_))
    ));
    assert!(b.store().get(&gone).await.unwrap().is_none());
    assert!(
        !b.on_disk(&row.secret.ciphertext).await,
        "deleted ciphertext is still on disk"
    );
    assert!(
        !b.on_disk(&row.wrapped_key.ciphertext).await,
        "deleted wrapped key is still on disk"
    );
    assert_eq!(vault.cached_data_keys(), 0);
    assert!(vault.resolve(&keep).await.is_ok());
    assert_eq!(audit.events().last().unwrap().action, "credential.delete");
}

async fn no_plaintext_on_disk(b: Arc<Backend>) {
    let (vault, _) = b.vault();
    let s = slot("acme", "zendesk");
    let value = canary();
    vault.put(&s, Secret::from(value.as_str())).await.unwrap();
    vault
        .rotate(&s, Secret::from(format!("{value}-v2")))
        .await
        .unwrap();
    assert_eq!(
        vault.resolve(&s).await.unwrap().secret().expose(),
        format!("{value}-v2").as_bytes()
    );
    let row = b.store().get(&s).await.unwrap().unwrap();
    assert!(
        b.on_disk(&row.secret.ciphertext).await,
        "the scan must see what is stored"
    );
    assert!(
        !b.on_disk(value.as_bytes()).await,
        "plaintext canary found on disk"
    );
    assert!(!b.on_disk(b"CANARY-").await, "canary prefix found on disk");
}

async fn workspace_termination_deletes_everything(b: Arc<Backend>) {
    let (vault, audit) = b.vault();
    let acme = WorkspaceId::new("acme");
    for connector in ["zendesk", "github", "salesforce"] {
        vault
            .put(&slot("acme", connector), Secret::from(canary()))
            .await
            .unwrap();
    }
    let row = b
        .store()
        .get(&slot("acme", "github"))
        .await
        .unwrap()
        .unwrap();
    vault
        .put(&slot("globex", "zendesk"), Secret::from("globex"))
        .await
        .unwrap();

    assert_eq!(vault.delete_workspace(&acme).await.unwrap(), 3);
    assert!(vault.list(&acme).await.unwrap().is_empty());
    assert!(vault.kek_usage(&acme).await.unwrap().is_none());
    assert!(!b.on_disk(&row.secret.ciphertext).await);
    assert_eq!(
        vault
            .resolve(&slot("globex", "zendesk"))
            .await
            .unwrap()
            .secret()
            .expose(),
        b"globex"
    );
    let last = audit.events().pop().unwrap();
    assert_eq!(last.action, "credential.delete_workspace");
    assert_eq!(last.detail["deleted"], serde_json::json!(3));
}

async fn kek_rotates_before_its_limit(b: Arc<Backend>) {
    let options = VaultOptions::default().with_rotate_kek_after(4);
    let (vault, audit) = b.vault_with(Arc::new(ManagedKeys::new(RootKey::generate())), options);
    let ws = WorkspaceId::new("acme");
    let (a, c) = (slot("acme", "a"), slot("acme", "c"));
    vault.put(&a, Secret::from("a1")).await.unwrap();
    vault.put(&c, Secret::from("c1")).await.unwrap();
    vault.rotate(&a, Secret::from("a2")).await.unwrap();
    vault.rotate(&a, Secret::from("a3")).await.unwrap();
    let usage = vault.kek_usage(&ws).await.unwrap().unwrap();
    assert_eq!((usage.generation, usage.wraps), (1, 4));

    // The fifth encryption would exceed the budget: generation 2 takes over, the two live
    // data keys are rewrapped (2 encryptions) and the new one is wrapped (1).
    vault.rotate(&a, Secret::from("a4")).await.unwrap();
    let usage = vault.kek_usage(&ws).await.unwrap().unwrap();
    assert_eq!((usage.generation, usage.wraps), (2, 3));
    let store = b.store();
    assert_eq!(store.get(&a).await.unwrap().unwrap().kek_generation, 2);
    assert_eq!(store.get(&c).await.unwrap().unwrap().kek_generation, 2);
    vault.forget_cached_keys(&ws);
    assert_eq!(vault.resolve(&a).await.unwrap().secret().expose(), b"a4");
    assert_eq!(vault.resolve(&c).await.unwrap().secret().expose(), b"c1");
    assert!(
        audit
            .events()
            .iter()
            .any(|e| e.action == "credential.kek_rotate")
    );

    // An operator can rotate at will.
    assert_eq!(vault.rotate_workspace_key(&ws).await.unwrap(), 3);
    vault.forget_cached_keys(&ws);
    assert_eq!(vault.resolve(&c).await.unwrap().secret().expose(), b"c1");
}

async fn bad_input_is_refused_clearly(b: Arc<Backend>) {
    let (vault, _) = b.vault();
    let err = vault
        .put(&slot("acme", ""), Secret::from("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Config(_)), "{err}");
    let err = vault
        .put(&slot("acme", "zendesk"), Secret::from(""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 to"), "{err}");
    let err = vault
        .put(
            &CredentialSlot::user(WorkspaceId::new("acme"), "gh", ""),
            Secret::from("x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Config(_)), "{err}");
}

async fn concurrent_writers_get_distinct_versions(b: Arc<Backend>) {
    // Two vault instances (think two replicas) over the same store, racing on one slot.
    let keys = Arc::new(ManagedKeys::new(RootKey::generate()));
    let (one, _) = b.vault_with(keys.clone(), VaultOptions::default());
    let (two, _) = b.vault_with(keys, VaultOptions::default());
    let (one, two) = (Arc::new(one), Arc::new(two));
    let s = slot("acme", "zendesk");
    let mut tasks = Vec::new();
    for i in 0..4 {
        let vault = if i % 2 == 0 { one.clone() } else { two.clone() };
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            vault
                .put(&s, Secret::from(format!("value-{i}")))
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let last = one.resolve(&s).await.unwrap();
    assert_eq!(last.version(), 4);
    assert!(last.secret().expose_str().unwrap().starts_with("value-"));
    assert_eq!(two.resolve(&s).await.unwrap().secret(), last.secret());
}

on_both_backends!(
    concurrent_writers_get_distinct_versions,
    round_trip,
    tampered_ciphertext_is_refused,
    swapped_context_is_refused,
    wrong_master_key_is_refused,
    rotation_replaces_the_value,
    revoked_credentials_never_resolve,
    delete_leaves_no_ciphertext_on_disk,
    no_plaintext_on_disk,
    workspace_termination_deletes_everything,
    kek_rotates_before_its_limit,
    bad_input_is_refused_clearly,
);
