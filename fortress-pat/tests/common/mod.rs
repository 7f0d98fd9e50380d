//! A PAT gateway built from a real configuration file and served on an ephemeral port,
//! with the mock Claude API upstream and the dashboard under `/admin`.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fortress_core::admin::directory::KeyRequest;
use fortress_core::admin::rbac::Role;
use fortress_pat::config::{Config, Gateway};
use fortress_pat::mock::MockClaude;
use fortress_pat::server::MountedAdmin;

/// The upstream Anthropic key: it must appear nowhere but in the vault and upstream.
pub const UPSTREAM_KEY: &str = "sk-ant-canary-41d8e02f9b";

/// Files of one deployment: keys and secrets kept outside the data directory.
pub struct Deployment {
    pub root: tempfile::TempDir,
    pub mock: MockClaude,
}

impl Deployment {
    pub async fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        MasterKey::generate().write_to(&root.path().join("secrets/master.key"));
        std::fs::write(root.path().join("secrets/anthropic.key"), UPSTREAM_KEY).unwrap();
        let mock = MockClaude::start(UPSTREAM_KEY, 4).await.unwrap();
        Self { root, mock }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn master_key(&self) -> PathBuf {
        self.root.path().join("secrets/master.key")
    }

    /// A configuration for workspace `acme` with `extra` TOML appended.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[upstream]\nbase_url = {:?}\n\
             [[credentials]]\nworkspace = \"acme\"\nfile = {:?}\n\
             [[policy.allow]]\nprincipal = \"anyone\"\naction = \"*\"\nresource = \"model:claude-*\"\n\
             [vault]\nmaster_key_file = {:?}\n[admin]\nworkspace = \"acme\"\n{extra}",
            self.data_dir(),
            self.mock.base_url(),
            self.root.path().join("secrets/anthropic.key"),
            self.master_key(),
        )
    }

    pub fn config(&self, extra: &str) -> Config {
        Config::parse(&self.config_text(extra)).unwrap()
    }
}

/// The persistent vault's master key of one test deployment, handed to the gateway in
/// either form it reads: a `master_key_file` or the `FORTRESS_MASTER_KEY` variable.
pub struct MasterKey {
    hex: String,
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let hex = fortress_core::vault::keys::RootKey::generate().to_hex();
        Self {
            hex: hex.as_str().to_owned(),
        }
    }

    /// Writes the key file at `path`, creating its folder; returns `path`.
    pub fn write_to(&self, path: &Path) -> PathBuf {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).unwrap();
        }
        std::fs::write(path, &self.hex).unwrap();
        path.to_path_buf()
    }

    /// Gives the key to a gateway process through `FORTRESS_MASTER_KEY`.
    pub fn pass_to<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env(fortress_core::vault::keys::MASTER_KEY_ENV, &self.hex)
    }
}

/// A gateway served over TCP.
pub struct Served {
    pub base: String,
    pub gateway_key: String,
    pub gateway: GatewayHandles,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a test inspects after the service moved into the server.
pub struct GatewayHandles {
    pub dashboard: fortress_pat::dashboard::PatDashboard,
    pub archive: Option<fortress_pat::archive::Archiver>,
}

impl Served {
    pub async fn start(config: &Config) -> Self {
        let Gateway {
            service,
            dashboard,
            archive,
        } = config.build_gateway().await.unwrap();
        let dashboard = dashboard.expect("the test configurations have [admin]");
        let state = dashboard.server.state();
        let (_, token) = state
            .keys
            .as_ref()
            .unwrap()
            .issue(KeyRequest {
                workspace: "acme".into(),
                subject: "alice".into(),
                app: false,
                name: String::new(),
                team: None,
                groups: vec![],
                scopes: vec![],
                expires_days: None,
            })
            .await
            .unwrap();
        let listener = fortress_pat::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mounted = MountedAdmin {
            prefix: "/admin".into(),
            server: dashboard.server.clone(),
        };
        let task = tokio::spawn(async move {
            fortress_pat::server::serve_with_admin(
                listener,
                service,
                Some(mounted),
                None,
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        Self {
            base,
            gateway_key: token.expose_str().unwrap().to_owned(),
            gateway: GatewayHandles { dashboard, archive },
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// An admin API token with `role`.
    pub async fn admin_token(&self, role: Role) -> String {
        let (_, token) = self
            .gateway
            .dashboard
            .server
            .state()
            .accounts
            .create_token(role.as_str(), role, "owner")
            .await
            .unwrap();
        token.expose_str().unwrap().to_owned()
    }

    /// Stops serving and closes the audit trail.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let durable = &self.gateway.dashboard.durable;
        fortress_core::audit::AuditSink::flush(durable.as_ref())
            .await
            .unwrap();
        durable.shutdown().await.unwrap();
    }
}

/// A Messages API request body.
pub fn message(text: &str, stream: bool) -> String {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
    .to_string()
}

/// Sends a call; returns the request id and the body bytes exactly as received.
pub async fn call(base: &str, key: &str, body: &str) -> (String, Vec<u8>) {
    let reply = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let id = reply.headers()["request-id"].to_str().unwrap().to_owned();
    (id, reply.bytes().await.unwrap().to_vec())
}

/// Polls `done` until it holds or `deadline` passes.
pub async fn eventually(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Every file under `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
