//! Live traffic figures for the Status Board and the minute record behind monthly uptime.
//!
//! [`Telemetry`] watches the audit stream (as an [`AuditObserver`] of an
//! [`ObservingSink`](super::observe::ObservingSink)): every access event updates request and error rates, recent latency
//! percentiles per target (the gateway, each connector, each model) and the per-minute record
//! of the month that [`uptime`](super::uptime) turns into an uptime figure.
//!
//! What counts against the gateway follows the agreements: answers the gateway failed to give
//! (`error` outcomes) count; upstream failures mark the minute as an upstream outage
//! (excluded), and refusals by a customer's kill switch mark it as excluded too. Policy
//! denials are valid answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::Serialize;

use super::observe::AuditObserver;
use super::uptime::{Exclusion, Minute};
use crate::audit::{AuditEvent, EventKind, Outcome};

/// How many recent latency samples each target keeps for percentiles.
const LATENCY_SAMPLES: usize = 4096;
/// How many recent per-minute buckets each target keeps for rates.
const RATE_MINUTES: usize = 15;

#[derive(Default)]
struct Target {
    latencies_us: VecDeque<u64>,
    /// (minute index since epoch, requests, errors)
    recent: VecDeque<(i64, u64, u64)>,
    last_error: Option<DateTime<Utc>>,
}

impl Target {
    fn observe(&mut self, minute: i64, latency_us: u64, error: bool, at: DateTime<Utc>) {
        if self.latencies_us.len() == LATENCY_SAMPLES {
            self.latencies_us.pop_front();
        }
        self.latencies_us.push_back(latency_us);
        match self.recent.back_mut() {
            Some(last) if last.0 == minute => {
                last.1 += 1;
                last.2 += u64::from(error);
            }
            _ => {
                self.recent.push_back((minute, 1, u64::from(error)));
                while self.recent.len() > RATE_MINUTES {
                    self.recent.pop_front();
                }
            }
        }
        if error {
            self.last_error = Some(at);
        }
    }
}

#[derive(Default)]
struct MinuteRecord {
    requests: u64,
    failed: u64,
    upstream_failed: u64,
    killed: u64,
}

#[derive(Default)]
struct State {
    targets: BTreeMap<String, Target>,
    minutes: BTreeMap<i64, MinuteRecord>,
}

/// The status of one target over the recent window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetStatus {
    /// `gateway`, `connector:<name>` or `model:<id>`.
    pub target: String,
    /// Requests in the window.
    pub requests: u64,
    /// Failed answers in the window (gateway errors and upstream errors).
    pub errors: u64,
    /// Requests per second over the window.
    pub request_rate: f64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Latency percentiles over the recent samples, in microseconds.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Healthy when the error rate in the window is below 5%.
    pub healthy: bool,
    /// When the last error happened.
    pub last_error: Option<DateTime<Utc>>,
}

/// Traffic figures fed from the audit stream.
#[derive(Default)]
pub struct Telemetry {
    state: Mutex<State>,
}

