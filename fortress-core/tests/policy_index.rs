//! The (action, resource) index gives the same decision as the full set: a property test over
//! generated policies and requests, and the listing fast path against single decisions.

use fortress_core::call::{Action, Attributes, Call, Resource, ResourceKind};
use fortress_core::policy::{CompileOptions, CompiledSet, PolicyDocuments};
use fortress_core::subject::{Subject, WorkspaceId};
use proptest::prelude::*;

const USERS: [&str; 3] = ["alice", "bob", "ci"];
const GROUPS: [&str; 3] = ["support", "data", "interns"];
const CONNECTORS: [&str; 2] = ["zendesk", "github"];
const TOOLS: [&str; 3] = ["search", "delete", "push"];
const MODELS: [&str; 2] = ["small", "large"];
const WORKSPACES: [&str; 2] = ["acme", "globex"];

fn principal_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_owned()),
        prop::sample::select(&USERS[..]).prop_map(|u| format!("principal == User::\"{u}\"")),
        prop::sample::select(&GROUPS[..]).prop_map(|g| format!("principal in Group::\"{g}\"")),
        prop::sample::select(&WORKSPACES[..])
            .prop_map(|w| format!("principal in Workspace::\"{w}\"")),
        Just("principal is App".to_owned()),
    ]
}

fn action_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        Action::BUILT_IN
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
    )
}

fn action_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_owned()),
        action_name().prop_map(|a| format!("action == Action::\"{a}\"")),
        (action_name(), action_name())
            .prop_map(|(a, b)| format!("action in [Action::\"{a}\", Action::\"{b}\"]")),
        prop::sample::select(&["mcp", "claude", "tools", "models", "batches"][..])
            .prop_map(|g| format!("action in Action::\"{g}\"")),
    ]
}

fn tool_uid() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&CONNECTORS[..]),
        prop::sample::select(&TOOLS[..]),
    )
        .prop_map(|(c, t)| format!("Tool::\"{c}/{t}\""))
}

fn resource_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_owned()),
        tool_uid().prop_map(|t| format!("resource == {t}")),
        prop::sample::select(&MODELS[..]).prop_map(|m| format!("resource == Model::\"{m}\"")),
        prop::sample::select(&CONNECTORS[..])
            .prop_map(|c| format!("resource in Connector::\"{c}\"")),
        prop::sample::select(&CONNECTORS[..])
            .prop_map(|c| format!("resource == Connector::\"{c}\"")),
        prop::sample::select(&WORKSPACES[..])
            .prop_map(|w| format!("resource in Workspace::\"{w}\"")),
        prop::sample::select(&WORKSPACES[..])
            .prop_map(|w| format!("resource == Workspace::\"{w}\"")),
        prop::sample::select(&["Tool", "Model", "Workspace", "Connector", "Resource"][..])
            .prop_map(|t| format!("resource is {t}")),
        (
            prop::sample::select(&["Tool", "Resource", "Prompt"][..]),
            prop::sample::select(&CONNECTORS[..])
        )
            .prop_map(|(t, c)| format!("resource is {t} in Connector::\"{c}\"")),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => (1i64..5000).prop_map(|n| format!(" when {{ context has max_tokens && context.max_tokens > {n} }}")),
        1 => Just(" unless { context has client_ip && context.client_ip.isInRange(ip(\"10.0.0.0/8\")) }".to_owned()),
        // Errors at run time when the attribute is missing: exercises fail-closed errors.
        1 => Just(" when { context.max_tokens > 10 }".to_owned()),
        1 => prop::sample::select(&GROUPS[..]).prop_map(|g| format!(" unless {{ principal in Group::\"{g}\" }}")),
    ]
}

