//! The golden allow/deny corpus over the worked examples of docs/policy.md.

mod policy_common;

use fortress_core::decision::Effect;
use fortress_core::policy::{CedarEngine, PolicyEngine};
use policy_common::{examples_dir, golden_cases};

#[tokio::test]
async fn every_golden_case_decides_as_documented() -> anyhow::Result<()> {
    let engine = CedarEngine::from_dir(examples_dir())?;
    let set = engine.current();
    let cases = golden_cases()?;
    assert!(
        cases.len() >= 50,
        "the corpus must hold at least 50 cases, has {}",
        cases.len()
    );
    assert!(
        cases.iter().any(|c| c.expect == Effect::Allow)
            && cases.iter().any(|c| c.expect == Effect::Deny)
    );
    let mut failures = Vec::new();
    for case in &cases {
        let decision = engine.decide(&case.call).await?;
        let mut ids = decision.policy_ids.clone();
        ids.sort();
        if decision.effect != case.expect || ids != case.policies {
            failures.push(format!(
                "line {}: {}\n    got {:?} by {:?} ({:?})",
                case.line, case.text, decision.effect, ids, decision.reasons
            ));
        }
        assert_eq!(decision.policy_version, engine.version());
        assert!(
            !decision.reasons.is_empty(),
            "line {}: a decision always says why",
            case.line
        );
        // The full set, without the index, agrees.
        assert_eq!(
            set.decide_unindexed(&case.call)?,
            decision,
            "line {}: index disagrees",
            case.line
        );
    }
    assert!(
        failures.is_empty(),
        "{} golden cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn annotated_reasons_explain_the_decision() -> anyhow::Result<()> {
    let engine = CedarEngine::from_dir(examples_dir())?;
    let cases = golden_cases()?;
    let delete = cases
        .iter()
        .find(|c| c.policies == ["support-no-ticket-deletion"])
        .expect("the corpus has the delete_ticket case");
    let explanation = engine.explain(&delete.call)?;
    assert_eq!(
        explanation.decision.reasons,
        ["support agents may not delete Zendesk tickets"]
    );
    assert_eq!(explanation.determining.len(), 1);
    assert!(
        explanation.determining[0]
            .text
            .contains("zendesk/delete_ticket")
    );
    assert!(
        explanation.evaluated < explanation.total,
        "the index narrowed the evaluation"
    );
    Ok(())
}
