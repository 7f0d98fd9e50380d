//! The ledger over its real backends: metering in SQLite and PostgreSQL (the same test
//! bodies against both), rate limits and budgets in Redis shared by two gateway
//! instances, and Message Batches metered from their results.
//!
//! PostgreSQL: `FORTRESS_TEST_POSTGRES_URL` or `postgres://postgres@127.0.0.1:5432/test`,
//! a schema of its own per test. Redis: `FORTRESS_TEST_REDIS_URL` or
//! `redis://127.0.0.1:6379`, a key prefix of its own per test.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{Datelike, TimeZone, Utc};
use fortress_core::admin::sources::UsageSource;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::body;
use fortress_core::call::{Action, Call, Resource};
use fortress_core::policy::{AllowListPolicy, AllowRule};
use fortress_core::redact::PatternRedactor;
use fortress_core::secret::Secret;
use fortress_core::subject::{Subject, WorkspaceId};
use fortress_core::vault::{CredentialSlot, MemoryVault, Vault};
use fortress_pat::api::Usage;
use fortress_pat::dashboard::LedgerUsage;
use fortress_pat::keys::{KeyStore, NewKey};
use fortress_pat::limits::{
    BODY_BYTES_ATTRIBUTE, BudgetRule, KEY_ATTRIBUTE, Ledger, LimitStore, LimitsConfig,
    MemoryLimitStore, MeterStore, Metering, RateRule, RedisLimitStore, Scope, SqlMeterStore,
    Window,
};
use fortress_pat::mock::MockClaude;
use fortress_pat::service::{ANTHROPIC_CONNECTOR, PatParts, PatService};
use fortress_pat::upstream::{Upstream, UpstreamConfig};
use http_body_util::Full;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

const UPSTREAM_KEY: &str = "sk-ant-upstream-ledger";

