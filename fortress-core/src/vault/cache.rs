//! A short-lived cache of unwrapped data keys (never plaintext secrets). Entries expire
//! after a TTL, are bounded in number, and are zeroized when evicted or dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::CredentialSlot;
use super::envelope::{NONCE_LEN, SymmetricKey};
use crate::subject::WorkspaceId;

/// Identifies one wrapped data key: the slot, the secret version and the wrapping nonce
/// (random per wrap), so a re-created slot or a rewrapped key never hits a stale entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub(crate) slot: CredentialSlot,
    pub(crate) version: u32,
    pub(crate) wrap_nonce: [u8; NONCE_LEN],
}

struct Entry {
    key: SymmetricKey,
    expires: Instant,
}

pub(crate) struct DataKeyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl DataKeyCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &CacheKey, now: Instant) -> Option<SymmetricKey> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.key.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: CacheKey, data_key: SymmetricKey, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
        }
        if entries.len() >= self.capacity {
            // Still full of live keys: drop the one closest to expiry.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                key: data_key,
                expires: now + self.ttl,
            },
        );
    }

    pub(crate) fn evict_slot(&self, slot: &CredentialSlot) {
        self.lock().retain(|k, _| &k.slot != slot);
    }

    pub(crate) fn evict_workspace(&self, workspace: &WorkspaceId) {
        self.lock().retain(|k, _| &k.slot.workspace != workspace);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(connector: &str, version: u32) -> CacheKey {
        CacheKey {
            slot: CredentialSlot::workspace(WorkspaceId::new("w"), connector),
            version,
            wrap_nonce: [0; NONCE_LEN],
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = DataKeyCache::new(Duration::from_secs(30), 8);
        let t0 = Instant::now();
        cache.insert(key("a", 1), SymmetricKey::from_bytes([1; 32]), t0);
        assert!(
            cache
                .get(&key("a", 1), t0 + Duration::from_secs(29))
                .is_some()
        );
        assert!(cache.get(&key("a", 2), t0).is_none());
        assert!(
            cache
                .get(&key("a", 1), t0 + Duration::from_secs(30))
                .is_none()
        );
        assert_eq!(
            cache.len(),
            0,
            "an expired entry is dropped (and zeroized) on access"
        );
    }

    #[test]
    fn capacity_is_bounded_and_eviction_is_targeted() {
        let cache = DataKeyCache::new(Duration::from_secs(30), 2);
        let t0 = Instant::now();
        cache.insert(key("a", 1), SymmetricKey::from_bytes([1; 32]), t0);
        cache.insert(
            key("b", 1),
            SymmetricKey::from_bytes([2; 32]),
            t0 + Duration::from_secs(1),
        );
        cache.insert(
            key("c", 1),
            SymmetricKey::from_bytes([3; 32]),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(cache.len(), 2);
        assert!(
            cache
                .get(&key("a", 1), t0 + Duration::from_secs(2))
                .is_none()
        );
        cache.evict_slot(&key("b", 1).slot);
        assert_eq!(cache.len(), 1);
        cache.evict_workspace(&WorkspaceId::new("w"));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let cache = DataKeyCache::new(Duration::ZERO, 8);
        cache.insert(
            key("a", 1),
            SymmetricKey::from_bytes([1; 32]),
            Instant::now(),
        );
        assert_eq!(cache.len(), 0);
    }
}
