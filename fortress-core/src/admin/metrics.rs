//! Prometheus metrics from the audit stream, in the text exposition format (0.0.4).
//!
//! [`GatewayMetrics`] is an [`AuditObserver`]: every access event counts a request by
//! target, decision and outcome and lands in a latency histogram; admin events count
//! changes by action. Labels carry only target names (`gateway`, `connector:<name>`,
//! `model:<id>`), decisions, outcomes and admin verbs — never a user, a request or any
//! content. Target names come partly from callers (the model a request names), so at most
//! [`MAX_TARGETS`] distinct targets are kept; later ones are counted as `other`.
//!
//! ```
//! use fortress_core::admin::metrics::GatewayMetrics;
//! use fortress_core::admin::observe::AuditObserver;
//! use fortress_core::audit::{AuditEvent, Outcome};
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let metrics = GatewayMetrics::new();
//! let call = Call::new(Subject::user("alice", WorkspaceId::new("w")), Action::CreateMessage, Resource::model("m"));
//! metrics.observe(&AuditEvent::for_call(&call, Outcome::Success));
//! let text = metrics.render(&[]);
//! assert!(text.contains(r#"fortress_requests_total{target="gateway",decision="none",outcome="success"} 1"#));
//! assert!(!text.contains("alice"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

use super::observe::AuditObserver;
use super::telemetry::TargetStatus;
use crate::audit::row::{effect_name, outcome_name};
use crate::audit::{AuditEvent, EventKind};

/// The most distinct targets tracked; the rest are folded into `other`.
pub const MAX_TARGETS: usize = 256;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn record(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

#[derive(Default)]
struct State {
    /// (target, decision, outcome) → count.
    requests: BTreeMap<(String, &'static str, &'static str), u64>,
    latency: BTreeMap<String, Histogram>,
    /// Admin action → count.
    changes: BTreeMap<String, u64>,
}

impl State {
    fn target_name(&self, name: String) -> String {
        if self.latency.contains_key(&name) || self.latency.len() < MAX_TARGETS {
            name
        } else {
            "other".to_owned()
        }
    }
}

/// Request, decision, latency and change counters for `/metrics`.
#[derive(Default)]
pub struct GatewayMetrics {
    state: Mutex<State>,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Admin verbs are fixed names chosen by the gateway (`kill_switch.engage`); anything
/// else is counted as `other`, so a label never carries free text.
fn admin_action(action: &str) -> String {
    let plain = action.len() <= 64
        && action
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
    if plain {
        action.to_owned()
    } else {
        "other".to_owned()
    }
}

impl GatewayMetrics {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exposition text, with the health of each target from the Status Board's
    /// figures and the number of engaged kill switches.
    pub fn render(&self, health: &[TargetStatus]) -> String {
        self.render_with(health, None)
    }

    /// [`render`](Self::render), with the number of engaged kill switches when known.
    pub fn render_with(&self, health: &[TargetStatus], engaged_switches: Option<usize>) -> String {
        let state = self.lock();
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP fortress_requests_total Governed calls by target, policy decision and outcome.\n# TYPE fortress_requests_total counter"
        );
        for ((target, decision, outcome), n) in &state.requests {
            let _ = writeln!(
                out,
                "fortress_requests_total{{target=\"{}\",decision=\"{decision}\",outcome=\"{outcome}\"}} {n}",
                label(target)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fortress_request_latency_seconds Time to the response head of governed calls.\n# TYPE fortress_request_latency_seconds histogram"
        );
        for (target, h) in &state.latency {
            let t = label(target);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "fortress_request_latency_seconds_bucket{{target=\"{t}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "fortress_request_latency_seconds_bucket{{target=\"{t}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "fortress_request_latency_seconds_sum{{target=\"{t}\"}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                out,
                "fortress_request_latency_seconds_count{{target=\"{t}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP fortress_target_healthy Whether a target's error rate over the last 5 minutes is below 5%.\n# TYPE fortress_target_healthy gauge"
        );
        for status in health {
            let _ = writeln!(
                out,
                "fortress_target_healthy{{target=\"{}\"}} {}",
                label(&status.target),
                u8::from(status.healthy)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fortress_admin_changes_total Admin changes by action.\n# TYPE fortress_admin_changes_total counter"
        );
        for (action, n) in &state.changes {
            let _ = writeln!(
                out,
                "fortress_admin_changes_total{{action=\"{}\"}} {n}",
                label(action)
            );
        }
        if let Some(n) = engaged_switches {
            let _ = writeln!(
                out,
                "# HELP fortress_kill_switches_engaged Kill switches engaged now.\n# TYPE fortress_kill_switches_engaged gauge\nfortress_kill_switches_engaged {n}"
            );
        }
        out
    }
}

impl AuditObserver for GatewayMetrics {
    fn observe(&self, event: &AuditEvent) {
        let mut state = self.lock();
        match event.kind {
            EventKind::Access => {
                let decision = event
                    .decision
                    .as_ref()
                    .map_or("none", |d| effect_name(d.effect));
                let outcome = outcome_name(event.outcome);
                let mut targets = vec!["gateway".to_owned()];
                if let Some(c) = &event.connector {
                    targets.push(format!("connector:{c}"));
                }
                if let Some(m) = &event.model {
                    targets.push(format!("model:{m}"));
                }
                let seconds = event.latency_us as f64 / 1e6;
                for target in targets {
                    let target = state.target_name(target);
                    *state
                        .requests
                        .entry((target.clone(), decision, outcome))
                        .or_default() += 1;
                    state.latency.entry(target).or_default().record(seconds);
                }
            }
            EventKind::Admin => {
                *state
                    .changes
                    .entry(admin_action(&event.action))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Outcome, SubjectRef};
    use crate::call::{Action, Call, Resource};
    use crate::subject::{Subject, SubjectKind, WorkspaceId};

    #[test]
    fn latency_lands_in_cumulative_buckets_and_labels_are_bounded() {
        let metrics = GatewayMetrics::new();
        for (i, us) in [(0, 800u64), (1, 30_000), (2, 3_000_000)] {
            let call = Call::new(
                Subject::user(format!("u{i}"), WorkspaceId::new("w")),
                Action::CreateMessage,
                Resource::model(format!("m\"{i}")),
            );
            let mut event = AuditEvent::for_call(&call, Outcome::Success);
            event.model = Some(format!("m\"{i}"));
            event.latency_us = us;
            metrics.observe(&event);
        }
        let admin = AuditEvent::activity(
            EventKind::Admin,
            WorkspaceId::new("w"),
            SubjectRef {
                id: "ops".into(),
                kind: SubjectKind::User,
            },
            "Free text from somewhere",
            "x",
        );
        metrics.observe(&admin);
        let text = metrics.render_with(&[], Some(2));
        assert!(text.contains(
            "fortress_request_latency_seconds_bucket{target=\"gateway\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "fortress_request_latency_seconds_bucket{target=\"gateway\",le=\"0.05\"} 2\n"
        ));
        assert!(text.contains(
            "fortress_request_latency_seconds_bucket{target=\"gateway\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("target=\"model:m\\\"0\""), "{text}");
        assert!(text.contains("fortress_admin_changes_total{action=\"other\"} 1"));
        assert!(text.contains("fortress_kill_switches_engaged 2"));
        assert!(!text.contains("u1"));
    }
}