fn policy() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.7),
        principal_scope(),
        action_scope(),
        resource_scope(),
        condition(),
    )
        .prop_map(|(permit, p, a, r, c)| {
            format!(
                "{} ({p}, {a}, {r}){c};",
                if permit { "permit" } else { "forbid" }
            )
        })
}

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![
        (
            prop::sample::select(&CONNECTORS[..]),
            prop::sample::select(&TOOLS[..])
        )
            .prop_map(|(c, t)| Resource::tool(c, t)),
        prop::sample::select(&MODELS[..]).prop_map(Resource::model),
        prop::sample::select(&CONNECTORS[..]).prop_map(Resource::connector),
        prop::sample::select(&WORKSPACES[..]).prop_map(Resource::workspace),
        (prop::sample::select(&CONNECTORS[..]), "[a-z]{1,3}").prop_map(|(c, id)| Resource::new(
            ResourceKind::Resource,
            id,
            Some(c.to_owned())
        )),
        (prop::sample::select(&CONNECTORS[..]), "[a-z]{1,3}").prop_map(|(c, id)| Resource::new(
            ResourceKind::Prompt,
            id,
            Some(c.to_owned())
        )),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    (
        prop::bool::ANY,
        prop::sample::select(&USERS[..]),
        prop::sample::select(&WORKSPACES[..]),
        prop::sample::subsequence(&GROUPS[..], 0..=GROUPS.len()),
        action_name(),
        resource(),
        prop::option::of(1u64..6000),
        prop::option::of(prop::sample::select(&["10.1.2.3", "192.168.0.1"][..])),
    )
        .prop_map(|(user, id, ws, groups, action, resource, max_tokens, ip)| {
            let subject = if user {
                Subject::user(id, WorkspaceId::new(ws))
            } else {
                Subject::app(id, WorkspaceId::new(ws))
            }
            .with_groups(groups);
            let attributes = Attributes {
                max_tokens,
                client_ip: ip.and_then(|ip| ip.parse().ok()),
                ..Attributes::default()
            };
            Call::new(subject, Action::from(action.to_owned()), resource)
                .with_attributes(attributes)
        })
}

fn compile(policies: &[String]) -> CompiledSet {
    let docs = PolicyDocuments::new().with_policies("generated.cedar", policies.join("\n"));
    // Generated policies need not type-check against the schema: the index must agree with
    // the full set whatever the policies say.
    CompiledSet::compile_with(&docs, CompileOptions { validate: false })
        .expect("generated policies parse")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn index_gives_the_decision_of_the_full_set(
        policies in prop::collection::vec(policy(), 0..40),
        calls in prop::collection::vec(call(), 1..12),
    ) {
        let set = compile(&policies);
        for call in &calls {
            let indexed = set.decide(call).map_err(|e| e.to_string());
            let full = set.decide_unindexed(call).map_err(|e| e.to_string());
            prop_assert_eq!(&indexed, &full, "call {:?} under\n{}", call, policies.join("\n"));
        }
    }

    #[test]
    fn listing_gives_the_decisions_of_single_calls(
        policies in prop::collection::vec(policy(), 0..30),
        template in call(),
        candidates in prop::collection::vec(resource(), 0..16),
    ) {
        let set = compile(&policies);
        let listed = set.decide_each(&template, &candidates).map_err(|e| e.to_string());
        let single: Result<Vec<_>, String> = candidates
            .iter()
            .map(|r| {
                let mut call = template.clone();
                call.resource = r.clone();
                set.decide_unindexed(&call).map_err(|e| e.to_string())
            })
            .collect();
        match (&listed, &single) {
            (Ok(listed), Ok(single)) => {
                let effects = |d: &Vec<fortress_core::decision::Decision>| d.iter().map(|d| d.effect).collect::<Vec<_>>();
                prop_assert_eq!(effects(listed), effects(single));
            }
            // A request that cannot be built fails the whole listing (fail closed).
            (Err(_), _) | (_, Err(_)) => prop_assert!(listed.is_err() || candidates.is_empty() || single.is_ok()),
        }
    }
}

#[test]
fn the_index_skips_policies_that_cannot_apply() {
    let mut policies: Vec<String> = (0..200)
        .map(|i| format!("permit (principal, action == Action::\"tools/call\", resource == Tool::\"c{i}/t\");"))
        .collect();
    policies.push("forbid (principal in Group::\"x\", action, resource);".to_owned());
    let set = compile(&policies);
    let call = Call::new(
        Subject::user("u", WorkspaceId::new("w")),
        Action::CallTool,
        Resource::tool("c7", "t"),
    );
    let explanation = set.explain(&call).unwrap();
    assert!(explanation.decision.is_allowed());
    assert_eq!(
        explanation.evaluated, 2,
        "only the matching permit and the catch-all forbid"
    );
    assert_eq!(explanation.total, 201);
}