fn postgres_url() -> String {
    std::env::var("FORTRESS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("FORTRESS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh Redis key prefix, its keys deleted on drop.
struct RedisPrefix(String);

impl RedisPrefix {
    fn new() -> Self {
        Self(format!("fortress-test:{}", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut c) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

/// Where a metering test keeps its database.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    async fn new(postgres: bool) -> Self {
        if postgres {
            let schema = format!("t_ledger_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            Db::Postgres(schema)
        } else {
            Db::Sqlite(tempfile::tempdir().unwrap())
        }
    }

    /// Opens the store (running the migrations again, as every start does).
    async fn open(&self) -> SqlMeterStore {
        match self {
            Db::Sqlite(dir) => SqlMeterStore::open_sqlite(&dir.path().join("usage.db"))
                .await
                .unwrap(),
            Db::Postgres(schema) => {
                let options = PgConnectOptions::from_str(&postgres_url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                SqlMeterStore::connect_postgres_with(options).await.unwrap()
            }
        }
    }

    async fn drop_schema(&self) {
        if let Db::Postgres(schema) = self {
            let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}

fn message_call(user: &str, max_tokens: u64) -> Call {
    let mut call = Call::new(
        Subject::user(user, WorkspaceId::new("acme")),
        Action::CreateMessage,
        Resource::model("claude-x"),
    );
    call.attributes.max_tokens = Some(max_tokens);
    call.attributes.model = Some("claude-x".into());
    call.attributes
        .extra
        .insert(BODY_BYTES_ATTRIBUTE.into(), 100.into());
    call.attributes
        .extra
        .insert(KEY_ATTRIBUTE.into(), format!("key-{user}").into());
    call
}

fn budget_config() -> LimitsConfig {
    LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Month,
            max_tokens: Some(10_000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    }
}

fn sql_ledger(store: SqlMeterStore) -> Ledger {
    let meter: Arc<dyn MeterStore> = Arc::new(store);
    Ledger::with_backends(
        budget_config(),
        Arc::new(MemoryLimitStore::new()),
        Metering::new(meter, Duration::from_secs(3600)),
    )
}

/// Two calls metered and flushed, a restart, and the same figures read back: budgets
/// month to date, the metering rows, the Billing page's usage lines, batch claims.
async fn metering_survives_a_restart(postgres: bool) {
    let db = Db::new(postgres).await;
    let ledger = sql_ledger(db.open().await);
    for (user, input, output) in [("alice", 120, 80), ("alice", 30, 20), ("bob", 5, 5)] {
        let call = message_call(user, 500);
        ledger.admit(&call).await.unwrap().unwrap();
        let usage = Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: 10,
            ..Usage::default()
        };
        ledger.settle(call.request_id.as_str(), Some(usage)).await;
    }
    // Reads before the flush already see the pending rows.
    let before = ledger.meter().await.unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(ledger.meter().await.unwrap(), before);
    assert!(
        ledger
            .metering()
            .store()
            .claim_batch("acme/b1")
            .await
            .unwrap()
    );
    drop(ledger);

    let ledger = Arc::new(sql_ledger(db.open().await));
    ledger.restore().await.unwrap();
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Month)
            .await,
        (270, 0),
        "month-to-date usage restored"
    );
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "bob", Window::Month)
            .await,
        (20, 0)
    );
    let rows = ledger.meter().await.unwrap();
    assert_eq!(rows, before);
    let alice = rows.iter().find(|(k, _)| k.user == "alice").unwrap();
    assert_eq!(alice.1.requests, 2);
    assert_eq!(alice.1.input_tokens, 150);
    assert_eq!(alice.1.cache_read_input_tokens, 20);
    assert_eq!(alice.0.key, "key-alice");
    // Billing reads the same figures for this month.
    let now = Utc::now();
    let from = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let lines = LedgerUsage(ledger.clone())
        .usage(from, now + chrono::Duration::days(1))
        .await
        .unwrap();
    let alice_line = lines.iter().find(|l| l.user == "alice").unwrap();
    assert_eq!(alice_line.output_tokens, 100);
    assert_eq!(
        alice_line.cost.micros(),
        i64::try_from(alice.1.cost_micros).unwrap()
    );
    assert!(alice.1.cost_micros > 0);
    // A batch is claimed once, across restarts too; its owner is remembered.
    let owner = fortress_pat::limits::BatchOwner {
        principal: fortress_pat::limits::Principal {
            workspace: "acme".into(),
            key: "key-alice".into(),
            user: "alice".into(),
            team: "eng".into(),
        },
        request_id: "req_1".into(),
        budgets: vec![fortress_pat::limits::BudgetKey {
            scope: Scope::User,
            id: "alice".into(),
            window: Window::Month,
            period: "2026-11".into(),
        }],
    };
    ledger
        .metering()
        .store()
        .set_batch_owner("acme/b9", &owner)
        .await
        .unwrap();
    let store = db.open().await;
    assert_eq!(store.batch_owner("acme/b9").await.unwrap(), Some(owner));
    assert_eq!(store.batch_owner("acme/b8").await.unwrap(), None);
    assert!(
        !ledger
            .metering()
            .store()
            .claim_batch("acme/b1")
            .await
            .unwrap()
    );
    assert!(
        ledger
            .metering()
            .store()
            .claim_batch("acme/b2")
            .await
            .unwrap()
    );
    drop(ledger);
    db.drop_schema().await;
}

#[tokio::test]
async fn sqlite_metering_survives_a_restart() {
    metering_survives_a_restart(false).await;
}

#[tokio::test]
async fn postgres_metering_survives_a_restart() {
    metering_survives_a_restart(true).await;
}

/// Concurrent flushes from two replicas into one database add up.
async fn concurrent_writers_add_up(postgres: bool) {
    let db = Db::new(postgres).await;
    let a = sql_ledger(db.open().await);
    let b = sql_ledger(db.open().await);
    let mut tasks = Vec::new();
    for ledger in [Arc::new(a), Arc::new(b)] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let call = message_call("carol", 10);
                ledger.admit(&call).await.unwrap().unwrap();
                let usage = Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    ..Usage::default()
                };
                ledger.settle(call.request_id.as_str(), Some(usage)).await;
                ledger.flush().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reader = db.open().await;
    let rows = reader.rows("0000-00-00", "9999-99-99").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1.requests, 40);
    assert_eq!(rows[0].1.output_tokens, 80);
    db.drop_schema().await;
}

#[tokio::test]
async fn sqlite_concurrent_writers_add_up() {
    concurrent_writers_add_up(false).await;
}

