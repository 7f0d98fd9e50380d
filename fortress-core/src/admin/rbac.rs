//! Admin roles and what each may do.
//!
//! | role | may |
//! | --- | --- |
//! | owner | everything, including managing admins and terminating the workspace |
//! | admin | every management action except managing admins and terminating |
//! | auditor | read everything and export the audit trail; changes nothing |
//! | viewer | read the boards; exports nothing, changes nothing |
//!
//! ```
//! use fortress_core::admin::rbac::{Permission, Role};
//!
//! assert!(Role::Auditor.allows(Permission::ExportAudit));
//! assert!(!Role::Auditor.allows(Permission::KillSwitch));
//! assert!(!Role::Viewer.allows(Permission::ExportAudit));
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An admin account's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full control.
    Owner,
    /// Manages the gateway, not the admins.
    Admin,
    /// Reads and exports; changes nothing.
    Auditor,
    /// Reads the boards only.
    Viewer,
}

/// One thing an admin may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Permission {
    /// Status Board, Traffic Feed, Billing, Change Log, configuration (without secrets).
    Read,
    /// Export the audit trail or an invoice.
    ExportAudit,
    /// Add or remove connectors.
    ManageConnectors,
    /// Issue, rotate or revoke gateway keys.
    ManageKeys,
    /// Put, rotate, revoke or delete vault credentials.
    ManageCredentials,
    /// Flip kill switches.
    KillSwitch,
    /// Change policies.
    EditPolicy,
    /// Change settings such as retention.
    ManageSettings,
    /// Create, change or remove admin accounts and API tokens of others.
    ManageAdmins,
    /// Terminate a workspace.
    TerminateWorkspace,
}

impl Role {
    /// Whether the role grants `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(permission, ManageAdmins | TerminateWorkspace),
            Role::Auditor => matches!(permission, Read | ExportAudit),
            Role::Viewer => matches!(permission, Read),
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of owner, admin, auditor, viewer.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?} (expected owner, admin, auditor or viewer)")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGES: [Permission; 8] = [
        Permission::ManageConnectors,
        Permission::ManageKeys,
        Permission::ManageCredentials,
        Permission::KillSwitch,
        Permission::EditPolicy,
        Permission::ManageSettings,
        Permission::ManageAdmins,
        Permission::TerminateWorkspace,
    ];

    #[test]
    fn auditors_and_viewers_change_nothing() {
        for p in CHANGES {
            assert!(!Role::Auditor.allows(p), "{p:?}");
            assert!(!Role::Viewer.allows(p), "{p:?}");
            assert!(Role::Owner.allows(p), "{p:?}");
        }
        assert!(Role::Admin.allows(Permission::KillSwitch));
        assert!(!Role::Admin.allows(Permission::ManageAdmins));
    }

    #[test]
    fn only_viewers_cannot_export() {
        assert!(!Role::Viewer.allows(Permission::ExportAudit));
        for r in [Role::Owner, Role::Admin, Role::Auditor] {
            assert!(r.allows(Permission::ExportAudit));
            assert!(r.allows(Permission::Read));
        }
    }

    #[test]
    fn roles_parse_from_their_names() {
        for r in [Role::Owner, Role::Admin, Role::Auditor, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
