//! The dashboard's view of PAT gateway keys: a [`KeyDirectory`] over the [`KeyStore`].
//!
//! Only the key store's public API is used (list, create, revoke), so the store can move
//! without this file changing beyond its imports.

use async_trait::async_trait;
use fortress_core::admin::directory::{DirectoryError, KeyDirectory, KeyRequest, KeySummary};
use fortress_core::admin::sources::SourceError;
use fortress_core::secret::Secret;
use fortress_core::subject::SubjectKind;

use crate::keys::{KeyRecord, KeyStore, KeyStoreError, NewKey};

/// PAT keys, managed from the dashboard.
#[derive(Clone)]
pub struct PatKeyDirectory {
    store: KeyStore,
}

impl PatKeyDirectory {
    /// Manages the keys of `store`.
    pub fn new(store: KeyStore) -> Self {
        Self { store }
    }
}

fn summary(record: KeyRecord) -> KeySummary {
    KeySummary {
        id: record.id,
        workspace: record.workspace,
        subject: record.subject_id,
        name: record.name,
        team: record.team,
        scopes: record.scopes,
        created_at: record.created_at,
        expires_at: record.expires_at,
        revoked_at: record.revoked_at,
    }
}

fn failed(e: KeyStoreError) -> DirectoryError {
    match e {
        KeyStoreError::NotFound(id) => DirectoryError::NotFound(format!("key {id}")),
        other => DirectoryError::Backend(SourceError(Box::new(other))),
    }
}

#[async_trait]
impl KeyDirectory for PatKeyDirectory {
    async fn list(&self, workspace: Option<&str>) -> Result<Vec<KeySummary>, DirectoryError> {
        let records = self.store.list(workspace).await.map_err(failed)?;
        Ok(records.into_iter().map(summary).collect())
    }

    async fn issue(&self, request: KeyRequest) -> Result<(KeySummary, Secret), DirectoryError> {
        let mut new = NewKey::user(&request.workspace, &request.subject);
        if request.app {
            new.kind = SubjectKind::App;
        }
        new.team = request.team;
        new.groups = request.groups;
        if !request.scopes.is_empty() {
            new.scopes = request.scopes;
        }
        new.expires_at = request
            .expires_days
            .map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d)));
        new.name = request.name;
        // `KeyStore::create`'s future is not `Send` (it holds a thread-local RNG across an
        // await), so it runs to completion on a blocking thread of the same runtime.
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::current();
        let issued = tokio::task::spawn_blocking(move || runtime.block_on(store.create(new)))
            .await
            .map_err(|e| DirectoryError::Backend(SourceError(Box::new(e))))?
            .map_err(failed)?;
        Ok((summary(issued.record), issued.token))
    }

    async fn revoke(&self, id: &str) -> Result<KeySummary, DirectoryError> {
        self.store.revoke(id).await.map_err(failed)?;
        self.store
            .list(None)
            .await
            .map_err(failed)?
            .into_iter()
            .find(|r| r.id == id)
            .map(summary)
            .ok_or_else(|| DirectoryError::NotFound(format!("key {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_issued_listed_and_revoked_through_the_directory() {
        let store = KeyStore::in_memory(crate::keys::FORMAT, Secret::from("pepper"))
            .await
            .unwrap();
        let directory = PatKeyDirectory::new(store.clone());
        let (info, token) = directory
            .issue(KeyRequest {
                workspace: "acme".into(),
                subject: "alice".into(),
                app: false,
                name: "laptop".into(),
                team: Some("data".into()),
                groups: vec![],
                scopes: vec![],
                expires_days: Some(30),
            })
            .await
            .unwrap();
        assert!(token.expose_str().unwrap().starts_with("fpk_"));
        assert!(
            store
                .authenticate(token.expose_str().unwrap(), None)
                .await
                .is_ok()
        );
        let listed = directory.list(Some("acme")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (&listed[0].id, &listed[0].subject),
            (&info.id, &info.subject)
        );
        assert_eq!(listed[0].team.as_deref(), Some("data"));
        assert!(directory.list(Some("other")).await.unwrap().is_empty());
        let revoked = directory.revoke(&info.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert!(
            store
                .authenticate(token.expose_str().unwrap(), None)
                .await
                .is_err()
        );
        assert!(matches!(
            directory.revoke("nope").await,
            Err(DirectoryError::NotFound(_))
        ));
    }
}
