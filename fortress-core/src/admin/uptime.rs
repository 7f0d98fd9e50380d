//! Monthly uptime by the service agreements' definition of downtime, and the service
//! credit it implies.
//!
//! Downtime is any run of **more than five consecutive minutes** in which valid requests got
//! 5xx answers or no answer. Minutes are excluded — from downtime and from the month alike —
//! when they fall in announced maintenance, in an upstream SaaS or Claude outage, or under a
//! kill switch the customer flipped. A minute with valid requests counts as failing when the
//! share of failed requests reaches [`UptimePolicy::failing_ratio`] (default 5%); a minute
//! without requests counts as up unless a probe found the gateway not answering.
//!
//! The credit is `(committed − actual uptime) × 10 × monthly fee`, capped per tier.
//!
//! ```
//! use fortress_core::admin::uptime::{Minute, UptimePolicy, monthly_uptime};
//!
//! // A 30-day month with one 10-minute outage.
//! let mut minutes = vec![Minute::healthy(100); 30 * 24 * 60];
//! for m in &mut minutes[600..610] { *m = Minute::failing(100, 100); }
//! let report = monthly_uptime(&minutes, &UptimePolicy::default());
//! assert_eq!(report.downtime_minutes, 10);
//! ```

use serde::{Deserialize, Serialize};

use super::billing::Money;
use crate::tier::Tier;

/// Why a minute does not count against the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Announced maintenance.
    Maintenance,
    /// The upstream SaaS app or the Claude API was down.
    UpstreamOutage,
    /// The customer stopped traffic with a kill switch.
    KillSwitch,
}

/// What happened in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    /// Valid requests received.
    pub requests: u64,
    /// Of those, answered with 5xx or not answered.
    pub failed: u64,
    /// Whether a health probe found the gateway not answering at all.
    #[serde(default)]
    pub unreachable: bool,
    /// Why the minute is excluded, if it is.
    #[serde(default)]
    pub excluded: Option<Exclusion>,
}

impl Minute {
    /// A minute in which every request succeeded.
    pub fn healthy(requests: u64) -> Self {
        Self {
            requests,
            failed: 0,
            unreachable: false,
            excluded: None,
        }
    }

    /// A minute with failures.
    pub fn failing(requests: u64, failed: u64) -> Self {
        Self {
            requests,
            failed,
            unreachable: false,
            excluded: None,
        }
    }

    /// A minute the gateway did not answer at all.
    pub fn unreachable() -> Self {
        Self {
            requests: 0,
            failed: 0,
            unreachable: true,
            excluded: None,
        }
    }

    /// The same minute, excluded for `why`.
    #[must_use]
    pub fn excluded(mut self, why: Exclusion) -> Self {
        self.excluded = Some(why);
        self
    }
}

/// The thresholds of the downtime definition.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UptimePolicy {
    /// A minute fails when at least this share of its valid requests failed.
    pub failing_ratio: f64,
    /// Failing minutes must run for more than this many minutes to count as downtime.
    pub grace_minutes: u32,
}

impl Default for UptimePolicy {
    fn default() -> Self {
        Self {
            failing_ratio: 0.05,
            grace_minutes: 5,
        }
    }
}

impl UptimePolicy {
    fn is_failing(&self, m: &Minute) -> bool {
        if m.unreachable {
            return true;
        }
        if m.requests == 0 {
            return false;
        }
        // Compare as integers scaled by 10^6 to avoid float drift at the boundary.
        let ratio_ppm = (self.failing_ratio * 1_000_000.0).round() as u128;
        u128::from(m.failed) * 1_000_000 >= ratio_ppm * u128::from(m.requests)
    }
}

/// Uptime over a month.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UptimeReport {
    /// Minutes in the period.
    pub total_minutes: u64,
    /// Minutes excluded from the computation.
    pub excluded_minutes: u64,
    /// Minutes of downtime (only runs longer than the grace period count, in full).
    pub downtime_minutes: u64,
    /// `(total − excluded − downtime) / (total − excluded)`, 1.0 when nothing is left.
    pub uptime: f64,
}

/// Computes uptime from per-minute records, in order.
pub fn monthly_uptime(minutes: &[Minute], policy: &UptimePolicy) -> UptimeReport {
    let mut excluded = 0u64;
    let mut downtime = 0u64;
    let mut run = 0u64;
    let grace = u64::from(policy.grace_minutes);
    let mut close_run = |run: &mut u64| {
        if *run > grace {
            downtime += *run;
        }
        *run = 0;
    };
    for minute in minutes {
        if minute.excluded.is_some() {
            // An excluded minute neither counts nor bridges two failing runs.
            excluded += 1;
            close_run(&mut run);
        } else if policy.is_failing(minute) {
            run += 1;
        } else {
            close_run(&mut run);
        }
    }
    close_run(&mut run);
    let total = minutes.len() as u64;
    let counted = total - excluded;
    let uptime = if counted == 0 {
        1.0
    } else {
        (counted - downtime) as f64 / counted as f64
    };
    UptimeReport {
        total_minutes: total,
        excluded_minutes: excluded,
        downtime_minutes: downtime,
        uptime,
    }
}

