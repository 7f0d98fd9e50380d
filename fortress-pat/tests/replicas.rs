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
