//! Builds the governance of `fortress-mcp serve` from its configuration file: the default
//! core engines (Cedar policy, SQLite audit trail, envelope vault, default redactor, kill
//! switch and GCRA rate limits), tool pins, and client authentication.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fortress_core::audit::arguments::RedactedArguments;
use fortress_core::audit::keys::{Ed25519KeyProvider, KeyProvider, default_key_path};
use fortress_core::audit::settings::open_trail;
use fortress_core::audit::{AuditSink, DurableAuditSink};
use fortress_core::call::Call;
use fortress_core::guard::kill_file::KillFile;
use fortress_core::guard::{AdmissionGuard, GovernorStore, KillSwitch, RateLimitGuard};
use fortress_core::keys::{KeyFormat, KeyStore, load_or_create_pepper, load_or_create_secret};
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
use crate::config::{AuditSection, Config, ConfigError};
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

/// Opens the audit trail of `data_dir` with the `[audit]` settings (signed when `sign`).
pub async fn open_audit(
    data_dir: &Path,
    section: &AuditSection,
) -> Result<Arc<DurableAuditSink>, ConfigError> {
    std::fs::create_dir_all(data_dir).map_err(|e| invalid("data directory")(e.to_string()))?;
    let signer: Option<Arc<dyn KeyProvider>> = if section.sign {
        let signer = Ed25519KeyProvider::load_or_create(&default_key_path(data_dir))
            .map_err(|e| invalid("audit signing key")(e.to_string()))?;
        Some(Arc::new(signer))
    } else {
        None
    };
    Ok(open_trail(data_dir, signer, &section.settings())
        .await
        .map_err(|e| invalid("audit store")(e.to_string()))?
        .sink)
}

/// Opens the key store of `config`'s data directory.
pub async fn open_keys(config: &Config) -> Result<KeyStore, ConfigError> {
    let dir = &config.data.dir;
    let pepper = load_or_create_pepper(dir, &config.auth.pepper_env)
        .map_err(|e| invalid("key pepper")(e.to_string()))?;
    KeyStore::open(dir, KeyFormat::MCP, pepper)
        .await
        .map_err(|e| invalid("key store")(e.to_string()))
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
                database_url: section.database_url.clone(),
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

/// Opens the tool-pin store of `config` (`None` when pinning is off).
pub async fn open_pins(
    config: &Config,
    audit: Option<Arc<dyn AuditSink>>,
) -> Result<Option<PinStore>, ConfigError> {
    let Some(mode) = pin_mode(config)? else {
        return Ok(None);
    };
    std::fs::create_dir_all(&config.data.dir)
        .map_err(|e| invalid("data directory")(e.to_string()))?;
    let mut pins = PinStore::open(&config.data.dir, mode)
        .await
        .map_err(|e| invalid("tool pins")(e.to_string()))?;
    if let Some(audit) = audit {
        pins = pins.with_audit(audit);
    }
    Ok(Some(pins))
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
    audit: Arc<dyn AuditSink>,
) -> Result<Authenticator, ConfigError> {
    let section = &config.auth;
    let mut builder = Authenticator::builder().audit(audit);
    if section.api_keys {
        builder = builder.api_keys(open_keys(config).await?);
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
    let audit = open_audit(data_dir, &config.audit).await?;
    let audit_dyn: Arc<dyn AuditSink> = audit.clone();
    let mut tasks = Vec::new();

    let policy = Arc::new(
        CedarEngine::new(&policy_documents(config)?)
            .map_err(|e| invalid("policy")(e.to_string()))?,
    );
    if let Some(dir) = &config.policy.dir {
        let interval = Duration::from_secs(config.policy.reload_secs.unwrap_or(2).max(1));
        tasks.push(PolicyWatcher::new(policy.clone(), dir).spawn(interval));
    }

    let kill_switch = Arc::new(KillSwitch::new(audit_dyn.clone()));
    let kill_file = kill_file(config);
    // Switches engaged before this start apply from the first request.
    if let Err(error) = kill_file.sync(&kill_switch).await {
        return Err(invalid("kill-switch file")(error.to_string()));
    }
    tasks.push(kill_file.follow(
        kill_switch.clone(),
        Duration::from_millis(config.kill_switch.poll_ms.max(50)),
    ));
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
        .vault(vault(config, audit_dyn.clone()).await?)
        // Upstream MCP servers hold their own credentials; REST connectors name theirs.
        .credential_slots(Arc::new(|_: &Call| None::<CredentialSlot>))
        .responder(Arc::new(JsonRpcResponder))
        .build()
        .map_err(|e| invalid("governance")(e.to_string()))?;
    let pins = open_pins(config, Some(audit_dyn.clone())).await?;
    Ok(Assembled {
        governance: Governance::new(stack, policy, pins),
        authenticator: authenticator(config, audit_dyn).await?,
        audit,
        kill_switch,
        tasks,
    })
}
