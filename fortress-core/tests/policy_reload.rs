//! Hot reload: atomic swaps under concurrent evaluation, fail-closed rejection of invalid
//! sets, the directory watcher, shadow mode and the CLI.

mod policy_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::Parser;
use fortress_core::call::{Action, Call, Resource};
use fortress_core::decision::Effect;
use fortress_core::policy::cli::PolicyCli;
use fortress_core::policy::shadow::ShadowEngine;
use fortress_core::policy::watch::{PolicyWatcher, ReloadOutcome};
use fortress_core::policy::{CedarEngine, CompiledSet, PolicyDocuments, PolicyEngine, PolicyError};
use fortress_core::subject::{Subject, WorkspaceId};

/// Set A permits the call by `a-*` policies; set B forbids it by `b-*` policies. Each has
/// many policies so a half-built set would be visible as a mix of ids or a wrong effect.
fn set(name: &str, permit: bool) -> PolicyDocuments {
    let mut text = String::new();
    for i in 0..50 {
        let effect = if permit { "permit" } else { "forbid" };
        text.push_str(&format!(
            "@id(\"{name}-{i}\")\n{effect} (principal, action == Action::\"tools/call\", resource in Connector::\"zendesk\");\n"
        ));
    }
    // B also permits, so its denial is a forbid and not a default deny.
    if !permit {
        text.push_str(&format!(
            "@id(\"{name}-permit\")\npermit (principal, action, resource);\n"
        ));
    }
    PolicyDocuments::new().with_policies(format!("{name}.cedar"), text)
}

