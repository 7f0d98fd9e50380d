//! A stdio upstream that takes its vault credential as an environment variable.
//!
//! A process's environment is fixed when it starts, so the child that serves a call must
//! have been started with that caller's credential: [`CredentialedStdio`] runs one
//! supervised child per credential slot (per workspace, or per user), started on the slot's
//! first call with the credential in the configured variable. The credential is resolved
//! from the vault on every call; a rotated credential (a new version) starts a new child and
//! stops the old one, and a revoked one refuses the call. Calls never reach a child started
//! with another slot's credential.
//!
//! [`describe`](Upstream::describe) without a caller answers from a child already running,
//! or else starts one *without* the credential just long enough to ask it (the program is
//! the same for every slot, so its description is too).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::credential::CredentialSource;
use super::stdio::{StdioConfig, StdioUpstream};
use super::{CallContext, ServerDescription, Upstream};
use crate::jsonrpc::{ErrorObject, Notification};

/// One child per credential slot, started with the credential in `variable`.
pub struct CredentialedStdio {
    name: String,
    config: StdioConfig,
    variable: String,
    source: CredentialSource,
    /// Children by slot, with the credential version each was started with.
    children: tokio::sync::Mutex<HashMap<String, (u32, Arc<StdioUpstream>)>>,
    broadcast: broadcast::Sender<Notification>,
}

impl CredentialedStdio {
    /// Runs `config`'s program under `name`, giving each slot's child its credential from
    /// `source` in the environment variable `variable`.
    pub fn new(
        name: impl Into<String>,
        config: StdioConfig,
        variable: impl Into<String>,
        source: CredentialSource,
    ) -> Self {
        Self {
            name: name.into(),
            config,
            variable: variable.into(),
            source,
            children: tokio::sync::Mutex::new(HashMap::new()),
            broadcast: broadcast::channel(256).0,
        }
    }

    /// How many children run now (one per slot that has called).
    pub async fn children(&self) -> usize {
        self.children.lock().await.len()
    }

    /// The child for the call `ctx` serves, started (or restarted with a rotated
    /// credential) if needed.
    async fn child(&self, ctx: &CallContext) -> Result<Arc<StdioUpstream>, ErrorObject> {
        let call = ctx.call.as_deref();
        let credential = self.source.resolve(call, ctx.notes.as_ref()).await?;
        // `resolve` succeeded, so there is a call.
        let slot = call
            .map(|c| self.source.slot(c).to_string())
            .unwrap_or_default();
        let mut children = self.children.lock().await;
        if let Some((version, child)) = children.get(&slot)
            && *version == credential.version()
        {
            return Ok(child.clone());
        }
        if credential.secret().expose_str().is_none() {
            return Err(ErrorObject::new(
                crate::seam::CREDENTIAL_UNAVAILABLE,
                format!(
                    "the credential for {} cannot be an environment variable",
                    self.name
                ),
            ));
        }
        let mut config = self.config.clone();
        config
            .secret_env
            .push((self.variable.clone(), credential.secret().clone()));
        let child = Arc::new(StdioUpstream::spawn_into(
            self.name.clone(),
            config,
            self.broadcast.clone(),
        ));
        // Replacing a child started with an older version stops it.
        children.insert(slot, (credential.version(), child.clone()));
        Ok(child)
    }
}

#[async_trait]
impl Upstream for CredentialedStdio {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<Value, ErrorObject> {
        let child = self.child(&ctx).await?;
        child.request(method, params, ctx).await
    }

    async fn describe(&self) -> Result<ServerDescription, ErrorObject> {
        let running = self.children.lock().await.values().next().cloned();
        match running {
            Some((_, child)) => child.describe().await,
            None => {
                // Started without any credential, asked, and stopped when dropped.
                let probe = StdioUpstream::spawn(self.name.clone(), self.config.clone());
                probe.describe().await
            }
        }
    }

    async fn describe_for(&self, ctx: &CallContext) -> Result<ServerDescription, ErrorObject> {
        self.child(ctx).await?.describe().await
    }

    fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.broadcast.subscribe()
    }
}
