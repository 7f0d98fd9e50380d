use fortress_core::call::Resource;
use fortress_core::subject::{Subject, WorkspaceId};

use super::*;

fn call(max_tokens: u64, bytes: u64) -> Call {
    let mut call = Call::new(
        Subject::user("alice", WorkspaceId::new("acme")),
        Action::CreateMessage,
        Resource::model("claude-x"),
    );
    call.attributes.max_tokens = Some(max_tokens);
    call.attributes.model = Some("claude-x".into());
    call.attributes
        .extra
        .insert(BODY_BYTES_ATTRIBUTE.into(), bytes.into());
    call.attributes
        .extra
        .insert(KEY_ATTRIBUTE.into(), "k1".into());
    call
}

async fn admit(ledger: &Ledger, call: &Call) -> Result<(), Box<Denial>> {
    ledger.admit(call).await.expect("the memory store answers")
}

#[tokio::test]
async fn budgets_reserve_reconcile_and_refund() {
    let ledger = Ledger::new(LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(1000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    });
    let a = call(400, 100);
    admit(&ledger, &a).await.unwrap();
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (0, 500)
    );
    let b = call(400, 100);
    admit(&ledger, &b).await.unwrap();
    let c = call(400, 100);
    let denial = admit(&ledger, &c).await.unwrap_err();
    assert_eq!(denial.kind, DenialKind::RateLimited);
    assert!(denial.retry_after.is_some());
    ledger
        .settle(
            a.request_id.as_str(),
            Some(Usage {
                input_tokens: 20,
                output_tokens: 30,
                ..Usage::default()
            }),
        )
        .await;
    ledger.settle(b.request_id.as_str(), None).await;
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (50, 0)
    );
    admit(&ledger, &c).await.unwrap();
    let meter = ledger.meter().await.unwrap();
    assert_eq!(meter.len(), 1);
    assert_eq!(meter[0].1.output_tokens, 30);
    assert_eq!(meter[0].0.key, "k1");
}

#[tokio::test]
async fn rate_limits_refuse_with_a_retry_hint_and_headers() {
    let ledger = Ledger::new(LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::Key,
            requests_per_minute: Some(2),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    });
    let first = call(1, 1);
    admit(&ledger, &first).await.unwrap();
    let snap = ledger.take_snapshot(first.request_id.as_str()).unwrap();
    assert_eq!(snap.entries[0].1, 2);
    assert_eq!(snap.entries[0].2, 1);
    admit(&ledger, &call(1, 1)).await.unwrap();
    let third = call(1, 1);
    let denial = admit(&ledger, &third).await.unwrap_err();
    let retry = denial.retry_after.unwrap();
    assert!(retry > Duration::from_secs(20) && retry <= Duration::from_secs(30));
    let mut headers = http::HeaderMap::new();
    ledger
        .take_snapshot(third.request_id.as_str())
        .unwrap()
        .apply(&mut headers);
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(headers["anthropic-ratelimit-requests-limit"], "2");
}

#[tokio::test]
async fn token_rates_are_refunded_to_the_real_usage() {
    let ledger = Ledger::new(LimitsConfig {
        rates: vec![RateRule {
            scope: Scope::User,
            output_tokens_per_minute: Some(1000),
            ..RateRule::default()
        }],
        ..LimitsConfig::default()
    });
    let big = call(900, 1);
    admit(&ledger, &big).await.unwrap();
    assert!(admit(&ledger, &call(900, 1)).await.is_err());
    // The first answer used 100 of its 900: 800 come back.
    ledger
        .settle(
            big.request_id.as_str(),
            Some(Usage {
                output_tokens: 100,
                ..Usage::default()
            }),
        )
        .await;
    let next = call(850, 1);
    admit(&ledger, &next).await.unwrap();
    let snap = ledger.take_snapshot(next.request_id.as_str()).unwrap();
    assert_eq!(snap.entries[0].0, "output-tokens");
    assert!(snap.entries[0].2 <= 50, "{:?}", snap.entries);
}

#[tokio::test]
async fn usd_budgets_count_the_price_table() {
    let ledger = Ledger::new(LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::Workspace,
            window: Window::Month,
            max_tokens: None,
            max_usd: Some(0.01),
        }],
        prices: PriceTable::default().with_model("claude-x", Price::per_mtok(1.0, 10.0)),
        ..LimitsConfig::default()
    });
    // 900 output tokens at $10/Mtok = $0.009: fits once.
    admit(&ledger, &call(900, 0)).await.unwrap();
    assert!(admit(&ledger, &call(900, 0)).await.is_err());
    assert_eq!(
        ledger
            .budget_micros(Scope::Workspace, "acme", Window::Month)
            .await,
        (0, 9000)
    );
}