fn call() -> Call {
    Call::new(
        Subject::user("alice", WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool("zendesk", "search_tickets"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_evaluation_ever_sees_a_partial_set() -> anyhow::Result<()> {
    let a = set("a", true);
    let b = set("b", false);
    let (va, vb) = (a.version(), b.version());
    let engine = Arc::new(CedarEngine::new(&a)?);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (engine, stop, seen) = (engine.clone(), stop.clone(), seen.clone());
        let (va, vb) = (va.clone(), vb.clone());
        readers.push(tokio::spawn(async move {
            let call = call();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) || n < 10 {
                let d = engine.decide(&call).await.expect("evaluation succeeds");
                if d.policy_version == va {
                    assert_eq!(d.effect, Effect::Allow);
                    assert_eq!(d.policy_ids.len(), 50);
                    assert!(d.policy_ids.iter().all(|id| id.starts_with("a-")), "{d:?}");
                    seen[0].fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(d.policy_version, vb, "unknown version");
                    assert_eq!(d.effect, Effect::Deny);
                    assert_eq!(d.policy_ids.len(), 50);
                    assert!(d.policy_ids.iter().all(|id| id.starts_with("b-")), "{d:?}");
                    seen[1].fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    for round in 0..40 {
        let next = if round % 2 == 0 { &b } else { &a };
        engine.reload(next)?;
        // An invalid set in between is rejected and changes nothing.
        let before = engine.version();
        assert!(
            engine
                .reload(&PolicyDocuments::new().with_policies("x.cedar", "permit ("))
                .is_err()
        );
        assert_eq!(engine.version(), before);
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await?;
    }
    assert!(seen[0].load(Ordering::Relaxed) + seen[1].load(Ordering::Relaxed) >= 30);
    Ok(())
}

#[tokio::test]
async fn invalid_sets_are_rejected_with_line_and_column_and_the_old_set_stays() -> anyhow::Result<()>
{
    let engine = CedarEngine::new(&set("a", true))?;
    let live = engine.version();
    let updates = engine.subscribe();

    // A syntax error on line 3.
    let syntax = PolicyDocuments::new().with_policies(
        "bad.cedar",
        "// header\n\npermit (principal, action resource);\n",
    );
    match engine.reload(&syntax) {
        Err(PolicyError::Invalid {
            line,
            column,
            message,
        }) => {
            assert_eq!(line, 3);
            assert!(column > 1, "column {column}");
            assert!(message.starts_with("bad.cedar"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A schema violation: an unknown attribute, on line 2.
    let typed = PolicyDocuments::new().with_policies(
        "typed.cedar",
        "permit (principal, action == Action::\"messages/create\", resource)\n  when { context.no_such_attribute > 1 };",
    );
    match engine.reload(&typed) {
        Err(PolicyError::Invalid { line, message, .. }) => {
            assert_eq!(line, 2, "{message}");
            assert!(message.contains("typed.cedar"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A bad limits document, with the offending line.
    let limits = set("a", true)
        .with_limits("[[limit]]\nid = \"x\"\nscope = \"galaxy\"\nrate = 1\nper = \"1s\"\n");
    match engine.reload(&limits) {
        Err(PolicyError::Invalid { line, message, .. }) => {
            assert_eq!(line, 3, "{message}");
            assert!(message.starts_with("limits.toml"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Duplicate ids across files.
    let dup = set("a", true).with_policies(
        "more.cedar",
        "@id(\"a-1\")\npermit (principal, action, resource);",
    );
    assert!(matches!(
        engine.reload(&dup),
        Err(PolicyError::Invalid { .. })
    ));

    assert_eq!(engine.version(), live);
    assert!(engine.decide(&call()).await?.is_allowed());
    assert!(!updates.has_changed()?, "no rejected set was announced");
    engine.reload(&set("b", false))?;
    assert!(updates.has_changed()?);
    Ok(())
}

#[tokio::test]
async fn admin_reloads_are_audited() -> anyhow::Result<()> {
    use fortress_core::audit::{EventKind, MemoryAuditSink, Outcome};
    use fortress_core::policy::ReloadError;

    let engine = CedarEngine::new(&set("a", true))?;
    let audit = MemoryAuditSink::new();
    let admin = Subject::user("ops", WorkspaceId::new("acme"));
    let before = engine.version();
    let version = engine
        .reload_audited(&set("b", false), &admin, &audit)
        .await?;
    let bad = PolicyDocuments::new().with_policies("x.cedar", "permit (");
    let rejected = engine.reload_audited(&bad, &admin, &audit).await;
    assert!(matches!(
        rejected,
        Err(ReloadError::Policy(PolicyError::Invalid { .. }))
    ));
    assert_eq!(engine.version(), version);

    let events = audit.events();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventKind::Admin && e.action == "policy.update")
    );
    assert_eq!(events[0].detail["previous_version"], before.as_str());
    assert_eq!(events[0].detail["version"], version.as_str());
    assert_eq!(events[1].outcome, Outcome::Denied);
    assert!(
        events[1].detail["error"]
            .as_str()
            .unwrap_or_default()
            .contains("x.cedar")
    );
    Ok(())
}

#[tokio::test]
async fn evaluation_errors_deny() -> anyhow::Result<()> {
    // `context.max_tokens` without `has` passes no validation, so compile without it: the
    // erroring forbid must deny even though a permit is satisfied.
    let docs = PolicyDocuments::new().with_policies(
        "p.cedar",
        "@id(\"all\") permit (principal, action, resource);\n@id(\"cap\") forbid (principal, action, resource) when { context.max_tokens > 10 };",
    );
    let set = CompiledSet::compile_with(
        &docs,
        fortress_core::policy::CompileOptions { validate: false },
    )?;
    let d = set.decide(&call())?;
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policy_ids, ["cap"]);
    assert!(d.reasons[0].contains("fail closed"), "{:?}", d.reasons);
    // With validation, the same document is refused up front.
    assert!(matches!(
        CompiledSet::compile(&docs),
        Err(PolicyError::Invalid { line: 2, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn the_watcher_reloads_changed_directories_and_skips_broken_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |text: &str| std::fs::write(dir.path().join("main.cedar"), text);
    write("@id(\"p\") permit (principal, action == Action::\"tools/call\", resource);")?;
    let engine = Arc::new(CedarEngine::from_dir(dir.path())?);
    let mut watcher = PolicyWatcher::new(engine.clone(), dir.path());
    assert_eq!(watcher.check()?, ReloadOutcome::Unchanged);
    assert!(engine.decide(&call()).await?.is_allowed());

    write("@id(\"p\") forbid (principal, action == Action::\"tools/call\", resource);")?;
    let ReloadOutcome::Reloaded(version) = watcher.check()? else {
        panic!("expected a reload");
    };
    assert_eq!(engine.version(), version);
    assert!(!engine.decide(&call()).await?.is_allowed());

    write("permit (")?;
    assert!(matches!(watcher.check(), Err(PolicyError::Invalid { .. })));
    assert_eq!(
        watcher.check()?,
        ReloadOutcome::Unchanged,
        "a broken set is reported once"
    );
    assert_eq!(engine.version(), version, "the previous set stays live");

    std::fs::write(
        dir.path().join("limits.toml"),
        "[[limit]]\nid='l'\nscope='subject'\nrate=5\nper='1m'\n",
    )?;
    write("@id(\"p\") permit (principal, action == Action::\"tools/call\", resource);")?;
    assert!(matches!(watcher.check()?, ReloadOutcome::Reloaded(_)));
    assert_eq!(engine.current().limits().limits.len(), 1);
    assert!(engine.decide(&call()).await?.is_allowed());
    Ok(())
}

#[tokio::test]
async fn shadow_mode_reports_changes_without_enforcing_them() -> anyhow::Result<()> {
    let live = Arc::new(CedarEngine::new(&set("a", true))?);
    let shadow = ShadowEngine::new(live.clone(), 10);
    let candidate = Arc::new(CompiledSet::compile(&set("b", false))?);
    shadow.set_candidate(Some(candidate.clone()));

    let tool_call = call();
    let other = Call::new(
        Subject::user("alice", WorkspaceId::new("acme")),
        Action::CallTool,
        Resource::tool("github", "push"),
    );
    assert!(
        shadow.decide(&tool_call).await?.is_allowed(),
        "live decision enforced"
    );
    assert!(
        !shadow.decide(&other).await?.is_allowed(),
        "live default deny enforced"
    );
    let changes = shadow.take_changes();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].live.effect, Effect::Allow);
    assert_eq!(changes[0].candidate.effect, Effect::Deny);
    assert_eq!(changes[0].candidate.policy_version, candidate.version());
    assert_eq!(changes[1].candidate.effect, Effect::Allow);
    assert!(shadow.take_changes().is_empty());

    // Once promoted, the candidate decides.
    live.install(candidate);
    assert!(!shadow.decide(&tool_call).await?.is_allowed());
    Ok(())
}

#[test]
fn the_cli_validates_explains_and_diffs() -> anyhow::Result<()> {
    let examples = policy_common::examples_dir();
    let run = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let cli = PolicyCli::try_parse_from(std::iter::once("policy").chain(args.iter().copied()))?;
        let mut out = Vec::new();
        let ok = cli.command.run(&mut out)?;
        Ok((ok, String::from_utf8(out)?))
    };
    let dir = examples.to_str().expect("utf-8 path");
    let (ok, out) = run(&["validate", "--dir", dir])?;
    assert!(
        ok && out.starts_with("valid: 12 policies, 3 limits"),
        "{out}"
    );

    let bad = tempfile::tempdir()?;
    std::fs::write(
        bad.path().join("x.cedar"),
        "permit (principal,\n  actionn, resource);",
    )?;
    let (ok, out) = run(&["validate", "--dir", bad.path().to_str().expect("utf-8")])?;
    assert!(!ok);
    assert!(
        out.starts_with("invalid: line 2, column 3: x.cedar"),
        "{out}"
    );

    let call = r#"{"subject":{"id":"alice","kind":"user","workspace":"acme","groups":["support"]},"action":"tools/call","resource":{"kind":"tool","connector":"zendesk","id":"delete_ticket"},"attributes":{"client_ip":"10.20.1.5"}}"#;
    let (ok, out) = run(&["explain", "--dir", dir, "--call", call])?;
    assert!(!ok);
    assert!(
        out.contains("because: support agents may not delete Zendesk tickets"),
        "{out}"
    );
    assert!(out.contains("policy support-no-ticket-deletion"), "{out}");
    assert!(out.contains("evaluated 4 of 12 policies"), "{out}");
    let (_, json) = run(&["explain", "--dir", dir, "--call", call, "--json"])?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(value["decision"]["effect"], "deny");

    // The candidate drops the office-network rule: calls from outside become allowed.
    let candidate = tempfile::tempdir()?;
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(&path)?;
        let text = if name == "examples.cedar" {
            text.replace(
                "forbid (\n  principal,\n  action == Action::\"tools/call\",\n  resource\n) unless",
                "permit (\n  principal,\n  action == Action::\"tools/call\",\n  resource\n) when",
            )
        } else {
            text
        };
        std::fs::write(candidate.path().join(name), text)?;
    }
    let calls = tempfile::NamedTempFile::new()?;
    let outside = call
        .replace("delete_ticket", "search_tickets")
        .replace("10.20.1.5", "8.8.8.8");
    std::fs::write(calls.path(), format!("{call}\n{outside}\n"))?;
    let (ok, out) = run(&[
        "diff",
        "--live",
        dir,
        "--candidate",
        candidate.path().to_str().expect("utf-8"),
        "--calls",
        calls.path().to_str().expect("utf-8"),
    ])?;
    assert!(!ok, "{out}");
    assert!(
        out.starts_with("2 calls: 1 would change (0 newly denied, 1 newly allowed)"),
        "{out}"
    );
    assert!(
        out.contains("tool:zendesk/search_tickets: Deny -> Allow"),
        "{out}"
    );
    Ok(())
}
