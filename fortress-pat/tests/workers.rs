//! The real `fortress-pat serve` binary with `workers = 2`: connections are served on two
//! single-threaded runtimes sharing one port, each with its own upstream pool, keys and
//! budgets still apply, and Ctrl-C still drains and exits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::MasterKey;
use fortress_pat::mock::MockClaude;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

const UPSTREAM_KEY: &str = "sk-ant-workers-test-upstream";

/// A child process killed when the test ends (unless it already exited).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `fortress-pat` command opening the persistent vault with `master`.
fn pat(master: &MasterKey) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fortress-pat"));
    command
        .env("FORTRESS_LOG", "warn")
        .env("WORKERS_TEST_ANTHROPIC_KEY", UPSTREAM_KEY);
    master.pass_to(&mut command);
    command
}

/// POSTs `body` to `/v1/messages` on a fresh connection (so the kernel spreads requests
/// over both listeners); the status and the whole answer.
async fn post(base: &str, key: &str, body: String) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_serve_governed_requests_on_one_port_and_shut_down_cleanly() {
    let mock = MockClaude::start(UPSTREAM_KEY, 8).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pat.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "{data}"
workers = 2
[upstream]
base_url = "{base}"
[[credentials]]
workspace = "acme"
env = "WORKERS_TEST_ANTHROPIC_KEY"
[[policy.allow]]
principal = "anyone"
action = "*"
resource = "model:claude-sonnet*"
[[limits.budgets]]
scope = "user"
window = "day"
max_tokens = 100000000
"#,
            data = dir.path().join("data").display(),
            base = mock.base_url(),
        ),
    )
    .unwrap();
    let master = MasterKey::generate();
    let created = pat(&master)
        .args(["keys", "--config"])
        .arg(&config)
        .args(["create", "--workspace", "acme", "--subject", "alice"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key: ").map(str::to_owned))
        .expect("a key");

    let mut child = pat(&master)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let mut process = Proc(child);
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("fortress-pat never listened");
    let pid = process.0.id();
    // The workers start right after the address is printed: wait for both (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = thread_names(pid);
        if ["fortress-wk-0", "fortress-wk-1"]
            .iter()
            .all(|w| names.iter().any(|n| n == w))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no worker threads in {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for i in 0..16 {
        let stream = i % 4 == 0;
        let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
            "stream": stream, "messages": [{"role": "user", "content": format!("hello {i}")}]});
        let (status, text) = post(&base, &key, body.to_string()).await;
        assert_eq!(status, 200, "{text}");
        if stream {
            // The echo arrives in 8-character deltas; the stream must end properly.
            assert!(text.contains("text_delta"), "{text}");
            assert!(text.contains("event: message_stop"), "{text}");
        } else {
            assert!(text.contains(&format!("Echo: hello {i}")), "{text}");
        }
    }
    // A bad key is still refused on the workers.
    let (status, _) = post(&base, "fpk_nope", "{}".into()).await;
    assert_eq!(status, 401);
    // The upstream got the vault's key for every admitted request.
    let upstream_calls = mock
        .recorded()
        .iter()
        .filter(|r| r.path == "POST /v1/messages")
        .count();
    assert_eq!(upstream_calls, 16);

    // Ctrl-C: the workers stop accepting and drain, and the process exits by itself.
    let status = Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = process.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "fortress-pat did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
}