#[tokio::test]
async fn postgres_concurrent_writers_add_up() {
    concurrent_writers_add_up(true).await;
}

#[tokio::test]
async fn a_non_postgres_database_url_is_refused() {
    assert!(SqlMeterStore::connect("mysql://x").await.is_err());
    assert!(
        RedisLimitStore::connect("redis://127.0.0.1:1", "x")
            .await
            .is_err()
    );
}

// ---- gateways ------------------------------------------------------------------------

struct Gateways {
    services: Vec<PatService>,
    ledgers: Vec<Arc<Ledger>>,
    key: String,
    /// Bob's key, in the same workspace as Alice's.
    bob_key: String,
    _mock: MockClaude,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Memory,
    Redis,
}

/// `n` gateway instances sharing keys and (for Redis) one limit prefix.
async fn gateways(n: usize, limits: LimitsConfig, backend: Backend, prefix: &str) -> Gateways {
    let mock = MockClaude::start(UPSTREAM_KEY, 8).await.unwrap();
    let keys = KeyStore::in_memory(fortress_pat::keys::FORMAT, Secret::from("pepper"))
        .await
        .unwrap();
    let issued = keys.create(NewKey::user("acme", "alice")).await.unwrap();
    let bob = keys.create(NewKey::user("acme", "bob")).await.unwrap();
    let mut services = Vec::new();
    let mut ledgers = Vec::new();
    for _ in 0..n {
        let vault = MemoryVault::new();
        let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), ANTHROPIC_CONNECTOR);
        vault.put(&slot, Secret::from(UPSTREAM_KEY)).await.unwrap();
        let store: Arc<dyn LimitStore> = match backend {
            Backend::Memory => Arc::new(MemoryLimitStore::new()),
            Backend::Redis => Arc::new(
                RedisLimitStore::connect(&redis_url(), prefix)
                    .await
                    .expect("Redis on 127.0.0.1:6379"),
            ),
        };
        let ledger = Arc::new(Ledger::with_backends(
            limits.clone(),
            store,
            Metering::in_memory(),
        ));
        let service = PatService::new(PatParts {
            keys: keys.clone(),
            ledger: ledger.clone(),
            policy: Arc::new(AllowListPolicy::new([
                AllowRule::anyone("*", "model:claude-*"),
                AllowRule::anyone("*", "workspace:*"),
            ])),
            vault: Arc::new(vault),
            redactor: Arc::new(PatternRedactor::basic()),
            audit: Arc::new(MemoryAuditSink::new()),
            upstream: Upstream::new(&UpstreamConfig::new(mock.base_url())).unwrap(),
            archive: None,
        })
        .unwrap();
        services.push(service);
        ledgers.push(ledger);
    }
    Gateways {
        services,
        ledgers,
        key: issued.token.expose_str().unwrap().to_owned(),
        bob_key: bob.token.expose_str().unwrap().to_owned(),
        _mock: mock,
    }
}

fn request(method: &str, path: &str, key: &str, body: Value) -> http::Request<Full<Bytes>> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(Full::new(bytes))
        .unwrap()
}