fn minute_index(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Telemetry {
    /// Empty figures.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one audit event into account (only access events count).
    pub fn observe(&self, event: &AuditEvent) {
        if event.kind != EventKind::Access {
            return;
        }
        let at = event.timestamp;
        let minute = minute_index(at);
        let gateway_error = event.outcome == Outcome::Error;
        let upstream_error = event.outcome == Outcome::UpstreamError;
        let killed = event.denial.as_deref() == Some("kill_switch");
        let error = gateway_error || upstream_error;
        let mut state = self.lock();
        let mut targets = vec!["gateway".to_owned()];
        if let Some(c) = &event.connector {
            targets.push(format!("connector:{c}"));
        }
        if let Some(m) = &event.model {
            targets.push(format!("model:{m}"));
        }
        for name in targets {
            state
                .targets
                .entry(name)
                .or_default()
                .observe(minute, event.latency_us, error, at);
        }
        let record = state.minutes.entry(minute).or_default();
        record.requests += 1;
        record.failed += u64::from(gateway_error);
        record.upstream_failed += u64::from(upstream_error);
        record.killed += u64::from(killed);
    }

    /// The status of every target over the last `window_minutes` minutes before `now`.
    pub fn status(&self, now: DateTime<Utc>, window_minutes: u32) -> Vec<TargetStatus> {
        let state = self.lock();
        let newest = minute_index(now);
        let oldest = newest - i64::from(window_minutes.max(1)) + 1;
        state
            .targets
            .iter()
            .map(|(name, t)| {
                let (requests, errors) = t
                    .recent
                    .iter()
                    .filter(|(m, _, _)| (oldest..=newest).contains(m))
                    .fold((0, 0), |(r, e), (_, r2, e2)| (r + r2, e + e2));
                let mut sorted: Vec<u64> = t.latencies_us.iter().copied().collect();
                sorted.sort_unstable();
                let error_rate = if requests == 0 {
                    0.0
                } else {
                    errors as f64 / requests as f64
                };
                TargetStatus {
                    target: name.clone(),
                    requests,
                    errors,
                    request_rate: requests as f64 / (f64::from(window_minutes.max(1)) * 60.0),
                    error_rate,
                    p50_us: percentile(&sorted, 0.50),
                    p95_us: percentile(&sorted, 0.95),
                    p99_us: percentile(&sorted, 0.99),
                    healthy: error_rate < 0.05,
                    last_error: t.last_error,
                }
            })
            .collect()
    }

    /// Every minute of the month containing `month`, up to `until` (later minutes are not
    /// counted yet), as uptime input.
    pub fn month_minutes(&self, month: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Minute> {
        let start = Utc
            .with_ymd_and_hms(month.year(), month.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(month);
        let next = if month.month() == 12 {
            Utc.with_ymd_and_hms(month.year() + 1, 1, 1, 0, 0, 0)
        } else {
            Utc.with_ymd_and_hms(month.year(), month.month() + 1, 1, 0, 0, 0)
        }
        .single()
        .unwrap_or(until);
        let end = minute_index(until.min(next).with_second(0).unwrap_or(until));
        let state = self.lock();
        (minute_index(start)..end)
            .map(|m| match state.minutes.get(&m) {
                None => Minute::healthy(0),
                Some(r) => {
                    let minute = Minute::failing(r.requests, r.failed);
                    if r.killed * 2 > r.requests {
                        minute.excluded(Exclusion::KillSwitch)
                    } else if r.upstream_failed * 20 >= r.requests && r.upstream_failed > 0 {
                        minute.excluded(Exclusion::UpstreamOutage)
                    } else {
                        minute
                    }
                }
            })
            .collect()
    }
}

impl AuditObserver for Telemetry {
    fn observe(&self, event: &AuditEvent) {
        Telemetry::observe(self, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::uptime::{UptimePolicy, monthly_uptime};
    use crate::call::{Action, Call, Resource};
    use crate::subject::{Subject, WorkspaceId};

    fn event(at: DateTime<Utc>, outcome: Outcome, latency_us: u64) -> AuditEvent {
        let mut call = Call::new(
            Subject::user("u", WorkspaceId::new("w")),
            Action::CallTool,
            Resource::tool("zendesk", "search"),
        );
        call.received_at = at;
        let mut e = AuditEvent::for_call(&call, outcome);
        e.latency_us = latency_us;
        e
    }

    fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    #[test]
    fn status_has_rates_errors_and_percentiles_per_target() {
        let t = Telemetry::new();
        for i in 1..=100 {
            let outcome = if i <= 10 {
                Outcome::UpstreamError
            } else {
                Outcome::Success
            };
            t.observe(&event(at(5, 10, 0), outcome, i * 10));
        }
        let status = t.status(at(5, 10, 0), 1);
        let gateway = status.iter().find(|s| s.target == "gateway").unwrap();
        assert_eq!((gateway.requests, gateway.errors), (100, 10));
        assert!((gateway.error_rate - 0.1).abs() < 1e-9);
        assert!(!gateway.healthy);
        assert_eq!(
            (gateway.p50_us, gateway.p95_us, gateway.p99_us),
            (500, 950, 990)
        );
        assert!(status.iter().any(|s| s.target == "connector:zendesk"));
        // An hour later the window is empty, the percentiles remain from recent samples.
        let later = t.status(at(5, 11, 0), 5);
        assert_eq!(later[0].requests, 0);
        assert!(later[0].healthy);
    }

    #[test]
    fn gateway_errors_become_downtime_upstream_outages_do_not() {
        let t = Telemetry::new();
        for m in 0..10 {
            t.observe(&event(at(2, 3, m), Outcome::Error, 5));
        }
        for m in 20..40 {
            t.observe(&event(at(2, 3, m), Outcome::UpstreamError, 5));
        }
        let minutes = t.month_minutes(at(2, 0, 0), at(3, 0, 0));
        assert_eq!(minutes.len(), 2 * 24 * 60);
        let report = monthly_uptime(&minutes, &UptimePolicy::default());
        assert_eq!(report.downtime_minutes, 10);
        assert_eq!(report.excluded_minutes, 20);
    }

    #[tokio::test]
    async fn an_observing_sink_feeds_telemetry_and_forwards() {
        use crate::audit::AuditSink;
        use std::sync::Arc;
        let telemetry = Arc::new(Telemetry::new());
        let memory = Arc::new(crate::audit::MemoryAuditSink::new());
        let sink =
            crate::admin::observe::ObservingSink::new(memory.clone()).with(telemetry.clone());
        sink.record(event(at(1, 0, 0), Outcome::Success, 7))
            .await
            .unwrap();
        assert_eq!(memory.events().len(), 1);
        assert_eq!(telemetry.status(at(1, 0, 0), 1)[0].requests, 1);
    }
}
