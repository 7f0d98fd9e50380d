//! Kill switch and rate limits, with a controllable clock.

mod policy_common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fortress_core::audit::{AuditError, AuditEvent, AuditSink, EventKind, MemoryAuditSink};
use fortress_core::call::{Action, Attributes, Call, Resource};
use fortress_core::denial::DenialKind;
use fortress_core::guard::kill_switch::{KillSwitch, KillSwitchError, KillTarget};
use fortress_core::guard::limits::LimitsConfig;
use fortress_core::guard::rate_limit::{GovernorStore, RateLimitGuard, StaticLimits};
use fortress_core::guard::{AdmissionGuard, Guard, Verdict};
use fortress_core::policy::{CedarEngine, PolicyDocuments};
use fortress_core::subject::{Subject, WorkspaceId};
use governor::clock::FakeRelativeClock;
use tokio_util::sync::CancellationToken;

fn user(id: &str, ws: &str) -> Subject {
    Subject::user(id, WorkspaceId::new(ws))
}

fn tool_call(id: &str, ws: &str, connector: &str, tool: &str) -> Call {
    Call::new(
        user(id, ws),
        Action::CallTool,
        Resource::tool(connector, tool),
    )
}

fn model_call(id: &str, model: &str) -> Call {
    let attributes = Attributes {
        model: Some(model.to_owned()),
        max_tokens: Some(100),
        ..Attributes::default()
    };
    Call::new(
        user(id, "acme"),
        Action::CreateMessage,
        Resource::model(model),
    )
    .with_attributes(attributes)
}

async fn admitted(guard: &dyn Guard, call: &Call) -> Option<CancellationToken> {
    match guard.admit(call).await.expect("guard answers") {
        Verdict::Admit(token) => token,
        Verdict::Reject(denial) => panic!("unexpected rejection: {denial:?}"),
    }
}

async fn rejected(guard: &dyn Guard, call: &Call) -> fortress_core::denial::Denial {
    match guard.admit(call).await.expect("guard answers") {
        Verdict::Reject(denial) => denial,
        Verdict::Admit(_) => panic!("unexpectedly admitted: {call:?}"),
    }
}

#[tokio::test]
async fn each_kind_of_kill_switch_stops_its_calls_and_ends_calls_in_flight() {
    let audit = Arc::new(MemoryAuditSink::new());
    let switch = KillSwitch::new(audit.clone());
    let admin = user("ops", "acme");
    let cases: Vec<(KillTarget, Call, Call)> = vec![
        (
            KillTarget::workspace("acme"),
            tool_call("a", "acme", "zendesk", "t"),
            tool_call("a", "globex", "zendesk", "t"),
        ),
        (
            KillTarget::connector("zendesk"),
            tool_call("a", "acme", "zendesk", "t"),
            tool_call("a", "acme", "github", "t"),
        ),
        (
            KillTarget::tool("zendesk", "delete"),
            tool_call("a", "acme", "zendesk", "delete"),
            tool_call("a", "acme", "zendesk", "search"),
        ),
        (
            KillTarget::model("big"),
            model_call("a", "big"),
            model_call("a", "small"),
        ),
        (
            KillTarget::user("acme", "mallory"),
            tool_call("mallory", "acme", "zendesk", "t"),
            tool_call("mallory", "globex", "zendesk", "t"),
        ),
    ];
    for (target, stopped, spared) in cases {
        let in_flight = admitted(&switch, &stopped).await.expect("a kill token");
        let spared_in_flight = admitted(&switch, &spared).await.expect("a kill token");
        switch
            .engage(target.clone(), &admin, "incident")
            .await
            .expect("engaged");
        assert!(
            in_flight.is_cancelled(),
            "{target}: the call in flight is ended"
        );
        assert!(
            !spared_in_flight.is_cancelled(),
            "{target}: other calls go on"
        );
        let denial = rejected(&switch, &stopped).await;
        assert_eq!(denial.kind, DenialKind::KillSwitch);
        assert!(
            !denial.message.contains("incident"),
            "the operator's reason is not shown to callers"
        );
        admitted(&switch, &spared).await;
        assert!(switch.is_engaged(&target));

        assert!(
            switch
                .release(&target, &admin, "resolved")
                .await
                .expect("released")
        );
        let after = admitted(&switch, &stopped).await.expect("a fresh token");
        assert!(
            !after.is_cancelled(),
            "{target}: a released switch admits with a live token"
        );
    }
    assert!(
        !switch
            .release(&KillTarget::model("none"), &admin, "noop")
            .await
            .expect("answers")
    );

    let events = audit.events();
    assert_eq!(events.len(), 10, "every engage and release is audited");
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventKind::Admin && e.subject.id == "ops")
    );
    assert_eq!(events[0].action, "kill_switch.engage");
    assert_eq!(events[0].resource, "workspace:acme");
    assert_eq!(events[1].action, "kill_switch.release");
    assert_eq!(events[1].detail["reason"], "resolved");
    assert_eq!(events[2].connector.as_deref(), Some("zendesk"));
    assert_eq!(events[6].model.as_deref(), Some("big"));
}

struct FailingAudit;

#[async_trait]
impl AuditSink for FailingAudit {
    async fn record(&self, _event: AuditEvent) -> Result<(), AuditError> {
        Err(AuditError::Closed)
    }
    async fn flush(&self) -> Result<(), AuditError> {
        Err(AuditError::Closed)
    }
}

