//! Two PAT Fortress replicas sharing one fresh PostgreSQL database and one Redis channel:
//! keys, admin accounts and the audit trail are shared, and a kill switch engaged on one
//! replica's dashboard stops calls on the other within 1 s (its database poll is 60 s, so
//! the Redis announcement is what carries it).

use std::time::{Duration, Instant};

use fortress_core::admin::directory::KeyRequest;
use fortress_core::audit::query::{AuditFilter, AuditQuery};
use fortress_core::guard::KillTarget;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_pat::config::Config;

fn postgres_base() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_BASE")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

struct FreshDatabase(String);

impl FreshDatabase {
    async fn create() -> Self {
        let name = format!("fortress_pat_replicas_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&format!("{}/test", postgres_base()))
            .await
            .unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Self(name)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&format!("{}/test", postgres_base())).await
                {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_accounts_audit_and_kill_switches_are_shared_by_replicas() {
    let db = FreshDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(
        policy.join("main.cedar"),
        "permit (principal, action, resource is Model);",
    )
    .unwrap();
    let mock = fortress_pat::mock::MockClaude::start("sk-upstream", 8)
        .await
        .unwrap();
    let key_file = dir.path().join("anthropic.key");
    std::fs::write(&key_file, "sk-upstream").unwrap();
    // Both replicas open the shared vault with the same master key.
    let master_key = dir.path().join("master.key");
    std::fs::write(&master_key, "42".repeat(32)).unwrap();
    let text = format!(
        "data_dir = {data:?}\ndatabase_url = \"{base}/{name}\"\n\
         [cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nprefix = \"pat-{prefix}\"\npoll_ms = 60000\n\
         [upstream]\nbase_url = {mock:?}\n[[credentials]]\nworkspace = \"acme\"\nfile = {key_file:?}\n\
         [policy]\ncedar_dir = {policy:?}\n[admin]\nworkspace = \"acme\"\n\
         [vault]\nmaster_key_file = {master_key:?}\n",
        data = dir.path().join("data"),
        base = postgres_base(),
        name = db.0,
        prefix = uuid::Uuid::new_v4().simple(),
        mock = mock.base_url(),
    );
    let config = Config::parse(&text).unwrap();
    let a = config.build_gateway().await.unwrap();
    let b = config.build_gateway().await.unwrap();
    let (da, db_) = (a.dashboard.as_ref().unwrap(), b.dashboard.as_ref().unwrap());
    // One owner account for the deployment, created by the first replica.
    assert!(da.owner_password.is_some());
    assert!(db_.owner_password.is_none());

    let (state_a, state_b) = (da.server.state(), db_.server.state());
    let (_, token) = state_a
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
    let call = || {
        http::Request::post("/v1/messages")
            .header("x-api-key", token.expose_str().unwrap())
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap()
    };
    // A key issued on replica A works on replica B, and B's call is in A's audit view.
    let answer = b.service.handle(call(), None).await;
    assert_eq!(answer.status(), 200);
    http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap();
    let alice = AuditQuery::newest_first(10).with_filter(AuditFilter {
        subject: Some("alice".into()),
        ..AuditFilter::default()
    });
    let found = Instant::now();
    while state_a
        .store
        .as_ref()
        .unwrap()
        .query(&alice)
        .await
        .unwrap()
        .events
        .is_empty()
    {
        assert!(
            found.elapsed() < Duration::from_secs(5),
            "B's call not in A's trail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A's dashboard engages a switch; B refuses within 1 s.
    state_a
        .kill_switches
        .as_ref()
        .unwrap()
        .engage(
            KillTarget::user("acme", "alice"),
            &Subject::user("owner", WorkspaceId::new("acme")),
            "test",
        )
        .await
        .unwrap();
    let flipped = Instant::now();
    loop {
        let status = b.service.handle(call(), None).await.status();
        if status == 403 {
            break;
        }
        assert!(
            flipped.elapsed() < Duration::from_secs(1),
            "replica B still answers {status} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B's dashboard lists it too.
    assert_eq!(state_b.kill_switches.as_ref().unwrap().list().len(), 1);
    mock.stop();
    da.durable.shutdown().await.unwrap();
    db_.durable.shutdown().await.unwrap();
}

/// A `fortress-pat serve` process, killed when dropped.
struct Replica {
    child: std::process::Child,
    url: String,
    /// The owner's password, printed by the replica that created the owner.
    password: Option<String>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One deployment of real `fortress-pat serve` processes: one configuration (a fresh
/// database, a unique Redis channel and limit prefix), one mock Claude API behind them.
struct Deployment {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    mock: fortress_pat::mock::MockClaude,
    db: FreshDatabase,
    redis_prefix: String,
}

impl Drop for Deployment {
    /// Deletes the deployment's rate and budget keys from the shared Redis.
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379")
            && let Ok(mut c) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.redis_prefix))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

const PERMIT_MODELS: &str = "permit (principal, action, resource is Model);";
const FORBID_ALL: &str = "forbid (principal, action, resource);";

impl Deployment {
    /// `limits` is appended to the configuration (`[[limits.rates]]`, …).
    async fn new(limits: &str) -> Self {
        let db = FreshDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(&policy).unwrap();
        std::fs::write(policy.join("main.cedar"), PERMIT_MODELS).unwrap();
        let mock = fortress_pat::mock::MockClaude::start("sk-upstream", 8)
            .await
            .unwrap();
        let key_file = dir.path().join("anthropic.key");
        std::fs::write(&key_file, "sk-upstream").unwrap();
        let master_key = dir.path().join("master.key");
        std::fs::write(&master_key, "42".repeat(32)).unwrap();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let redis_prefix = format!("pat-limits-{unique}");
        // No `[ledger] database` and no `[vault] database_url`: both default to
        // `database_url`, so metering and the vault are shared too.
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\ndatabase_url = \"{base}/{name}\"\n\
             [cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nprefix = \"pat-{unique}\"\npoll_ms = 60000\n\
             [upstream]\nbase_url = {mock:?}\n[[credentials]]\nworkspace = \"acme\"\nfile = {key_file:?}\n\
             [policy]\ncedar_dir = {policy:?}\n[admin]\nworkspace = \"acme\"\n\
             [vault]\nmaster_key_file = {master_key:?}\n\
             [ledger]\nredis = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{redis_prefix}\"\nflush_interval_ms = 50\n\
             {limits}\n",
            data = dir.path().join("data"),
            base = postgres_base(),
            name = db.0,
            mock = mock.base_url(),
        );
        let config = dir.path().join("pat.toml");
        std::fs::write(&config, text).unwrap();
        Self {
            dir,
            config,
            mock,
            db,
            redis_prefix,
        }
    }

    fn create_key(&self, subject: &str) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fortress-pat"))
            .arg("keys")
            .arg("--config")
            .arg(&self.config)
            .args(["create", "--workspace", "acme", "--subject", subject])
            .output()
            .expect("run fortress-pat keys");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("key: "))
            .expect("a key line")
            .to_owned()
    }

    /// Starts a replica and waits until it serves (its dashboard line is printed last).
    fn start(&self) -> Replica {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fortress-pat"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn fortress-pat");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut url = None;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(base) = line.strip_prefix("listening on ") {
                    url = Some(base.trim().to_owned());
                }
                if let Some(owner) = line.strip_prefix("Dashboard owner: ") {
                    let password = owner
                        .split_once(" / password: ")
                        .map(|(_, p)| p.trim().to_owned());
                    let _ = tx.send((url.clone(), password));
                }
            }
        });
        let (url, password) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("fortress-pat never served");
        Replica {
            child,
            url: url.expect("a listening line before the dashboard's"),
            password,
        }
    }

    /// The ledger's view of the shared Redis counters (what every replica admits against).
    async fn shared_ledger(
        &self,
        limits: fortress_pat::limits::LimitsConfig,
    ) -> fortress_pat::limits::Ledger {
        let store = fortress_pat::limits::RedisLimitStore::connect(
            "redis://127.0.0.1:6379",
            &self.redis_prefix,
        )
        .await
        .unwrap();
        fortress_pat::limits::Ledger::with_backends(
            limits,
            std::sync::Arc::new(store),
            fortress_pat::limits::Metering::in_memory(),
        )
    }
}

/// A `POST /v1/messages` through `base`; returns the status.
async fn message(client: &reqwest::Client, base: &str, key: &str, text: &str) -> u16 {
    let reply = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(
            &serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": text}]}),
        )
        .send()
        .await
        .expect("the replica answers");
    let status = reply.status().as_u16();
    // The whole answer, so the call is settled and audited when it counts as done.
    reply.bytes().await.expect("the whole answer");
    status
}

/// A dashboard session on one replica.
struct Dashboard {
    client: reqwest::Client,
    api: String,
    cookie: String,
    csrf: String,
}

impl Dashboard {
    async fn login(base: &str, password: &str) -> Self {
        let client = reqwest::Client::new();
        let api = format!("{base}/admin/api");
        let reply = client
            .post(format!("{api}/login"))
            .json(&serde_json::json!({"username": "owner", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "owner login");
        let cookie = reply
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let session: serde_json::Value = reply.json().await.unwrap();
        Self {
            client,
            api,
            cookie,
            csrf: session["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    /// `PUT /api/policy?set=pat` with `main.cedar` replaced; returns the status.
    async fn apply_policy(&self, text: &str) -> u16 {
        self.client
            .put(format!("{}/policy?set=pat", self.api))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&serde_json::json!({"documents": [{"name": "main.cedar", "text": text}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Calls through `replica` until it answers `want`, for at most 1 s from `since`.
async fn answers_within_a_second(
    client: &reqwest::Client,
    replica: &Replica,
    key: &str,
    want: u16,
    since: Instant,
) {
    loop {
        let status = message(client, &replica.url, key, "hi").await;
        if status == want {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{} still answers {status} (not {want}) 1 s after the policy change",
            replica.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applied_on_one_replica_decides_calls_on_the_others_within_a_second() {
    let deployment = Deployment::new("").await;
    let a = deployment.start();
    let b = deployment.start();
    let key = deployment.create_key("alice");
    let client = reqwest::Client::new();
    assert_eq!(message(&client, &b.url, &key, "hi").await, 200);

    let dashboard =
        Dashboard::login(&a.url, a.password.as_deref().expect("A created the owner")).await;
    assert_eq!(dashboard.apply_policy(FORBID_ALL).await, 200);
    let applied = Instant::now();
    answers_within_a_second(&client, &b, &key, 403, applied).await;

    // A set that does not compile is refused and reaches nobody.
    assert_eq!(dashboard.apply_policy("permit (principal,").await, 422);
    assert_eq!(message(&client, &b.url, &key, "hi").await, 403);

    // A replica started now serves the stored set, not its directory's (which permits).
    let c = deployment.start();
    assert!(c.password.is_none());
    assert_eq!(message(&client, &c.url, &key, "hi").await, 403);

    assert_eq!(dashboard.apply_policy(PERMIT_MODELS).await, 200);
    let applied = Instant::now();
    answers_within_a_second(&client, &b, &key, 200, applied).await;
    answers_within_a_second(&client, &c, &key, 200, applied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_real_replicas() {
    const LIMIT: u64 = 10;
    let deployment = Deployment::new(&format!(
        "[[limits.rates]]\nscope = \"user\"\nrequests_per_minute = {LIMIT}\n"
    ))
    .await;
    let replicas = [deployment.start(), deployment.start(), deployment.start()];
    let key = deployment.create_key("alice");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let calls = (0..40).map(|i| {
        let (client, key) = (client.clone(), key.clone());
        let url = replicas[i % replicas.len()].url.clone();
        tokio::spawn(async move { message(&client, &url, &key, "hi").await })
    });
    let mut admitted = 0u64;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // The bucket holds one minute's requests (the burst) and refills LIMIT per minute.
    let refill = (started.elapsed().as_secs_f64() * LIMIT as f64 / 60.0).ceil() as u64;
    assert!(admitted >= LIMIT, "{admitted} admitted");
    assert!(
        admitted <= LIMIT + refill,
        "{admitted} admitted > limit {LIMIT} + refill {refill}"
    );
    // Exactly the admitted calls reached the Claude API.
    assert_eq!(deployment.mock.recorded().len() as u64, admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_with_zero_overshoot_under_100_concurrent_calls_over_real_replicas() {
    use fortress_pat::limits::{BudgetRule, LimitsConfig, Scope, Window};
    const BUDGET: u64 = 4_000;
    let deployment = Deployment::new(&format!(
        "[[limits.budgets]]\nscope = \"workspace\"\nwindow = \"day\"\nmax_tokens = {BUDGET}\n"
    ))
    .await;
    let replicas = [deployment.start(), deployment.start(), deployment.start()];
    let key = deployment.create_key("alice");
    let client = reqwest::Client::new();
    let calls = (0..100).map(|i| {
        let (client, key) = (client.clone(), key.clone());
        let url = replicas[i % replicas.len()].url.clone();
        tokio::spawn(async move {
            let text = format!("request {i} with some padding to be counted");
            message(&client, &url, &key, &text).await
        })
    });
    let (mut admitted, mut refused) = (0u64, 0u64);
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        admitted > 0 && refused > 0,
        "{admitted} admitted, {refused} refused"
    );
    assert_eq!(deployment.mock.recorded().len() as u64, admitted);
    // Every reservation settles (on a task after each answer), and what the replicas
    // used together stays within the one budget.
    let ledger = deployment
        .shared_ledger(LimitsConfig {
            budgets: vec![BudgetRule {
                scope: Scope::Workspace,
                window: Window::Day,
                max_tokens: Some(BUDGET),
                max_usd: None,
            }],
            ..LimitsConfig::default()
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let used = loop {
        let (used, reserved) = ledger
            .budget_tokens(Scope::Workspace, "acme", Window::Day)
            .await;
        if reserved == 0 {
            break used;
        }
        assert!(
            Instant::now() < deadline,
            "{reserved} tokens still reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        used > 0 && used <= BUDGET,
        "used {used} of the budget {BUDGET}"
    );
    // Metering went to the shared database by default, and counts every admitted call.
    let pool = sqlx::PgPool::connect(&format!("{}/{}", postgres_base(), deployment.db.0))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metered: Option<i64> =
            sqlx::query_scalar("SELECT SUM(requests)::BIGINT FROM fortress_pat_usage")
                .fetch_one(&pool)
                .await
                .unwrap();
        if metered == Some(admitted as i64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{metered:?} requests metered in PostgreSQL, {admitted} admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // So is the vault.
    let sealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fortress_vault_credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(sealed >= 1);
    pool.close().await;
}
