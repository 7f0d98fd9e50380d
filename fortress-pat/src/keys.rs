//! Gateway keys of PAT Fortress: the shared [`fortress_core::keys`] store with the `fpk_`
//! [`KeyFormat::PAT`] format.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fortress_core::secret::Secret;
//! use fortress_pat::keys::{FORMAT, KeyStore, NewKey};
//!
//! let store = KeyStore::in_memory(FORMAT, Secret::from("pepper")).await.unwrap();
//! let issued = store.create(NewKey::user("acme", "alice")).await.unwrap();
//! assert!(issued.token.expose_str().unwrap().starts_with("fpk_"));
//! # });
//! ```

pub use fortress_core::keys::{
    AuthError, IssuedKey, KeyFormat, KeyRecord, KeyStore, KeyStoreError, NewKey, token_of,
};

/// The key format PAT Fortress issues and accepts (`fpk_…`).
pub const FORMAT: KeyFormat = KeyFormat::PAT;

/// The prefix every PAT gateway key starts with.
pub const KEY_PREFIX: &str = FORMAT.prefix;