fn message(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

async fn send(
    service: &PatService,
    req: http::Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let (parts, body) = service.handle(req, Some(ip)).await.into_parts();
    (parts, body::collect(body).await.unwrap())
}

/// Waits until every reservation of `scope/id` has settled (settlement against Redis runs
/// on a task after the answer ends).
async fn settled(ledger: &Ledger, scope: Scope, id: &str, window: Window) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (used, reserved) = ledger.budget_tokens(scope, id, window).await;
        if reserved == 0 {
            return used;
        }
        assert!(
            Instant::now() < deadline,
            "{reserved} tokens still reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_never_overshoot_one_budget() {
    const BUDGET: u64 = 4_000;
    let prefix = RedisPrefix::new();
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::Workspace,
            window: Window::Day,
            max_tokens: Some(BUDGET),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    let gws = Arc::new(gateways(2, limits, Backend::Redis, &prefix.0).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let gws = gws.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("request {i} with some padding to be counted");
            let service = &gws.services[i % 2];
            let (p, _) = send(
                service,
                request("POST", "/v1/messages", &gws.key, message(&text, i % 3 == 0)),
            )
            .await;
            p.status.as_u16()
        }));
    }
    let (mut ok, mut limited) = (0u64, 0u64);
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 0 && limited > 0, "{ok} admitted, {limited} refused");
    let used = settled(&gws.ledgers[0], Scope::Workspace, "acme", Window::Day).await;
    assert!(used <= BUDGET, "used {used} > budget {BUDGET}");
    // Both instances see the one shared counter, and it equals what both metered.
    assert_eq!(
        gws.ledgers[1]
            .budget_tokens(Scope::Workspace, "acme", Window::Day)
            .await,
        (used, 0)
    );
    let mut metered = 0;
    let mut requests = 0;
    for ledger in &gws.ledgers {
        for (_, row) in ledger.meter().await.unwrap() {
            metered += row.tokens();
            requests += row.requests;
        }
    }
    assert_eq!(metered, used);
    assert_eq!(requests, ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_hold_one_rate_limit() {
    const LIMIT: u64 = 10;
    let prefix = RedisPrefix::new();
    let limits = LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::User,
            requests_per_minute: Some(LIMIT),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    };
    let gws = Arc::new(gateways(2, limits, Backend::Redis, &prefix.0).await);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gws = gws.clone();
        tasks.push(tokio::spawn(async move {
            let service = &gws.services[i % 2];
            send(
                service,
                request("POST", "/v1/messages", &gws.key, message("hi", false)),
            )
            .await
            .0
            .status
            .as_u16()
        }));
    }
    let mut admitted = 0u64;
    for t in tasks {
        if t.await.unwrap() == 200 {
            admitted += 1;
        }
    }
    // The bucket holds one minute (the burst) and refills LIMIT per minute.
    let refill = (started.elapsed().as_secs_f64() * LIMIT as f64 / 60.0).ceil() as u64;
    assert!(admitted >= LIMIT.min(40), "{admitted} admitted");
    assert!(
        admitted <= LIMIT + refill,
        "{admitted} admitted > limit {LIMIT} + refill {refill}"
    );
}

