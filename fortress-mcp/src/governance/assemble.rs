//! Builds the governance of `fortress-mcp serve` from its configuration file: the default
//! core engines (Cedar policy, audit trail, envelope vault, default redactor, kill switch
//! and GCRA rate limits), tool pins, and client authentication.
//!
//! State lives in SQLite files in the data directory, or — with `[data] database_url` —
//! in the PostgreSQL database every replica shares; `[cluster] redis_url` adds the bus
//! that announces changes so they reach the other replicas at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fortress_core::admin::policy_editor::PolicyEditor;
use fortress_core::audit::arguments::RedactedArguments;
use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, default_key_path};
use fortress_core::audit::settings::{open_shared_trail, open_trail};
use fortress_core::audit::{AuditSink, DurableAuditSink};
use fortress_core::call::Call;
use fortress_core::cluster::policies::SharedPolicies;
use fortress_core::cluster::revoked::RevokedTokens;
use fortress_core::cluster::switches::SharedSwitches;
use fortress_core::cluster::token::TokenSealer;
use fortress_core::cluster::{ClusterBus, follow};
use fortress_core::db::{Database, is_postgres_url};
use fortress_core::guard::kill_file::KillFile;
use fortress_core::guard::{AdmissionGuard, GovernorStore, KillSwitch, RateLimitGuard};
use fortress_core::keys::{KeyFormat, KeyStore, load_or_create_pepper, load_or_create_secret};
use fortress_core::layer::credential::SlotSelector;
use fortress_core::policy::CedarEngine;
use fortress_core::policy::documents::{DocumentKind, PolicyDocuments};
use fortress_core::policy::watch::PolicyWatcher;
use fortress_core::redact::{DefaultRedactor, PatternRedactor, RedactionConfig, Redactor};
use fortress_core::stack::GovernanceStack;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::cli::VaultStorageArgs;
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};

use super::{Governance, McpResultRedaction};
use crate::auth::{Authenticator, OAuthVerifier, ResourceMetadata};
use crate::config::{Config, ConfigError};
use crate::pinning::{PinMode, PinStore};
use crate::seam::JsonRpcResponder;

/// Everything `serve` runs with.
pub struct Assembled {
    /// The governance of every message.
    pub governance: Governance,
    /// Client authentication.
    pub authenticator: Authenticator,
    /// The audit sink (flushed and closed on shutdown).
    pub audit: Arc<DurableAuditSink>,
    /// The kill-switch registry.
    pub kill_switch: Arc<KillSwitch>,
    /// The credential vault (upstreams with a `credential` resolve from it).
    pub vault: Arc<dyn Vault>,
    /// Seals legacy session ids so any replica can resume them (`None`: one node).
    pub session_sealer: Option<TokenSealer>,
    /// Legacy session ids deleted on any replica (`None`: one node).
    pub revoked_sessions: Option<RevokedTokens>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Assembled {
    /// Stops the background tasks and makes every audit event durable.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(error) = self.audit.flush().await {
            tracing::error!(%error, "audit events could not be flushed at shutdown");
        }
        if let Err(error) = self.audit.shutdown().await {
            tracing::error!(%error, "audit writer did not stop cleanly");
        }
    }
}

fn invalid(what: &str) -> impl Fn(String) -> ConfigError + '_ {
    move |e| ConfigError::Invalid(format!("{what}: {e}"))
}

/// What replicas share, when the configuration names it: the database (`None`: SQLite
/// files in the data directory) and the change bus.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// The PostgreSQL database of `[data] database_url`.
    pub database: Option<Database>,
    /// The Redis bus of `[cluster] redis_url`.
    pub bus: Option<ClusterBus>,
}