#[tokio::test]
async fn a_restart_restores_month_to_date_budgets_from_the_metering() {
    let config = LimitsConfig {
        budgets: vec![
            BudgetRule {
                scope: Scope::User,
                window: Window::Month,
                max_tokens: Some(1000),
                max_usd: None,
            },
            BudgetRule {
                scope: Scope::Key,
                window: Window::Day,
                max_tokens: Some(1000),
                max_usd: None,
            },
        ],
        ..LimitsConfig::default()
    };
    let meter_store: Arc<dyn MeterStore> = Arc::new(MemoryMeterStore::default());
    let first = Ledger::with_backends(
        config.clone(),
        Arc::new(MemoryLimitStore::new()),
        Metering::new(meter_store.clone(), Duration::from_secs(3600)),
    );
    let a = call(500, 10);
    admit(&first, &a).await.unwrap();
    let usage = Usage {
        input_tokens: 300,
        output_tokens: 400,
        ..Usage::default()
    };
    first.settle(a.request_id.as_str(), Some(usage)).await;
    first.flush().await.unwrap();
    drop(first);
    // A new process: fresh limit store, same metering store.
    let second = Ledger::with_backends(
        config,
        Arc::new(MemoryLimitStore::new()),
        Metering::new(meter_store, Duration::from_secs(3600)),
    );
    second.restore().await.unwrap();
    assert_eq!(
        second
            .budget_tokens(Scope::User, "alice", Window::Month)
            .await,
        (700, 0)
    );
    assert_eq!(
        second.budget_tokens(Scope::Key, "k1", Window::Day).await,
        (700, 0)
    );
    // 700 used + 310 reserved would pass 1000.
    assert!(admit(&second, &call(300, 10)).await.is_err());
    admit(&second, &call(200, 10)).await.unwrap();
}

#[tokio::test]
async fn batch_results_are_metered_once_at_the_batch_price() {
    let ledger = Ledger::new(LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(10_000),
            max_usd: None,
        }],
        prices: PriceTable::default().with_model("claude-x", Price::per_mtok(2.0, 10.0)),
        ..LimitsConfig::default()
    });
    let principal = Principal::of(&call(1, 1));
    let usage = Usage {
        input_tokens: 1000,
        output_tokens: 100,
        ..Usage::default()
    };
    let results = vec![
        ("claude-x".to_owned(), usage),
        ("claude-x".to_owned(), usage),
    ];
    assert!(
        ledger
            .meter_batch("b1", &principal, &results)
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .meter_batch("b1", &principal, &results)
            .await
            .unwrap()
    );
    let meter = ledger.meter().await.unwrap();
    assert_eq!(meter.len(), 1);
    assert_eq!(meter[0].1.requests, 2);
    // (1000 × 2 + 100 × 10) × 0.5 micro-USD per request.
    assert_eq!(meter[0].1.cost_micros, 3000);
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (2200, 0)
    );
}

fn batch_call(max_tokens: &[u64], bytes: u64) -> Call {
    let mut call = call(0, bytes);
    call.action = Action::CreateBatch;
    call.attributes.max_tokens = None;
    let requests: Vec<serde_json::Value> = max_tokens
        .iter()
        .map(|m| serde_json::json!({"model": "claude-x", "max_tokens": m}))
        .collect();
    call.attributes
        .extra
        .insert(BATCH_REQUESTS_ATTRIBUTE.into(), requests.into());
    call
}

#[tokio::test]
async fn a_batch_reserves_its_worst_case_until_its_results_are_metered() {
    let ledger = Ledger::new(LimitsConfig {
        budgets: vec![BudgetRule {
            scope: Scope::User,
            window: Window::Day,
            max_tokens: Some(1000),
            max_usd: None,
        }],
        ..LimitsConfig::default()
    });
    let batch = batch_call(&[300, 300], 100);
    admit(&ledger, &batch).await.unwrap();
    let owner = Principal::of(&batch);
    ledger
        .hold_for_batch(batch.request_id.as_str(), "b1", &owner)
        .await
        .unwrap();
    // Held past the creating call: 100 bytes of input + 2 × 300.
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (0, 700)
    );
    assert!(admit(&ledger, &call(300, 100)).await.is_err());
    assert!(admit(&ledger, &batch_call(&[300], 100)).await.is_err());
    let usage = Usage {
        input_tokens: 50,
        output_tokens: 50,
        ..Usage::default()
    };
    let results = vec![("claude-x".to_owned(), usage)];
    assert!(ledger.meter_batch("b1", &owner, &results).await.unwrap());
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (100, 0)
    );
    // Metered once; the reservation is never released twice.
    let other = batch_call(&[100], 100);
    admit(&ledger, &other).await.unwrap();
    assert!(!ledger.meter_batch("b1", &owner, &results).await.unwrap());
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (100, 200)
    );
    // A batch whose creation failed is refunded like any call.
    ledger.settle(other.request_id.as_str(), None).await;
    assert_eq!(
        ledger
            .budget_tokens(Scope::User, "alice", Window::Day)
            .await,
        (100, 0)
    );
}
