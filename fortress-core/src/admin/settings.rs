//! The deployment's commercial and service settings that the boards compute with.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::billing::{Contract, Money};
use super::uptime::{Commitment, UptimePolicy};
use crate::tier::Tier;

/// What the deployment was sold: tier, fee, pack and uptime commitment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminSettings {
    /// The service tier.
    pub tier: Tier,
    /// The monthly fee the service credit is computed on.
    pub monthly_fee: Money,
    /// The user pack.
    pub contract: Contract,
    /// The uptime commitment and credit cap.
    pub commitment: Commitment,
    /// The downtime definition's thresholds.
    pub uptime_policy: UptimePolicy,
    /// How long the audit trail is kept, per tier.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Workspaces whose audit events record tool arguments, redacted (every other
    /// workspace: the keyed digest only). Applied live to the gateway's audit layer.
    #[serde(default)]
    pub redacted_arguments: BTreeSet<String>,
}

/// Audit retention in days for each tier; the deployment's tier picks the one in force.
/// Defaults to the service agreements' promise (SOHO 90 days, Bank one year, Zero Trust
/// seven years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// SOHO.
    pub soho: u32,
    /// Bank.
    pub bank: u32,
    /// Zero Trust.
    pub zero_trust: u32,
}

impl RetentionSettings {
    /// The longest retention accepted: ten years.
    pub const MAX_DAYS: u32 = 3_650;

    /// The days kept for `tier`.
    pub fn days_for(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Soho => self.soho,
            Tier::Bank => self.bank,
            Tier::ZeroTrust => self.zero_trust,
        }
    }

    /// Checks that every value is between one day and [`MAX_DAYS`](Self::MAX_DAYS).
    pub fn validate(&self) -> Result<(), String> {
        for (tier, days) in [
            (Tier::Soho, self.soho),
            (Tier::Bank, self.bank),
            (Tier::ZeroTrust, self.zero_trust),
        ] {
            if !(1..=Self::MAX_DAYS).contains(&days) {
                return Err(format!(
                    "retention for {tier} must be 1 to {} days, got {days}",
                    Self::MAX_DAYS
                ));
            }
        }
        Ok(())
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            soho: Tier::Soho.audit_retention_days(),
            bank: Tier::Bank.audit_retention_days(),
            zero_trust: Tier::ZeroTrust.audit_retention_days(),
        }
    }
}

impl AdminSettings {
    /// Defaults for a tier: its commitment, a $0 fee and an empty pack until configured.
    pub fn for_tier(tier: Tier) -> Self {
        Self {
            tier,
            monthly_fee: Money::ZERO,
            contract: Contract {
                pack_size: 0,
                base_rate: Money::ZERO,
            },
            commitment: Commitment::for_tier(tier),
            uptime_policy: UptimePolicy::default(),
            retention: RetentionSettings::default(),
            redacted_arguments: BTreeSet::new(),
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self::for_tier(Tier::Soho)
    }
}
