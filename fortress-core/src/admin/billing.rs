//! Billing arithmetic: the user pack, overage at 1.25× the base rate, and Claude usage.
//!
//! Active users beyond the contracted pack are billed at 1.25× the base rate and are never
//! blocked: nothing here admits or refuses a call. Money is kept in whole micro-dollars, so
//! sums are exact and rounding happens once, when an amount is shown in cents.
//!
//! ```
//! use std::collections::BTreeSet;
//! use fortress_core::admin::billing::{Contract, Money, preview};
//!
//! let contract = Contract { pack_size: 2, base_rate: Money::from_cents(1_000) };
//! let active: BTreeSet<String> = ["a", "b", "c"].into_iter().map(String::from).collect();
//! let invoice = preview(&contract, "2026-11", &active, &[]);
//! assert_eq!(invoice.pack_fee, Money::from_cents(2_000));
//! assert_eq!(invoice.overage_fee, Money::from_cents(1_250)); // 1 user × $10 × 1.25
//! assert_eq!(invoice.total, Money::from_cents(3_250));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Add, AddAssign, Mul};

use serde::{Deserialize, Serialize};

use crate::audit::export::csv_field;

/// An amount of US dollars, in micro-dollars.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// From micro-dollars.
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    /// From cents.
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents * 10_000)
    }

    /// In micro-dollars.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Rounded to cents, half away from zero.
    pub fn cents(self) -> i64 {
        let sign = self.0.signum();
        sign * ((self.0.abs() + 5_000) / 10_000)
    }

    /// `self × numerator ÷ denominator`, rounded half away from zero to a micro-dollar.
    pub fn scale(self, numerator: i64, denominator: i64) -> Money {
        let product = i128::from(self.0) * i128::from(numerator);
        let d = i128::from(denominator.max(1));
        let rounded = (product.abs() + d / 2) / d * product.signum();
        Money(i64::try_from(rounded).unwrap_or(i64::MAX))
    }

    /// Dollars with two decimals, e.g. `12.34`.
    pub fn to_decimal_string(self) -> String {
        let cents = self.cents();
        let sign = if cents < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.to_decimal_string())
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl Mul<u64> for Money {
    type Output = Money;
    fn mul(self, rhs: u64) -> Money {
        Money(
            self.0
                .saturating_mul(i64::try_from(rhs).unwrap_or(i64::MAX)),
        )
    }
}

/// The contracted user pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    /// Users included in the pack.
    pub pack_size: u32,
    /// Price per user per month.
    pub base_rate: Money,
}

impl Contract {
    /// The price of a user beyond the pack: 1.25× the base rate.
    pub fn overage_rate(&self) -> Money {
        self.base_rate.scale(5, 4)
    }
}

/// Claude API usage of one user with one model over the period, with its cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLine {
    /// The user (or app) who used it.
    pub user: String,
    /// The user's team, if known.
    #[serde(default)]
    pub team: Option<String>,
    /// The model.
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache-creation input tokens.
    #[serde(default)]
    pub cache_creation_tokens: u64,
    /// Cache-read input tokens.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Cost from the price table.
    pub cost: Money,
}

/// Token and cost totals for one user, team or model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache-creation input tokens.
    pub cache_creation_tokens: u64,
    /// Cache-read input tokens.
    pub cache_read_tokens: u64,
    /// Cost.
    pub cost: Money,
}

impl UsageTotals {
    fn add(&mut self, line: &UsageLine) {
        self.input_tokens += line.input_tokens;
        self.output_tokens += line.output_tokens;
        self.cache_creation_tokens += line.cache_creation_tokens;
        self.cache_read_tokens += line.cache_read_tokens;
        self.cost += line.cost;
    }
}

/// How to group usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Per user.
    User,
    /// Per team (`(no team)` for users without one).
    Team,
    /// Per model.
    Model,
}

/// Sums usage per user, team or model.
pub fn usage_by(usage: &[UsageLine], group: GroupBy) -> BTreeMap<String, UsageTotals> {
    let mut totals: BTreeMap<String, UsageTotals> = BTreeMap::new();
    for line in usage {
        let key = match group {
            GroupBy::User => line.user.clone(),
            GroupBy::Team => line.team.clone().unwrap_or_else(|| "(no team)".into()),
            GroupBy::Model => line.model.clone(),
        };
        totals.entry(key).or_default().add(line);
    }
    totals
}

/// The invoice a month's activity implies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoicePreview {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Users in the pack.
    pub pack_size: u32,
    /// Distinct users active this month.
    pub active_users: u32,
    /// Active users beyond the pack.
    pub overage_users: u32,
    /// Price of the pack.
    pub pack_fee: Money,
    /// Price per user beyond the pack (1.25× base).
    pub overage_rate: Money,
    /// Overage users × overage rate.
    pub overage_fee: Money,
    /// Claude usage per model.
    pub usage_by_model: BTreeMap<String, UsageTotals>,
    /// Sum of usage costs.
    pub usage_fee: Money,
    /// Everything.
    pub total: Money,
}

