//! Bounded caches of the request pieces that repeat from call to call: the principal side
//! (the subject's entity, its groups and workspace) by subject, and the whole entity store
//! of a request by subject, action and resource.
//!
//! Building them is a large share of a Cedar decision: every entity is a fresh allocation,
//! and the store computes the transitive closure of the hierarchy. Both depend only on
//! their key (and on the schema's action entities), so a cached one is exactly what a
//! fresh build would give. The caches belong to one compiled set and go with it when a
//! reload swaps the set. They are bounded (least recently and least frequently used
//! entries go first), so a stream of distinct subjects cannot grow memory.

use std::hash::Hash;
use std::sync::Arc;

use cedar_policy::{Context, Entities};
use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use super::PolicyError;
use super::translate::{self, ContextKey, PrincipalPart};
use crate::call::Resource;
use crate::subject::Subject;

/// Subjects whose principal side is kept.
const PRINCIPALS: usize = 4096;

/// (subject, action, resource) triples whose entity store is kept.
const ENTITY_STORES: usize = 4096;

/// Contexts kept (by the values of the attributes they hold).
const CONTEXTS: usize = 4096;

/// The key of one request's entity store.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StoreKey {
    subject: Subject,
    action: String,
    resource: Resource,
}

/// [`StoreKey`] borrowed from a call, so a hit allocates nothing. Its fields hash in the
/// same order and the same way (`&str` as `String`), as the cache requires.
#[derive(Hash)]
struct StoreKeyRef<'a> {
    subject: &'a Subject,
    action: &'a str,
    resource: &'a Resource,
}

impl Equivalent<StoreKey> for StoreKeyRef<'_> {
    fn equivalent(&self, key: &StoreKey) -> bool {
        *self.subject == key.subject && self.action == key.action && *self.resource == key.resource
    }
}

impl StoreKeyRef<'_> {
    fn to_owned(&self) -> StoreKey {
        StoreKey {
            subject: self.subject.clone(),
            action: self.action.to_owned(),
            resource: self.resource.clone(),
        }
    }
}

/// The caches of one compiled set.
pub(crate) struct RequestCache {
    principals: Cache<Subject, Arc<PrincipalPart>>,
    stores: Cache<StoreKey, Arc<Entities>>,
    contexts: Cache<ContextKey, Context>,
}

impl std::fmt::Debug for RequestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCache")
            .field("principals", &self.principals.len())
            .field("stores", &self.stores.len())
            .field("contexts", &self.contexts.len())
            .finish()
    }
}

impl Default for RequestCache {
    fn default() -> Self {
        Self {
            principals: Cache::new(PRINCIPALS),
            stores: Cache::new(ENTITY_STORES),
            contexts: Cache::new(CONTEXTS),
        }
    }
}

impl RequestCache {
    /// The principal side of `subject`, built on first use.
    pub(crate) fn principal(&self, subject: &Subject) -> Result<Arc<PrincipalPart>, PolicyError> {
        if let Some(part) = self.principals.get(subject) {
            return Ok(part);
        }
        let part = Arc::new(translate::principal(subject)?);
        self.principals.insert(subject.clone(), Arc::clone(&part));
        Ok(part)
    }

    /// The entity store of a request, built by `build` on first use. A build error is
    /// returned and nothing is kept.
    pub(crate) fn entities(
        &self,
        subject: &Subject,
        action: &str,
        resource: &Resource,
        build: impl FnOnce() -> Result<Entities, PolicyError>,
    ) -> Result<Arc<Entities>, PolicyError> {
        let key = StoreKeyRef {
            subject,
            action,
            resource,
        };
        if let Some(store) = self.stores.get(&key) {
            return Ok(store);
        }
        let store = Arc::new(build()?);
        self.stores.insert(key.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// The context with key `key` (see [`ContextKey::of`]), built by `build` on first use;
    /// without a key, built every time. A Cedar context is reference-counted, so a hit
    /// costs no copy. `ipaddr` values are parsed by Cedar each time a context is built,
    /// which is what a hit saves.
    pub(crate) fn context(
        &self,
        key: Option<ContextKey>,
        build: impl FnOnce() -> Result<Context, PolicyError>,
    ) -> Result<Context, PolicyError> {
        let Some(key) = key else {
            return build();
        };
        if let Some(context) = self.contexts.get(&key) {
            return Ok(context);
        }
        let context = build()?;
        self.contexts.insert(key, context.clone());
        Ok(context)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::*;
    use crate::call::Resource;
    use crate::subject::WorkspaceId;

    #[test]
    fn borrowed_and_owned_keys_hash_alike_and_match() {
        let subject = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["g"]);
        let resource = Resource::tool("c", "t");
        let borrowed = StoreKeyRef {
            subject: &subject,
            action: "tools/call",
            resource: &resource,
        };
        let owned = borrowed.to_owned();
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(&borrowed), hasher.hash_one(&owned));
        assert!(borrowed.equivalent(&owned));
        let other = StoreKeyRef {
            action: "tools/list",
            ..borrowed
        };
        assert!(!other.equivalent(&owned));
    }

    #[test]
    fn a_build_runs_once_per_key_and_errors_are_not_kept() {
        let cache = RequestCache::default();
        let subject = Subject::user("alice", WorkspaceId::new("acme"));
        let resource = Resource::tool("c", "t");
        let mut builds = 0;
        for _ in 0..3 {
            cache
                .entities(&subject, "tools/call", &resource, || {
                    builds += 1;
                    Ok(Entities::empty())
                })
                .unwrap();
        }
        assert_eq!(builds, 1);
        let failed = cache.entities(&subject, "tools/list", &resource, || {
            Err(PolicyError::Request("no".into()))
        });
        assert!(failed.is_err());
        let mut rebuilt = false;
        cache
            .entities(&subject, "tools/list", &resource, || {
                rebuilt = true;
                Ok(Entities::empty())
            })
            .unwrap();
        assert!(rebuilt);
        let first = cache.principal(&subject).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.principal(&subject).unwrap()));
    }
}
