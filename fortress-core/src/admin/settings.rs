//! The deployment's commercial and service settings that the boards compute with.

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
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self::for_tier(Tier::Soho)
    }
}
