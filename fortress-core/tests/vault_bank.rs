//! Bank tier: the customer's own key wraps the workspace's data keys. Without it nothing
//! decrypts; destroying it crypto-shreds the workspace. Run against SQLite and PostgreSQL.

mod vault_support;

use std::sync::Arc;
use std::time::Duration;

use fortress_core::secret::Secret;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::keys::{KeyFileProvider, KeyProvider, KeyRouter, ManagedKeys, RootKey};
use fortress_core::vault::{CredentialSlot, Vault, VaultError, VaultOptions};
use vault_support::Backend;

fn bank_slot(connector: &str) -> CredentialSlot {
    CredentialSlot::workspace(WorkspaceId::new("bank"), connector)
}

/// SOHO by default, the `bank` workspace on a customer key file.
fn keys(b: &Backend) -> (Arc<dyn KeyProvider>, KeyFileProvider) {
    let files = KeyFileProvider::new(b.scratch());
    let router = KeyRouter::new(Arc::new(ManagedKeys::new(RootKey::generate())))
        .with_workspace(WorkspaceId::new("bank"), Arc::new(files.clone()));
    (Arc::new(router), files)
}

async fn unreadable_without_the_customer_key(b: Arc<Backend>) {
    let (keys, files) = keys(&b);
    let bank = WorkspaceId::new("bank");
    let s = bank_slot("core-banking");
    let (vault, _) = b.vault_with(keys.clone(), VaultOptions::default());

    // No key supplied yet: nothing can even be stored.
    assert!(matches!(
        vault.put(&s, Secret::from("x")).await,
        Err(VaultError::KeyUnavailable(_))
    ));
    let key = RootKey::generate();
    let path = files.install(&bank, &key).unwrap();
    vault.put(&s, Secret::from("swift-token")).await.unwrap();
    assert_eq!(
        vault.resolve(&s).await.unwrap().secret().expose(),
        b"swift-token"
    );

    // The customer withdraws the key: once cached data keys are gone nothing decrypts.
    std::fs::remove_file(&path).unwrap();
    vault.forget_cached_keys(&bank);
    let err = vault.resolve(&s).await.unwrap_err();
    assert!(
        matches!(err, VaultError::KeyUnavailable(ref w) if w == &bank),
        "{err}"
    );

    // A vault that never caches sees the withdrawal at once.
    let (uncached, _) = b.vault_with(
        keys.clone(),
        VaultOptions::default().with_data_key_cache_ttl(Duration::ZERO),
    );
    assert!(matches!(
        uncached.resolve(&s).await,
        Err(VaultError::KeyUnavailable(_))
    ));

    // Another key in its place does not open the workspace either.
    files.install(&bank, &RootKey::generate()).unwrap();
    assert!(matches!(
        uncached.resolve(&s).await,
        Err(VaultError::Crypto { .. })
    ));

    // The right key restores access.
    files.install(&bank, &key).unwrap();
    assert_eq!(
        uncached.resolve(&s).await.unwrap().secret().expose(),
        b"swift-token"
    );
}

async fn termination_shreds_the_customer_key(b: Arc<Backend>) {
    let (keys, files) = keys(&b);
    let bank = WorkspaceId::new("bank");
    let key = RootKey::generate();
    let path = files.install(&bank, &key).unwrap();
    let (vault, audit) = b.vault_with(keys, VaultOptions::default());
    vault.put(&bank_slot("a"), Secret::from("1")).await.unwrap();
    vault.put(&bank_slot("b"), Secret::from("2")).await.unwrap();
    let soho = CredentialSlot::workspace(WorkspaceId::new("soho"), "a");
    vault.put(&soho, Secret::from("3")).await.unwrap();
    let row = b.store().get(&bank_slot("a")).await.unwrap().unwrap();

    assert_eq!(vault.delete_workspace(&bank).await.unwrap(), 2);
    assert!(!path.exists(), "the customer key file must be destroyed");
    let event = audit.events().pop().unwrap();
    assert_eq!(event.detail["key_destroyed"], serde_json::json!(true));
    assert_eq!(event.detail["key_source"], serde_json::json!("key_file"));

    // Even a copy of the old row (a backup, a dead tuple) is undecryptable now: the
    // workspace's key no longer exists.
    assert!(b.store().write(&row, None).await.unwrap());
    vault.forget_cached_keys(&bank);
    assert!(matches!(
        vault.resolve(&bank_slot("a")).await,
        Err(VaultError::KeyUnavailable(_))
    ));
    // SOHO workspaces are untouched, and their master key is not destroyed.
    assert_eq!(vault.resolve(&soho).await.unwrap().secret().expose(), b"3");
}

on_both_backends!(
    unreadable_without_the_customer_key,
    termination_shreds_the_customer_key
);