/// Computes the invoice for `month` from the distinct active users and the usage lines.
pub fn preview(
    contract: &Contract,
    month: &str,
    active_users: &BTreeSet<String>,
    usage: &[UsageLine],
) -> InvoicePreview {
    let active = u32::try_from(active_users.len()).unwrap_or(u32::MAX);
    let overage_users = active.saturating_sub(contract.pack_size);
    let pack_fee = contract.base_rate * u64::from(contract.pack_size);
    let overage_rate = contract.overage_rate();
    let overage_fee = overage_rate * u64::from(overage_users);
    let usage_by_model = usage_by(usage, GroupBy::Model);
    let usage_fee = usage_by_model
        .values()
        .fold(Money::ZERO, |sum, t| sum + t.cost);
    InvoicePreview {
        month: month.to_owned(),
        pack_size: contract.pack_size,
        active_users: active,
        overage_users,
        pack_fee,
        overage_rate,
        overage_fee,
        usage_by_model,
        usage_fee,
        total: pack_fee + overage_fee + usage_fee,
    }
}

impl InvoicePreview {
    /// The invoice as CSV: `item,quantity,unit_price_usd,amount_usd`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("item,quantity,unit_price_usd,amount_usd\n");
        let mut row = |item: &str, quantity: String, unit: String, amount: Money| {
            out.push_str(&format!(
                "{},{},{},{}\n",
                csv_field(item),
                quantity,
                unit,
                amount.to_decimal_string()
            ));
        };
        row(
            &format!("User pack {} ({} users)", self.month, self.pack_size),
            "1".into(),
            self.pack_fee.to_decimal_string(),
            self.pack_fee,
        );
        row(
            &format!(
                "Users beyond the pack at 1.25x ({} active)",
                self.active_users
            ),
            self.overage_users.to_string(),
            self.overage_rate.to_decimal_string(),
            self.overage_fee,
        );
        for (model, totals) in &self.usage_by_model {
            let tokens = totals.input_tokens
                + totals.output_tokens
                + totals.cache_creation_tokens
                + totals.cache_read_tokens;
            row(
                &format!("Claude usage: {model} (tokens)"),
                tokens.to_string(),
                String::new(),
                totals.cost,
            );
        }
        row("Total", String::new(), String::new(), self.total);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    fn line(user: &str, team: Option<&str>, model: &str, cost_cents: i64) -> UsageLine {
        UsageLine {
            user: user.into(),
            team: team.map(Into::into),
            model: model.into(),
            input_tokens: 100,
            output_tokens: 50,
            cache_creation_tokens: 0,
            cache_read_tokens: 10,
            cost: Money::from_cents(cost_cents),
        }
    }

    #[test]
    fn within_the_pack_there_is_no_overage() {
        let c = Contract {
            pack_size: 10,
            base_rate: Money::from_cents(2_500),
        };
        for n in [0, 1, 10] {
            let inv = preview(&c, "2026-11", &users(n), &[]);
            assert_eq!(inv.overage_users, 0);
            assert_eq!(inv.overage_fee, Money::ZERO);
            assert_eq!(inv.total, Money::from_cents(25_000));
        }
    }

    #[test]
    fn users_beyond_the_pack_cost_one_and_a_quarter() {
        let c = Contract {
            pack_size: 10,
            base_rate: Money::from_cents(2_500),
        };
        let inv = preview(&c, "2026-11", &users(13), &[]);
        assert_eq!(inv.active_users, 13);
        assert_eq!(inv.overage_users, 3);
        assert_eq!(inv.overage_rate, Money::from_cents(3_125));
        assert_eq!(inv.overage_fee, Money::from_cents(9_375));
        assert_eq!(inv.total, Money::from_cents(34_375));
    }

    #[test]
    fn odd_rates_round_once() {
        let c = Contract {
            pack_size: 0,
            base_rate: Money::from_cents(999),
        };
        // 9.99 × 1.25 = 12.4875 exactly in micro-dollars.
        assert_eq!(c.overage_rate(), Money::from_micros(12_487_500));
        let inv = preview(&c, "2026-11", &users(4), &[]);
        assert_eq!(inv.overage_fee, Money::from_micros(49_950_000));
        assert_eq!(inv.total.to_decimal_string(), "49.95");
    }

    #[test]
    fn usage_is_summed_by_user_team_and_model() {
        let usage = [
            line("alice", Some("data"), "opus", 300),
            line("alice", Some("data"), "haiku", 5),
            line("bob", None, "opus", 100),
        ];
        let by_user = usage_by(&usage, GroupBy::User);
        assert_eq!(by_user["alice"].cost, Money::from_cents(305));
        assert_eq!(by_user["alice"].input_tokens, 200);
        let by_team = usage_by(&usage, GroupBy::Team);
        assert_eq!(by_team["(no team)"].cost, Money::from_cents(100));
        let by_model = usage_by(&usage, GroupBy::Model);
        assert_eq!(by_model["opus"].cost, Money::from_cents(400));
        let c = Contract {
            pack_size: 5,
            base_rate: Money::from_cents(1_000),
        };
        let inv = preview(&c, "2026-11", &users(2), &usage);
        assert_eq!(inv.usage_fee, Money::from_cents(405));
        assert_eq!(inv.total, Money::from_cents(5_405));
    }

    #[test]
    fn invoice_csv_has_every_line_and_the_total() {
        let c = Contract {
            pack_size: 1,
            base_rate: Money::from_cents(1_000),
        };
        let usage = [line("alice", None, "model,with-comma", 42)];
        let csv = preview(&c, "2026-11", &users(3), &usage).to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "item,quantity,unit_price_usd,amount_usd");
        assert_eq!(lines[1], "User pack 2026-11 (1 users),1,10.00,10.00");
        assert_eq!(
            lines[2],
            "Users beyond the pack at 1.25x (3 active),2,12.50,25.00"
        );
        assert_eq!(
            lines[3],
            "\"Claude usage: model,with-comma (tokens)\",160,,0.42"
        );
        assert_eq!(lines[4], "Total,,,35.42");
    }
}
