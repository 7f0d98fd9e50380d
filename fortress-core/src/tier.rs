//! Service tiers and what they promise: credential isolation and audit retention.
//!
//! ```
//! use fortress_core::tier::{IsolationMode, Tier};
//!
//! assert_eq!(Tier::Bank.isolation(), IsolationMode::CustomerKey);
//! assert_eq!(Tier::ZeroTrust.audit_retention_days(), 7 * 365);
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A service tier from the service agreements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Managed keys, 90-day audit retention.
    Soho,
    /// Customer-held key-encryption key, one-year audit retention.
    Bank,
    /// Credentials fetched per request over mTLS and never stored, seven-year audit retention.
    ZeroTrust,
}

/// How a tier isolates credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationMode {
    /// A service-held master key wraps per-secret data keys.
    Managed,
    /// The customer's own key-encryption key wraps data keys; dropping it crypto-shreds.
    CustomerKey,
    /// The credential is fetched per request from the customer's endpoint over mTLS.
    MutualTls,
}

impl Tier {
    /// All tiers, cheapest first.
    pub const ALL: [Tier; 3] = [Tier::Soho, Tier::Bank, Tier::ZeroTrust];

    /// The tier's credential isolation mode.
    pub fn isolation(self) -> IsolationMode {
        match self {
            Self::Soho => IsolationMode::Managed,
            Self::Bank => IsolationMode::CustomerKey,
            Self::ZeroTrust => IsolationMode::MutualTls,
        }
    }

    /// How many days audit events are kept before permanent deletion.
    pub fn audit_retention_days(self) -> u32 {
        match self {
            Self::Soho => 90,
            Self::Bank => 365,
            Self::ZeroTrust => 7 * 365,
        }
    }

    /// The audit retention as a duration.
    pub fn audit_retention(self) -> Duration {
        Duration::from_secs(u64::from(self.audit_retention_days()) * 86_400)
    }

    /// The tier's configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soho => "soho",
            Self::Bank => "bank",
            Self::ZeroTrust => "zero_trust",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that is not one of `soho`, `bank`, `zero_trust`.
#[derive(Debug, thiserror::Error)]
#[error("unknown tier {0:?} (expected soho, bank or zero_trust)")]
pub struct UnknownTier(String);

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "soho" => Ok(Self::Soho),
            "bank" => Ok(Self::Bank),
            "zero_trust" | "zerotrust" => Ok(Self::ZeroTrust),
            _ => Err(UnknownTier(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_carry_their_promises() {
        assert_eq!("zero-trust".parse::<Tier>().unwrap(), Tier::ZeroTrust);
        assert!("gold".parse::<Tier>().is_err());
        assert_eq!(
            Tier::Soho.audit_retention(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(Tier::Soho.isolation(), IsolationMode::Managed);
        assert_eq!(Tier::ZeroTrust.isolation(), IsolationMode::MutualTls);
    }
}