/// The service-level commitment of a tier and the cap on its credits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Commitment {
    /// Committed monthly uptime, e.g. 0.999.
    pub uptime: f64,
    /// The largest credit, as a share of the monthly fee.
    pub credit_cap: f64,
}

impl Commitment {
    /// The commitment of each tier (configurable per contract; these are the defaults).
    pub fn for_tier(tier: Tier) -> Self {
        match tier {
            Tier::Soho => Self {
                uptime: 0.995,
                credit_cap: 0.10,
            },
            Tier::Bank => Self {
                uptime: 0.999,
                credit_cap: 0.25,
            },
            Tier::ZeroTrust => Self {
                uptime: 0.9995,
                credit_cap: 0.50,
            },
        }
    }
}

/// `(committed − actual) × 10 × monthly fee`, never negative, capped at the tier's cap.
pub fn service_credit(commitment: &Commitment, actual_uptime: f64, monthly_fee: Money) -> Money {
    let shortfall = (commitment.uptime - actual_uptime).max(0.0);
    let share = (shortfall * 10.0).min(commitment.credit_cap);
    // Shares are applied in parts per million so the money stays an exact integer.
    let ppm = (share * 1_000_000.0).round() as i64;
    monthly_fee.scale(ppm, 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONTH: usize = 30 * 24 * 60;

    fn month() -> Vec<Minute> {
        vec![Minute::healthy(60); MONTH]
    }

    #[test]
    fn five_failing_minutes_are_not_downtime_six_are() {
        let p = UptimePolicy::default();
        let mut m = month();
        for x in &mut m[100..105] {
            *x = Minute::failing(60, 60);
        }
        assert_eq!(monthly_uptime(&m, &p).downtime_minutes, 0);
        m[105] = Minute::unreachable();
        let r = monthly_uptime(&m, &p);
        assert_eq!(r.downtime_minutes, 6);
        assert!((r.uptime - (MONTH as f64 - 6.0) / MONTH as f64).abs() < 1e-12);
    }

    #[test]
    fn failing_ratio_decides_a_minute() {
        let p = UptimePolicy::default();
        let mut m = month();
        for x in &mut m[0..10] {
            *x = Minute::failing(100, 4);
        }
        assert_eq!(monthly_uptime(&m, &p).downtime_minutes, 0);
        for x in &mut m[0..10] {
            *x = Minute::failing(100, 5);
        }
        assert_eq!(monthly_uptime(&m, &p).downtime_minutes, 10);
    }

    #[test]
    fn exclusions_leave_the_month_and_break_runs() {
        let p = UptimePolicy::default();
        let mut m = month();
        for x in &mut m[0..60] {
            *x = Minute::failing(10, 10).excluded(Exclusion::UpstreamOutage);
        }
        // 4 failing, 1 kill-switch minute, 4 failing: two short runs, no downtime.
        for x in &mut m[100..104] {
            *x = Minute::failing(10, 10);
        }
        m[104] = Minute::failing(10, 10).excluded(Exclusion::KillSwitch);
        for x in &mut m[105..109] {
            *x = Minute::failing(10, 10);
        }
        let r = monthly_uptime(&m, &p);
        assert_eq!(r.excluded_minutes, 61);
        assert_eq!(r.downtime_minutes, 0);
        assert_eq!(r.uptime, 1.0);
    }

    #[test]
    fn idle_minutes_are_up() {
        let m = vec![Minute::healthy(0); 100];
        assert_eq!(monthly_uptime(&m, &UptimePolicy::default()).uptime, 1.0);
    }

    #[test]
    fn credit_is_ten_times_the_shortfall_capped() {
        let fee = Money::from_cents(100_000); // $1,000
        let bank = Commitment::for_tier(Tier::Bank); // 99.9%, cap 25%
        assert_eq!(service_credit(&bank, 0.9995, fee), Money::ZERO);
        // 99.9 − 99.5 = 0.4 points → 4% of the fee.
        assert_eq!(service_credit(&bank, 0.995, fee), Money::from_cents(4_000));
        // 99.9 − 90 = 9.9 points → 99%, capped at 25%.
        assert_eq!(service_credit(&bank, 0.90, fee), Money::from_cents(25_000));
        let soho = Commitment::for_tier(Tier::Soho);
        assert_eq!(service_credit(&soho, 0.0, fee), Money::from_cents(10_000));
    }

    #[test]
    fn a_constructed_month_gives_the_expected_credit() {
        // 45 minutes of hard outage in a 30-day month: uptime = 1 − 45/43200 ≈ 99.8958%.
        let mut m = month();
        for x in &mut m[1_000..1_045] {
            *x = Minute::unreachable();
        }
        let r = monthly_uptime(&m, &UptimePolicy::default());
        assert_eq!(r.downtime_minutes, 45);
        let credit = service_credit(
            &Commitment::for_tier(Tier::Bank),
            r.uptime,
            Money::from_cents(100_000),
        );
        // (0.999 − 0.998958…) × 10 = 0.0417% of $1,000 ≈ $0.42
        assert_eq!(credit.cents(), 42);
    }
}
