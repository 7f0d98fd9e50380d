//! Policy sets shared by replicas: the newest revision in the shared [`PolicyStore`] is
//! the set in force everywhere. The replica whose editor applies a change saves it first
//! (only a set that compiles is saved), then announces [`Change::Policy`]; every replica's
//! follower reloads the newest revision on the announcement, after a resubscription, and
//! at every poll, so a change is live everywhere within the pub/sub latency (one poll
//! interval without Redis).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use fortress_core::admin::policy_editor::PolicyEditor;
//! use fortress_core::cluster::policies::SharedPolicies;
//! use fortress_core::db::Database;
//! use fortress_core::policy::{CedarEngine, PolicyDocuments};
//! use fortress_core::policy::store::PolicyStore;
//!
//! let store = PolicyStore::open(Database::sqlite_memory().await.unwrap()).await.unwrap();
//! let docs = PolicyDocuments::new().with_policies("main.cedar", "forbid(principal, action, resource);");
//! let editor = |docs: &PolicyDocuments| {
//!     let engine = Arc::new(CedarEngine::new(docs).unwrap());
//!     Arc::new(PolicyEditor::new(engine, docs.clone())
//!         .shared_through(SharedPolicies::new(store.clone(), "pat", None)))
//! };
//! let (here, there) = (editor(&docs), editor(&PolicyDocuments::new()));
//! here.join_shared().await.unwrap(); // the first replica seeds the store
//! let permit = PolicyDocuments::new().with_policies("main.cedar", "permit(principal, action, resource);");
//! here.apply(permit.clone()).await.unwrap();
//! // The other replica follows (at once when the bus announced it).
//! there.follow_shared().await.unwrap();
//! assert_eq!(there.version(), permit.version());
//! # });
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Change, ChangeHandler, ClusterBus, follow};
use crate::admin::policy_editor::{EditorError, PolicyEditor};
use crate::db::Database;
use crate::policy::store::{PolicyStore, PolicyStoreError};

/// Why a replica could not join a shared policy set.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] PolicyStoreError),
    /// The set could not be seeded or adopted.
    #[error("{0}")]
    Editor(#[from] EditorError),
}

/// One named policy set in the shared store, and the bus its changes are announced on.
#[derive(Clone, Debug)]
pub struct SharedPolicies {
    store: PolicyStore,
    set: String,
    bus: Option<ClusterBus>,
}

impl SharedPolicies {
    /// The set `set` (for example `pat`) of `store`; changes are announced on `bus`.
    pub fn new(store: PolicyStore, set: impl Into<String>, bus: Option<ClusterBus>) -> Self {
        Self {
            store,
            set: set.into(),
            bus,
        }
    }

    /// The store.
    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// The set's name.
    pub fn set(&self) -> &str {
        &self.set
    }

    /// Tells every replica that the set changed (best-effort: they poll anyway).
    pub async fn announce(&self) {
        if let Some(bus) = &self.bus {
            bus.publish(&Change::Policy).await;
        }
    }

    /// Puts `editor` on the set `set` shared through `db` and keeps it there: opens the
    /// store, joins it (an empty store is seeded with the editor's set, else the stored set
    /// becomes live) and follows every later change on `bus`, polling every `poll`. The
    /// follower runs as long as the process; its handle is returned with the editor.
    pub async fn join(
        editor: PolicyEditor,
        db: Database,
        set: &str,
        bus: Option<ClusterBus>,
        poll: Duration,
    ) -> Result<(Arc<PolicyEditor>, tokio::task::JoinHandle<()>), JoinError> {
        let store = PolicyStore::open(db).await?;
        let editor = Arc::new(editor.shared_through(Self::new(store, set, bus.clone())));
        editor.join_shared().await?;
        let follower = follow(bus.as_ref(), poll, Self::follower(editor.clone()));
        Ok((editor, follower))
    }

    /// The handler that keeps `editor` on the newest stored revision; run it with
    /// [`follow`](super::follow).
    pub fn follower(editor: Arc<PolicyEditor>) -> Arc<dyn ChangeHandler> {
        Arc::new(Follower { editor })
    }
}

struct Follower {
    editor: Arc<PolicyEditor>,
}

impl Follower {
    async fn refresh(&self) {
        match self.editor.follow_shared().await {
            Ok(Some(version)) => {
                tracing::info!(policy_version = %version, "policy set changed on another replica; now live here");
            }
            Ok(None) => {}
            // The set in force stays as it is.
            Err(error) => tracing::error!(%error, "shared policy set unreadable; set unchanged"),
        }
    }
}

#[async_trait]
impl ChangeHandler for Follower {
    async fn on_change(&self, change: &Change) {
        if matches!(change, Change::Policy | Change::Resync) {
            self.refresh().await;
        }
    }

    async fn on_poll(&self) {
        self.refresh().await;
    }
}