/// Opens what `config` says replicas share. Must run inside a tokio runtime.
pub async fn open_shared(config: &Config) -> Result<Shared, ConfigError> {
    let database = match &config.data.database_url {
        Some(url) if is_postgres_url(url) => Some(
            Database::connect(url)
                .await
                .map_err(|e| invalid("data.database_url")(e.to_string()))?,
        ),
        Some(_) => {
            return Err(ConfigError::Invalid(
                "data.database_url: expected a postgres:// URL".into(),
            ));
        }
        None => None,
    };
    let bus = match &config.cluster.redis_url {
        Some(url) => Some(
            ClusterBus::connect(url, &config.cluster.prefix)
                .map_err(|e| invalid("cluster.redis_url")(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Shared { database, bus })
}

/// Opens the audit trail with the `[audit]` settings (signed when `sign`): in the shared
/// database, else in the data directory. Replicas sharing a database must share the
/// signing key file.
pub async fn open_audit(
    config: &Config,
    shared: &Shared,
) -> Result<Arc<DurableAuditSink>, ConfigError> {
    let data_dir = &config.data.dir;
    let section = &config.audit;
    std::fs::create_dir_all(data_dir).map_err(|e| invalid("data directory")(e.to_string()))?;
    let signer: Option<Arc<dyn KeyProvider>> = if section.sign {
        let signer = Ed25519KeyProvider::load_or_create(&default_key_path(data_dir))
            .map_err(|e| invalid("audit signing key")(e.to_string()))?;
        Some(Arc::new(signer))
    } else {
        None
    };
    let settings = section.settings();
    let trail = match shared.database.as_ref().and_then(Database::postgres_pool) {
        Some(pool) => open_shared_trail(pool.clone(), signer, &settings).await,
        None => open_trail(data_dir, signer, &settings).await,
    };
    Ok(trail
        .map_err(|e| invalid("audit store")(e.to_string()))?
        .sink)
}

/// Opens the key store: in the shared database, else in the data directory.
pub async fn open_keys(config: &Config, shared: &Shared) -> Result<KeyStore, ConfigError> {
    let dir = &config.data.dir;
    let pepper = load_or_create_pepper(dir, &config.auth.pepper_env)
        .map_err(|e| invalid("key pepper")(e.to_string()))?;
    let store = match &shared.database {
        Some(db) => KeyStore::with_database(db.clone(), KeyFormat::MCP, pepper).await,
        None => KeyStore::open(dir, KeyFormat::MCP, pepper).await,
    }
    .map_err(|e| invalid("key store")(e.to_string()))?;
    Ok(match &shared.bus {
        Some(bus) => store.with_bus(bus.clone()),
        None => store,
    })
}

/// The sealer of legacy session ids, when replicas share a database (a session started
/// on one replica then continues on any other). `None` for a single node.
pub fn session_sealer(
    config: &Config,
    shared: &Shared,
) -> Result<Option<TokenSealer>, ConfigError> {
    if shared.database.is_none() {
        return Ok(None);
    }
    let key = load_or_create_secret(
        &config.data.dir.join("session.key"),
        &config.cluster.session_key_env,
    )
    .map_err(|e| invalid("session key")(e.to_string()))?;
    Ok(Some(crate::server::session_sealer(key.expose())))
}

/// The kill switches shared through the database, when there is one.
pub async fn open_shared_switches(shared: &Shared) -> Result<Option<SharedSwitches>, ConfigError> {
    match &shared.database {
        Some(db) => Ok(Some(
            SharedSwitches::open(db.clone(), shared.bus.clone())
                .await
                .map_err(|e| invalid("kill switches")(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

/// With a shared database, the policy set lives there: the newest stored set is served
/// (the configured documents seed an empty store), a change found in this replica's
/// policy directory is stored and announced, and a follower keeps this replica on the
/// newest stored set. Returns the editor the directory watcher applies changes through.
async fn shared_policy(
    config: &Config,
    shared: &Shared,
    engine: &Arc<CedarEngine>,
    documents: PolicyDocuments,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<Arc<PolicyEditor>>, ConfigError> {
    let Some(db) = &shared.database else {
        return Ok(None);
    };
    let (editor, follower) = SharedPolicies::join(
        PolicyEditor::new(engine.clone(), documents),
        db.clone(),
        crate::MCP_POLICY_SET,
        shared.bus.clone(),
        poll_interval(config),
    )
    .await
    .map_err(|e| invalid("policy store")(e.to_string()))?;
    tasks.push(follower);
    Ok(Some(editor))
}

/// The policy documents of `[policy]` (none: deny everything).
fn policy_documents(config: &Config) -> Result<PolicyDocuments, ConfigError> {
    let section = &config.policy;
    let mut docs = match &section.dir {
        Some(dir) => PolicyDocuments::from_dir(dir)
            .map_err(|e| invalid("policy directory")(e.to_string()))?,
        None => PolicyDocuments::new(),
    };
    for file in &section.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| invalid(&file.display().to_string())(e.to_string()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if name.ends_with(".cedarschema") {
            DocumentKind::Schema
        } else if name.ends_with(".toml") {
            DocumentKind::Limits
        } else {
            DocumentKind::Policies
        };
        docs = docs.with(kind, name, text);
    }
    Ok(docs)
}

fn redactor(config: &Config) -> Result<Arc<dyn Redactor>, ConfigError> {
    if !config.redaction.enabled {
        // Redaction off: a redactor with no patterns changes nothing.
        return Ok(Arc::new(PatternRedactor::builder().build()));
    }
    let rules = match &config.redaction.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("redaction rules")(e.to_string()))?;
            toml::from_str::<RedactionConfig>(&text)
                .map_err(|e| invalid("redaction rules")(e.to_string()))?
        }
        None => RedactionConfig::default(),
    };
    let redactor = DefaultRedactor::builder()
        .config(rules)
        .build()
        .map_err(|e| invalid("redaction rules")(e.to_string()))?;
    Ok(Arc::new(redactor))
}

async fn vault(config: &Config, audit: Arc<dyn AuditSink>) -> Result<Arc<dyn Vault>, ConfigError> {
    match &config.vault {
        Some(section) => {
            let args = VaultStorageArgs {
                data_dir: config.data.dir.clone(),
                database_url: section
                    .database_url
                    .clone()
                    .or_else(|| config.data.database_url.clone()),
                master_key_file: section.master_key_file.clone(),
            };
            let vault = args
                .open(audit)
                .await
                .map_err(|e| invalid("vault")(e.to_string()))?;
            Ok(Arc::new(vault))
        }
        None => Ok(Arc::new(MemoryVault::new())),
    }
}

fn pin_mode(config: &Config) -> Result<Option<PinMode>, ConfigError> {
    match config.pinning.mode.as_str() {
        "off" => Ok(None),
        "require_approval" => Ok(Some(PinMode::RequireApproval)),
        "trust_on_first_use" => Ok(Some(PinMode::TrustOnFirstUse)),
        other => Err(ConfigError::Invalid(format!(
            "pinning.mode {other:?}: expected require_approval, trust_on_first_use or off"
        ))),
    }
}

/// Opens the tool-pin store of `config` (`None` when pinning is off): in the shared
/// database, else in the data directory.
pub async fn open_pins(
    config: &Config,
    shared: &Shared,
    audit: Option<Arc<dyn AuditSink>>,
) -> Result<Option<PinStore>, ConfigError> {
    let Some(mode) = pin_mode(config)? else {
        return Ok(None);
    };
    std::fs::create_dir_all(&config.data.dir)
        .map_err(|e| invalid("data directory")(e.to_string()))?;
    let mut pins = match &shared.database {
        Some(db) => PinStore::with_database(db.clone(), mode).await,
        None => PinStore::open(&config.data.dir, mode).await,
    }
    .map_err(|e| invalid("tool pins")(e.to_string()))?;
    if let Some(audit) = audit {
        pins = pins.with_audit(audit);
    }
    Ok(Some(pins))
}

/// How often replicas re-read shared state (the bound on propagation without Redis).
fn poll_interval(config: &Config) -> Duration {
    Duration::from_millis(config.cluster.poll_ms.max(50))
}

/// The kill-switch file of `config`.
pub fn kill_file(config: &Config) -> KillFile {
    KillFile::new(
        config
            .kill_switch
            .file
            .clone()
            .unwrap_or_else(|| config.data.dir.join("kill-switches.json")),
    )
}

async fn authenticator(
    config: &Config,
    shared: &Shared,
    audit: Arc<dyn AuditSink>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Authenticator, ConfigError> {
    let section = &config.auth;
    let mut builder = Authenticator::builder().audit(audit);
    if section.api_keys {
        let keys = open_keys(config, shared).await?;
        if let Some(bus) = &shared.bus {
            tasks.push(follow(Some(bus), poll_interval(config), keys.follower()));
        }
        builder = builder.api_keys(keys);
    }
    if let Some(oauth) = &section.oauth {
        let verifier =
            OAuthVerifier::new(oauth.clone()).map_err(|e| invalid("auth.oauth")(e.to_string()))?;
        builder = builder.oauth(verifier);
    }
    if section.anonymous {
        let subject = Subject::user(
            section.anonymous_subject.clone(),
            WorkspaceId::new(section.anonymous_workspace.clone()),
        )
        .with_groups(section.anonymous_groups.clone());
        builder = builder.anonymous(subject);
    }
    Ok(builder
        .metadata(ResourceMetadata {
            resource: section.resource.clone().unwrap_or_default(),
            authorization_servers: Vec::new(),
            scopes_supported: section.scopes_supported.clone(),
            public_base: section.public_url.clone(),
        })
        .build())
}

/// Builds the governance and authentication `config` describes. Must run inside a tokio
/// runtime (it starts the audit writer, the policy watcher and the kill-switch follower).
pub async fn assemble(config: &Config) -> Result<Assembled, ConfigError> {
    let data_dir = &config.data.dir;
    let shared = open_shared(config).await?;
    let audit = open_audit(config, &shared).await?;
    let audit_dyn: Arc<dyn AuditSink> = audit.clone();
    let mut tasks = Vec::new();

    let documents = policy_documents(config)?;
    let policy =
        Arc::new(CedarEngine::new(&documents).map_err(|e| invalid("policy")(e.to_string()))?);
    let shared_policy = shared_policy(config, &shared, &policy, documents, &mut tasks).await?;
    if let Some(dir) = &config.policy.dir {
        let interval = Duration::from_secs(config.policy.reload_secs.unwrap_or(2).max(1));
        let watcher = PolicyWatcher::new(policy.clone(), dir);
        let watcher = match shared_policy {
            Some(editor) => watcher.through(editor),
            None => watcher,
        };
        tasks.push(watcher.spawn(interval));
    }

    let kill_switch = Arc::new(KillSwitch::new(audit_dyn.clone()));
    // Switches engaged before this start apply from the first request.
    match open_shared_switches(&shared).await? {
        Some(switches) => {
            switches
                .sync(&kill_switch)
                .await
                .map_err(|e| invalid("kill switches")(e.to_string()))?;
            tasks.push(follow(
                shared.bus.as_ref(),
                poll_interval(config),
                switches.follower(kill_switch.clone()),
            ));
        }
        None => {
            let kill_file = kill_file(config);
            if let Err(error) = kill_file.sync(&kill_switch).await {
                return Err(invalid("kill-switch file")(error.to_string()));
            }
            tasks.push(kill_file.follow(
                kill_switch.clone(),
                Duration::from_millis(config.kill_switch.poll_ms.max(50)),
            ));
        }
    }
    let limits = RateLimitGuard::new(policy.clone(), Arc::new(GovernorStore::new()));
    let guard = AdmissionGuard::new(kill_switch.clone(), Arc::new(limits));

    let argument_key = load_or_create_secret(
        &data_dir.join("audit-argument.key"),
        config
            .audit
            .argument_key_env
            .as_deref()
            .unwrap_or("FORTRESS_MCP_AUDIT_ARGUMENT_KEY"),
    )
    .map_err(|e| invalid("audit argument key")(e.to_string()))?;

    let vault = vault(config, audit_dyn.clone()).await?;
    let stack = GovernanceStack::builder()
        .audit(audit_dyn.clone())
        .audit_argument_key(argument_key)
        .audit_redacted_arguments(RedactedArguments::new(
            config.audit.redacted_arguments.iter().cloned(),
        ))
        .guard(Arc::new(guard))
        .policy(policy.clone())
        .show_denial_reasons(config.policy.show_reasons)
        .redactor(redactor(config)?)
        .body_redaction(Arc::new(McpResultRedaction::default()))
        .vault(vault.clone())
        .credential_slots(rest_credential_slots(config))
        .responder(Arc::new(JsonRpcResponder))
        .build()
        .map_err(|e| invalid("governance")(e.to_string()))?;
    let pins = open_pins(config, &shared, Some(audit_dyn.clone())).await?;
    let authenticator = authenticator(config, &shared, audit_dyn, &mut tasks).await?;
    let revoked_sessions = match &shared.database {
        Some(db) => {
            let revoked = RevokedTokens::open(
                db.clone(),
                shared.bus.clone(),
                crate::server::SEALED_SESSION_LIFETIME,
            )
            .await
            .map_err(|e| invalid("revoked sessions")(e.to_string()))?;
            tasks.push(follow(
                shared.bus.as_ref(),
                poll_interval(config),
                revoked.follower(),
            ));
            Some(revoked)
        }
        None => None,
    };
    Ok(Assembled {
        governance: Governance::new(stack, policy, pins),
        authenticator,
        audit,
        kill_switch,
        vault,
        session_sealer: session_sealer(config, &shared)?,
        revoked_sessions,
        tasks,
    })
}

/// The credential slot of each call to a REST connector (the stack injects it). MCP
/// upstreams with a credential resolve their own, for lists too
/// ([`crate::upstream::credential`]); the rest need none.
fn rest_credential_slots(config: &Config) -> Arc<dyn SlotSelector> {
    let per_user: HashMap<String, bool> = config
        .upstream
        .iter()
        .filter(|u| u.kind.is_some())
        .filter_map(|u| Some((u.name.clone(), u.credential_per_user()?)))
        .collect();
    Arc::new(move |call: &Call| {
        let connector = call.connector()?;
        let workspace = call.subject.workspace.clone();
        Some(match per_user.get(connector)? {
            true => CredentialSlot::user(workspace, connector, call.subject.id.clone()),
            false => CredentialSlot::workspace(workspace, connector),
        })
    })
}