#[tokio::test]
async fn unaudited_changes_fail_toward_stopping() {
    let switch = KillSwitch::new(Arc::new(FailingAudit));
    let admin = user("ops", "acme");
    let target = KillTarget::connector("zendesk");
    let result = switch.engage(target.clone(), &admin, "incident").await;
    assert!(matches!(result, Err(KillSwitchError::Audit(_))));
    assert!(
        switch.is_engaged(&target),
        "an emergency stop holds even if the audit is down"
    );
    assert!(matches!(
        switch.release(&target, &admin, "done").await,
        Err(KillSwitchError::Audit(_))
    ));
    assert!(
        switch.is_engaged(&target),
        "a release that cannot be audited is not applied"
    );
}

fn limits(text: &str) -> LimitsConfig {
    LimitsConfig::from_toml(text).expect("valid limits")
}

#[tokio::test]
async fn gcra_limits_per_subject_tool_and_workspace_follow_the_clock() {
    let clock = FakeRelativeClock::default();
    let config = limits(
        r#"
        [[limit]]
        id = "per-tool"
        scope = "subject_tool"
        rate = 2
        per = "1m"
        actions = ["tools/call"]

        [[limit]]
        id = "per-workspace"
        scope = "workspace"
        rate = 5
        per = "1m"
        "#,
    );
    let guard = RateLimitGuard::new(
        Arc::new(StaticLimits::new(config)),
        Arc::new(GovernorStore::with_clock(clock.clone())),
    );
    let search = tool_call("alice", "acme", "zendesk", "search");
    let delete = tool_call("alice", "acme", "zendesk", "delete");
    let bob = tool_call("bob", "acme", "zendesk", "search");

    admitted(&guard, &search).await;
    admitted(&guard, &search).await;
    let denial = rejected(&guard, &search).await;
    assert_eq!(denial.kind, DenialKind::RateLimited);
    assert!(denial.message.contains("per-tool"));
    assert_eq!(
        denial.retry_after,
        Some(Duration::from_secs(30)),
        "one cell every 30 s"
    );
    // Other tools and other users have their own buckets, but share the workspace's.
    admitted(&guard, &delete).await;
    admitted(&guard, &bob).await;
    // Workspace: 4 cells taken (2 search, 1 delete, 1 bob); the rejected search took none
    // because the tool limit is checked first. The fifth goes, the sixth is refused.
    admitted(&guard, &delete).await;
    let denial = rejected(
        &guard,
        &Call::new(
            user("carol", "acme"),
            Action::ListModels,
            Resource::workspace("acme"),
        ),
    )
    .await;
    assert!(denial.message.contains("per-workspace"), "{denial:?}");
    // Another workspace is unaffected.
    admitted(&guard, &tool_call("alice", "globex", "zendesk", "search")).await;

    clock.advance(Duration::from_secs(29));
    rejected(&guard, &search).await;
    clock.advance(Duration::from_secs(1));
    admitted(&guard, &search).await;
    rejected(&guard, &search).await;
}

#[tokio::test]
async fn limits_come_from_the_policy_set_and_follow_reloads() -> anyhow::Result<()> {
    let clock = FakeRelativeClock::default();
    let docs = |rate: u32| {
        PolicyDocuments::new()
            .with_policies("p.cedar", "permit (principal, action, resource);")
            .with_limits(format!(
                "[[limit]]\nid = \"per-user\"\nscope = \"subject\"\nrate = {rate}\nper = \"1h\"\n"
            ))
    };
    let engine = Arc::new(CedarEngine::new(&docs(1))?);
    let guard = RateLimitGuard::new(
        engine.clone(),
        Arc::new(GovernorStore::with_clock(clock.clone())),
    );
    let call = model_call("alice", "small");
    admitted(&guard, &call).await;
    rejected(&guard, &call).await;
    engine.reload(&docs(3))?;
    // A changed quota starts fresh counters.
    admitted(&guard, &call).await;
    admitted(&guard, &call).await;
    admitted(&guard, &call).await;
    rejected(&guard, &call).await;
    engine.reload(
        &PolicyDocuments::new().with_policies("p.cedar", "permit (principal, action, resource);"),
    )?;
    for _ in 0..10 {
        admitted(&guard, &call).await;
    }
    Ok(())
}

#[tokio::test]
async fn admission_runs_the_kill_switch_before_the_rate_limits() {
    let clock = FakeRelativeClock::default();
    let audit = Arc::new(MemoryAuditSink::new());
    let switch = Arc::new(KillSwitch::new(audit));
    let limits = Arc::new(RateLimitGuard::new(
        Arc::new(StaticLimits::new(limits(
            "[[limit]]\nid='one'\nscope='subject'\nrate=1\nper='1m'",
        ))),
        Arc::new(GovernorStore::with_clock(clock.clone())),
    ));
    let guard = AdmissionGuard::new(switch.clone(), limits);
    let call = tool_call("alice", "acme", "zendesk", "search");

    switch
        .engage(KillTarget::user("acme", "alice"), &user("ops", "acme"), "x")
        .await
        .expect("engaged");
    assert_eq!(rejected(&guard, &call).await.kind, DenialKind::KillSwitch);
    assert_eq!(rejected(&guard, &call).await.kind, DenialKind::KillSwitch);
    switch
        .release(
            &KillTarget::user("acme", "alice"),
            &user("ops", "acme"),
            "y",
        )
        .await
        .expect("released");
    // The stopped calls took no rate-limit cell.
    let token = admitted(&guard, &call)
        .await
        .expect("the kill switch's token");
    assert_eq!(rejected(&guard, &call).await.kind, DenialKind::RateLimited);
    switch
        .engage(KillTarget::connector("zendesk"), &user("ops", "acme"), "x")
        .await
        .expect("engaged");
    assert!(token.is_cancelled());
}
