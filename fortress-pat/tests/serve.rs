//! `fortress-pat serve` as operators run it: credentials in the persistent envelope vault
//! survive a restart (whether set through the dashboard or the `vault` CLI), and with a
//! certificate the real binary answers over TLS 1.3 and refuses TLS 1.2; SIGTERM drains it
//! and flushes the archive and the metering before it exits.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{Deployment, Served, UPSTREAM_KEY, call, contains, files, message};
use fortress_core::admin::directory::KeyRequest;
use fortress_core::admin::rbac::Role;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::CredentialSlot;
use tokio::io::{AsyncBufReadExt, BufReader};

const BINARY: &str = env!("CARGO_BIN_EXE_fortress-pat");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_set_through_the_dashboard_or_the_cli_survive_a_restart() {
    let deployment = Deployment::new().await;
    let config = deployment.config("");

    // First run: the dashboard stores a connector credential.
    let served = Served::start(&config).await;
    let admin = served.admin_token(Role::Admin).await;
    let stored = reqwest::Client::new()
        .put(format!("{}/admin/api/credentials/github", served.base))
        .bearer_auth(admin)
        .json(&serde_json::json!({"value": "ghp-dashboard-canary-5521"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    served.stop().await;

    // Between runs: the CLI stores another workspace's Anthropic key (value on stdin).
    let mut cli = std::process::Command::new(BINARY)
        .args(["vault", "--data-dir"])
        .arg(deployment.data_dir())
        .arg("--master-key-file")
        .arg(deployment.master_key())
        .args(["put", "beta", "anthropic"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(UPSTREAM_KEY.as_bytes())
        .unwrap();
    let output = cli.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!contains(&output.stdout, UPSTREAM_KEY.as_bytes()));

    // Second run, same configuration: both are there, and the CLI's key serves `beta`.
    let served = Served::start(&config).await;
    let state = served.gateway.dashboard.server.state().clone();
    let vault = state.vault.as_ref().unwrap();
    let github = vault
        .resolve(&CredentialSlot::workspace(
            WorkspaceId::new("acme"),
            "github",
        ))
        .await
        .unwrap();
    assert_eq!(github.secret().expose(), b"ghp-dashboard-canary-5521");
    let (_, beta_key) = state
        .keys
        .as_ref()
        .unwrap()
        .issue(KeyRequest {
            workspace: "beta".into(),
            subject: "bob".into(),
            app: false,
            name: String::new(),
            team: None,
            groups: vec![],
            scopes: vec![],
            expires_days: None,
        })
        .await
        .unwrap();
    let (_, answer) = call(
        &served.base,
        beta_key.expose_str().unwrap(),
        &message("hello from beta", false),
    )
    .await;
    assert!(contains(&answer, b"\"type\":\"message\""));
    // The configured `[[credentials]]` value was not re-stored as a new version.
    let acme = vault.list(&WorkspaceId::new("acme")).await.unwrap();
    let anthropic = acme
        .iter()
        .find(|c| c.slot.connector == "anthropic")
        .unwrap();
    assert_eq!(anthropic.version, 1);
    served.stop().await;

    // The vault keeps only ciphertext: no value is readable in the data directory.
    for file in files(&deployment.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, b"ghp-dashboard-canary-5521"), "{file:?}");
        assert!(!contains(&bytes, UPSTREAM_KEY.as_bytes()), "{file:?}");
    }
}

#[test]
fn serve_without_a_master_key_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pat.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", dir.path().join("data")),
    )
    .unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("FORTRESS_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FORTRESS_MASTER_KEY"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_over_tls_1_3_and_refuses_tls_1_2() {
    let deployment = Deployment::new().await;
    let dir = deployment.root.path();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("secrets/cert.pem");
    let key_path = dir.join("secrets/key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config_path = dir.join("pat.toml");
    std::fs::write(
        &config_path,
        deployment.config_text(&format!(
            "[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n[archive]\n"
        )),
    )
    .unwrap();

    let mut child = tokio::process::Command::new(BINARY)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The listener is ephemeral: read its address from the `serving` log line.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = tokio::select! {
                line = out.next_line() => line,
                line = err.next_line() => line,
            }
            .unwrap()
            .expect("serve exited before listening");
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["message"] == "serving"
            {
                assert_eq!(value["tls"], true);
                return value["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("serve listens within 60 s");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok(Some(_)) = out.next_line() => {}
                Ok(Some(_)) = err.next_line() => {}
                else => break,
            }
        }
    });
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = |max: Option<reqwest::tls::Version>| {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap());
        if let Some(max) = max {
            builder = builder.max_tls_version(max);
        }
        builder.build().unwrap()
    };
    let url = format!("https://localhost:{port}/v1/models");
    let answer = client(Some(reqwest::tls::Version::TLS_1_3))
        .get(&url)
        .header("x-api-key", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let old = client(Some(reqwest::tls::Version::TLS_1_2))
        .get(&url)
        .send()
        .await;
    assert!(old.is_err(), "a TLS 1.2-only client must not connect");
    // Plain HTTP on the TLS port gets no HTTP answer either.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 401).unwrap_or(true));
    child.kill().await.unwrap();
}

/// Starts `fortress-pat serve`, returns the child and the address it listens on (the
/// child's output is drained in the background).
async fn spawn_serve(config: &std::path::Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = out
                .next_line()
                .await
                .unwrap()
                .expect("serve exited before listening");
            if let Some(base) = line.strip_prefix("listening on ") {
                return base.trim().to_owned();
            }
        }
    })
    .await
    .expect("serve listens within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    (child, base)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_flushes_the_archive_and_the_metering() {
    let deployment = Deployment::new().await;
    let dir = deployment.root.path();
    let config = dir.join("pat.toml");
    // Metering is written only by the flush at exit (the interval is an hour), on
    // per-connection workers whose runtimes end before the process does.
    std::fs::write(
        &config,
        format!(
            "workers = 2\n{}",
            deployment.config_text("[archive]\n[ledger]\nflush_interval_ms = 3600000\n")
        ),
    )
    .unwrap();
    let created = std::process::Command::new(BINARY)
        .args(["keys", "--config"])
        .arg(&config)
        .args(["create", "--workspace", "acme", "--subject", "alice"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("key: ").map(str::to_owned))
        .expect("the CLI prints the key");

    let (mut child, base) = spawn_serve(&config).await;
    let (request_id, answer) = call(&base, &key, &message("archived before exit", false)).await;
    assert!(contains(&answer, b"\"type\":\"message\""));

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");

    // The acknowledged call's archive object is on disk (the only call: a batch of one).
    let archived: Vec<_> = files(&deployment.data_dir().join("archive"))
        .into_iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(archived, [format!("{request_id}_{request_id}.batch")]);
    // Its usage row was written by the exit flush.
    let meter =
        fortress_pat::limits::SqlMeterStore::open_sqlite(&deployment.data_dir().join("usage.db"))
            .await
            .unwrap();
    let rows = fortress_pat::limits::MeterStore::rows(&meter, "0000-00-00", "9999-99-99")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0.user, "alice");
    assert_eq!(rows[0].1.requests, 1);
    assert!(rows[0].1.output_tokens > 0);
}
