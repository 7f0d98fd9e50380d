//! Decision latency of the Cedar engine at 10, 100 and 1,000 policies, indexed against
//! unindexed (every policy evaluated), plus a listing of 100 tools decided in one pass
//! against 100 single decisions.
//!
//! Before the criterion groups, a percentile pass prints p50/p99/p99.9 per size, since the
//! target is stated as a p99 (criterion reports means and medians).
//!
//! `cargo bench -p fortress-core --bench policy -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use fortress_core::call::{Action, Attributes, Call, Resource};
use fortress_core::policy::{CompiledSet, PolicyDocuments};
use fortress_core::subject::{Subject, WorkspaceId};

const SIZES: [usize; 3] = [10, 100, 1000];
const GROUPS: usize = 20;

/// A realistic set: per-tool permits for groups across connectors of 10 tools each, with a
/// forbid with a condition every 10th policy, and a few set-wide rules.
fn policy_set(n: usize) -> CompiledSet {
    let mut text = String::new();
    text.push_str(
        "@id(\"office\") forbid (principal, action == Action::\"tools/call\", resource) \
         unless { context has client_ip && context.client_ip.isInRange(ip(\"10.20.0.0/16\")) };\n",
    );
    text.push_str(
        "@id(\"interns\") forbid (principal in Group::\"interns\", action == Action::\"messages/create\", resource) \
         unless { context has max_tokens && context.max_tokens <= 4096 };\n",
    );
    for i in 0..n.saturating_sub(2) {
        let connector = i / 10;
        let group = i % GROUPS;
        if i % 10 == 9 {
            text.push_str(&format!(
                "@id(\"p{i}\") forbid (principal in Group::\"g{group}\", action == Action::\"tools/call\", \
                 resource == Tool::\"c{connector}/t{i}\") when {{ context.hour < 6 }};\n"
            ));
        } else {
            text.push_str(&format!(
                "@id(\"p{i}\") permit (principal in Group::\"g{group}\", action in [Action::\"tools/list\", Action::\"tools/call\"], \
                 resource == Tool::\"c{connector}/t{i}\");\n"
            ));
        }
    }
    let docs = PolicyDocuments::new().with_policies("bench.cedar", text);
    CompiledSet::compile(&docs).expect("bench policies compile")
}

/// A call that one permit of the set allows (tool 0 of connector 0, group g0), through the
/// office rule.
fn allowed_call() -> Call {
    let subject = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["g0", "support"]);
    let attributes = Attributes {
        client_ip: "10.20.1.5".parse().ok(),
        ..Attributes::default()
    };
    Call::new(subject, Action::CallTool, Resource::tool("c0", "t0")).with_attributes(attributes)
}

/// The same subject listing the same tool: only condition-free policies apply, so the index
/// decides by principal scope without a Cedar evaluation.
fn scope_only_call() -> Call {
    let mut call = allowed_call();
    call.action = Action::ListTools;
    call
}

/// `n` calls like [`allowed_call`] from `n` distinct subjects: every decision misses the
/// set's request caches (they hold 4,096 subjects), so this times the cold path.
fn cold_calls(n: usize) -> Vec<Call> {
    (0..n)
        .map(|i| {
            let mut call = allowed_call();
            call.subject.id = format!("user-{i}");
            call
        })
        .collect()
}

const SAMPLES: usize = 20_000;
const WARM_UP: usize = 2_000;

/// Times each decision of `calls` (cycled) into a sorted list of latencies.
fn sample(mut decide: impl FnMut(&Call), calls: &[Call]) -> Vec<Duration> {
    for call in calls.iter().cycle().take(WARM_UP) {
        decide(black_box(call));
    }
    let mut samples: Vec<Duration> = calls
        .iter()
        .cycle()
        .skip(WARM_UP)
        .take(SAMPLES)
        .map(|call| {
            let start = Instant::now();
            decide(black_box(call));
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    samples
}

fn percentiles() {
    println!("policy decision latency percentiles ({SAMPLES} decisions each, after {WARM_UP})");
    for &n in &SIZES {
        let set = policy_set(n);
        let cold = cold_calls(WARM_UP + SAMPLES);
        let rows: [(&str, bool, Vec<Call>); 5] = [
            ("indexed", true, vec![allowed_call()]),
            ("indexed cold cache", true, cold),
            ("unindexed", false, vec![allowed_call()]),
            ("indexed scope-only", true, vec![scope_only_call()]),
            ("unindexed scope-only", false, vec![scope_only_call()]),
        ];
        for (label, indexed, calls) in rows {
            let decide = |c: &Call| {
                let decision = if indexed {
                    set.decide(c)
                } else {
                    set.decide_unindexed(c)
                };
                black_box(decision.ok());
            };
            for call in calls.iter().take(3) {
                assert!(set.decide(call).expect("decides").is_allowed());
                assert_eq!(set.decide(call).ok(), set.decide_unindexed(call).ok());
            }
            let samples = sample(decide, &calls);
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            println!(
                "  {n:>5} policies {label:>20}: p50 {:>8.2?}  p99 {:>8.2?}  p99.9 {:>8.2?}",
                at(0.50),
                at(0.99),
                at(0.999)
            );
        }
    }
}

fn decisions(c: &mut Criterion) {
    let call = allowed_call();
    let mut group = c.benchmark_group("policy_decide");
    for &n in &SIZES {
        let set = policy_set(n);
        group.bench_with_input(BenchmarkId::new("indexed", n), &n, |b, _| {
            b.iter(|| set.decide(black_box(&call)))
        });
        group.bench_with_input(BenchmarkId::new("unindexed", n), &n, |b, _| {
            b.iter(|| set.decide_unindexed(black_box(&call)))
        });
        let listing = scope_only_call();
        group.bench_with_input(BenchmarkId::new("indexed_scope_only", n), &n, |b, _| {
            b.iter(|| set.decide(black_box(&listing)))
        });
    }
    group.finish();
}

fn listings(c: &mut Criterion) {
    let set = policy_set(1000);
    let mut template = allowed_call();
    template.action = Action::ListTools;
    let tools: Vec<Resource> = (0..100)
        .map(|i| Resource::tool(format!("c{}", i / 10), format!("t{i}")))
        .collect();
    let mut group = c.benchmark_group("policy_list_100_tools_of_1000_policies");
    group.bench_function("decide_each", |b| {
        b.iter(|| set.decide_each(black_box(&template), &tools))
    });
    group.bench_function("decide_one_by_one", |b| {
        b.iter(|| {
            let mut call = template.clone();
            tools
                .iter()
                .map(|t| {
                    call.resource = t.clone();
                    set.decide(black_box(&call))
                })
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

fn main() {
    // `--profile-time` (for a profiler) and `--list` run criterion alone.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--profile-time" || a == "--list") {
        percentiles();
    }
    let mut criterion = Criterion::default().configure_from_args();
    decisions(&mut criterion);
    listings(&mut criterion);
    criterion.final_summary();
}