async fn refusals_carry_the_rate_limit_headers(backend: Backend) {
    let prefix = RedisPrefix::new();
    let limits = LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(2),
            output_tokens_per_minute: Some(1_000),
            ..RateRule::default()
        }],
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Month,
            max_tokens: Some(100_000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    let gws = gateways(2, limits, backend, &prefix.0).await;
    let (first, _) = send(
        &gws.services[0],
        request("POST", "/v1/messages", &gws.key, message("one", false)),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["anthropic-ratelimit-requests-limit"], "2");
    assert_eq!(first.headers["anthropic-ratelimit-requests-remaining"], "1");
    assert_eq!(
        first.headers["anthropic-ratelimit-output-tokens-limit"],
        "1000"
    );
    let last = if backend == Backend::Redis { 1 } else { 0 };
    let (second, _) = send(
        &gws.services[last],
        request("POST", "/v1/messages", &gws.key, message("two", false)),
    )
    .await;
    assert_eq!(second.status, 200);
    let (third, body) = send(
        &gws.services[last],
        request("POST", "/v1/messages", &gws.key, message("three", false)),
    )
    .await;
    assert_eq!(third.status, 429, "{backend:?}");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    let retry: u64 = third.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    assert_eq!(third.headers["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(third.headers["anthropic-ratelimit-requests-limit"], "2");
    let reset = third.headers["anthropic-ratelimit-requests-reset"]
        .to_str()
        .unwrap();
    let reset = chrono::DateTime::parse_from_rfc3339(reset).unwrap();
    assert!(reset > Utc::now() && reset <= Utc::now() + chrono::Duration::seconds(61));
}

#[tokio::test]
async fn memory_refusals_carry_the_rate_limit_headers() {
    refusals_carry_the_rate_limit_headers(Backend::Memory).await;
}

#[tokio::test]
async fn redis_refusals_carry_the_rate_limit_headers() {
    refusals_carry_the_rate_limit_headers(Backend::Redis).await;
}

#[tokio::test]
async fn redis_budget_refusals_say_when_the_period_resets() {
    let prefix = RedisPrefix::new();
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(200),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    let gws = gateways(1, limits, Backend::Redis, &prefix.0).await;
    // A small call fits; one whose reservation (190 + its bytes) passes 200 does not.
    let (first, _) = send(
        &gws.services[0],
        request("POST", "/v1/messages", &gws.key, message("x", false)),
    )
    .await;
    assert_eq!(first.status, 200);
    settled(&gws.ledgers[0], Scope::User, "alice", Window::Day).await;
    let big = json!({"model": "claude-sonnet-4-5", "max_tokens": 190,
                     "messages": [{"role": "user", "content": "y"}]});
    let (second, _) = send(
        &gws.services[0],
        request("POST", "/v1/messages", &gws.key, big),
    )
    .await;
    assert_eq!(second.status, 429);
    let retry: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = Utc::now();
    let midnight = Window::Day.until_reset(now).as_secs();
    assert!(retry.abs_diff(midnight) <= 2, "{retry} vs {midnight}");
}

#[tokio::test]
async fn batch_requests_are_metered_once_from_their_results() {
    batch_requests_are_metered_once(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_reservations_in_redis_are_settled_from_their_results() {
    batch_requests_are_metered_once(Backend::Redis).await;
}

async fn batch_requests_are_metered_once(backend: Backend) {
    let prefix = RedisPrefix::new();
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(1_000_000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    let gws = gateways(1, limits, backend, &prefix.0).await;
    let gw = &gws.services[0];
    let batch = json!({"requests": [
        {"custom_id": "a", "params": {"model": "claude-sonnet-4-5", "max_tokens": 32,
            "messages": [{"role": "user", "content": "first question"}]}},
        {"custom_id": "b", "params": {"model": "claude-haiku-4-5", "max_tokens": 32,
            "messages": [{"role": "user", "content": "second"}]}},
        {"custom_id": "c", "params": {"model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "no max_tokens: errors"}]}}
    ]});
    let (created, body) = send(gw, request("POST", "/v1/messages/batches", &gws.key, batch)).await;
    assert_eq!(created.status, 200, "{body:?}");
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Creating a batch meters nothing (its requests have not run) but reserves their
    // worst case until the results are read.
    assert!(gws.ledgers[0].meter().await.unwrap().is_empty());
    let (_, reserved) = gws.ledgers[0]
        .budget_tokens(Scope::User, "alice", Window::Day)
        .await;
    assert!(reserved > 64, "{reserved}");
    // The results are read by Bob; the batch is Alice's.
    let path = format!("/v1/messages/batches/{id}/results");
    let (results, body) = send(gw, request("GET", &path, &gws.bob_key, Value::Null)).await;
    assert_eq!(results.status, 200);
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let upstream_tokens: u64 = lines
        .iter()
        .filter(|l| l["result"]["type"] == "succeeded")
        .map(|l| {
            let u = &l["result"]["message"]["usage"];
            u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
        })
        .sum();
    let meter = gws.ledgers[0].meter().await.unwrap();
    assert_eq!(meter.len(), 2, "one row per model: {meter:?}");
    assert_eq!(meter.iter().map(|(_, r)| r.requests).sum::<u64>(), 2);
    assert_eq!(
        meter.iter().map(|(_, r)| r.tokens()).sum::<u64>(),
        upstream_tokens
    );
    assert!(meter.iter().all(|(k, _)| k.user == "alice"), "{meter:?}");
    // The reservation made at creation is replaced by the real usage.
    assert_eq!(
        settled(&gws.ledgers[0], Scope::User, "alice", Window::Day).await,
        upstream_tokens
    );
    assert_eq!(
        gws.ledgers[0]
            .budget_tokens(Scope::User, "bob", Window::Day)
            .await,
        (0, 0)
    );
    // The batch object's results_url points at the gateway, not the upstream host.
    let (read, body) = send(
        gw,
        request(
            "GET",
            &format!("/v1/messages/batches/{id}"),
            &gws.key,
            Value::Null,
        ),
    )
    .await;
    assert_eq!(read.status, 200);
    let object: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(object["results_url"], path);
    // Reading the results again counts nothing more.
    let (again, _) = send(gw, request("GET", &path, &gws.key, Value::Null)).await;
    assert_eq!(again.status, 200);
    assert_eq!(gws.ledgers[0].meter().await.unwrap(), meter);
    // The batch is priced at the batch factor of the price table.
    let prices = &gws.ledgers[0].config().prices;
    let full: u64 = lines
        .iter()
        .filter(|l| l["result"]["type"] == "succeeded")
        .map(|l| {
            let usage: Usage =
                serde_json::from_value(l["result"]["message"]["usage"].clone()).unwrap();
            prices.cost_micros(l["result"]["message"]["model"].as_str().unwrap(), &usage)
        })
        .sum();
    let charged: u64 = meter.iter().map(|(_, r)| r.cost_micros).sum();
    assert!(charged < full && charged * 2 >= full, "{charged} vs {full}");
}

/// A limit store whose backend is down.
struct Down;

#[async_trait::async_trait]
impl LimitStore for Down {
    async fn admit(
        &self,
        _: &fortress_pat::limits::Demand,
    ) -> Result<fortress_pat::limits::Admission, fortress_pat::limits::StoreError> {
        Err(fortress_pat::limits::StoreError::Protocol("down".into()))
    }
    async fn settle(
        &self,
        _: &fortress_pat::limits::Settlement,
    ) -> Result<(), fortress_pat::limits::StoreError> {
        Err(fortress_pat::limits::StoreError::Protocol("down".into()))
    }
    async fn budget(
        &self,
        _: &fortress_pat::limits::BudgetKey,
    ) -> Result<fortress_pat::limits::BudgetUse, fortress_pat::limits::StoreError> {
        Err(fortress_pat::limits::StoreError::Protocol("down".into()))
    }
    async fn seed(
        &self,
        _: &fortress_pat::limits::BudgetKey,
        _: fortress_pat::limits::Consumption,
        _: Duration,
    ) -> Result<(), fortress_pat::limits::StoreError> {
        Err(fortress_pat::limits::StoreError::Protocol("down".into()))
    }
}

#[tokio::test]
async fn an_unavailable_limit_store_fails_closed_in_the_claude_shape() {
    let mock = MockClaude::start(UPSTREAM_KEY, 8).await.unwrap();
    let keys = KeyStore::in_memory(fortress_pat::keys::FORMAT, Secret::from("pepper"))
        .await
        .unwrap();
    let issued = keys.create(NewKey::user("acme", "alice")).await.unwrap();
    let vault = MemoryVault::new();
    let slot = CredentialSlot::workspace(WorkspaceId::new("acme"), ANTHROPIC_CONNECTOR);
    vault.put(&slot, Secret::from(UPSTREAM_KEY)).await.unwrap();
    let service = PatService::new(PatParts {
        keys,
        ledger: Arc::new(Ledger::with_backends(
            budget_config(),
            Arc::new(Down),
            Metering::in_memory(),
        )),
        policy: Arc::new(AllowListPolicy::new([AllowRule::anyone("*", "*")])),
        vault: Arc::new(vault),
        redactor: Arc::new(PatternRedactor::basic()),
        audit: Arc::new(MemoryAuditSink::new()),
        upstream: Upstream::new(&UpstreamConfig::new(mock.base_url())).unwrap(),
        archive: None,
    })
    .unwrap();
    let key = issued.token.expose_str().unwrap().to_owned();
    let (parts, body) = send(
        &service,
        request("POST", "/v1/messages", &key, message("hi", false)),
    )
    .await;
    assert_eq!(parts.status, 500, "{body:?}");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["type"], "api_error");
    assert!(
        mock.recorded().is_empty(),
        "nothing reaches upstream unmetered"
    );
}

#[tokio::test]
async fn a_dead_replicas_reservations_are_released_when_their_lease_expires() {
    let prefix = RedisPrefix::new();
    let store = RedisLimitStore::connect(&redis_url(), &prefix.0)
        .await
        .unwrap();
    let limits = LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(1_000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    };
    // A replica that reserves and then never settles (it was killed).
    let dead = Ledger::with_backends(
        limits.clone(),
        Arc::new(store.clone().with_lease(Duration::from_millis(300))),
        Metering::in_memory(),
    );
    let orphan = message_call("alice", 800);
    dead.admit(&orphan).await.unwrap().unwrap();
    let live = Ledger::with_backends(limits, Arc::new(store), Metering::in_memory());
    let next = message_call("alice", 800);
    assert!(
        live.admit(&next).await.unwrap().is_err(),
        "900 reserved + 900 > 1000"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.admit(&next).await.unwrap().is_err() {
        assert!(
            Instant::now() < deadline,
            "the orphan's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        live.budget_tokens(Scope::User, "alice", Window::Day).await,
        (0, 900)
    );
    // The orphan settles late: its usage counts, the live reservation is left alone.
    let usage = Usage {
        input_tokens: 30,
        output_tokens: 20,
        ..Usage::default()
    };
    dead.settle(orphan.request_id.as_str(), Some(usage)).await;
    assert_eq!(
        live.budget_tokens(Scope::User, "alice", Window::Day).await,
        (50, 900)
    );
    live.settle(next.request_id.as_str(), Some(usage)).await;
    assert_eq!(
        live.budget_tokens(Scope::User, "alice", Window::Day).await,
        (100, 0)
    );
}

#[tokio::test]
async fn a_restart_with_redis_keeps_its_counters_and_refills_an_empty_redis() {
    let db = Db::new(false).await;
    let prefix = RedisPrefix::new();
    let open = |prefix: String| {
        let db = &db;
        async move {
            let meter: Arc<dyn MeterStore> = Arc::new(db.open().await);
            let store = RedisLimitStore::connect(&redis_url(), &prefix)
                .await
                .unwrap();
            Ledger::with_backends(
                budget_config(),
                Arc::new(store),
                Metering::new(meter, Duration::from_secs(3600)),
            )
        }
    };
    let first = open(prefix.0.clone()).await;
    let call = message_call("alice", 100);
    first.admit(&call).await.unwrap().unwrap();
    let usage = Usage {
        input_tokens: 40,
        output_tokens: 60,
        ..Usage::default()
    };
    first.settle(call.request_id.as_str(), Some(usage)).await;
    first.flush().await.unwrap();
    // A replica restarting against the same Redis does not count the month twice.
    let second = open(prefix.0.clone()).await;
    second.restore().await.unwrap();
    assert_eq!(
        second
            .budget_tokens(Scope::User, "alice", Window::Month)
            .await,
        (100, 0)
    );
    // A Redis that lost its data is refilled from the metering database.
    let empty = RedisPrefix::new();
    let third = open(empty.0.clone()).await;
    assert_eq!(
        third
            .budget_tokens(Scope::User, "alice", Window::Month)
            .await,
        (0, 0)
    );
    third.restore().await.unwrap();
    assert_eq!(
        third
            .budget_tokens(Scope::User, "alice", Window::Month)
            .await,
        (100, 0)
    );
}

#[tokio::test]
async fn the_configuration_selects_postgres_and_redis() {
    let db = Db::new(true).await;
    let Db::Postgres(schema) = &db else {
        unreachable!()
    };
    let prefix = RedisPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?options=-c%20search_path%3D{schema}", postgres_url());
    let text = format!(
        "data_dir = {:?}\n[[limits.budgets]]\nscope = \"user\"\nwindow = \"day\"\nmax_tokens = 1000\n\
         [ledger]\ndatabase = {url:?}\nredis = {:?}\nredis_prefix = {:?}\nflush_interval_ms = 10\n",
        dir.path(),
        redis_url(),
        prefix.0,
    );
    let config = fortress_pat::config::Config::parse(&text).unwrap();
    let ledger = config.ledger().await.unwrap();
    let call = message_call("alice", 100);
    ledger.admit(&call).await.unwrap().unwrap();
    // The reservation is in Redis under the configured prefix.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:budget:user:day:*", prefix.0))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.ends_with(":alice")), "{keys:?}");
    let usage = Usage {
        input_tokens: 5,
        output_tokens: 5,
        ..Usage::default()
    };
    ledger.settle(call.request_id.as_str(), Some(usage)).await;
    // The background writer puts the row into PostgreSQL within its interval.
    let store = db.open().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .rows("0000-00-00", "9999-99-99")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "metering never reached PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.rows("0000-00-00", "9999-99-99").await.unwrap()[0]
            .1
            .requests,
        1
    );
    assert!(
        !dir.path().join("usage.db").exists(),
        "no SQLite when PostgreSQL is configured"
    );
    drop(ledger);
    db.drop_schema().await;
}
