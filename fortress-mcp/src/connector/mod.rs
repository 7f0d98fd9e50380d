//! Declarative REST connectors: a SaaS API described in a TOML file appears as one more
//! upstream of the virtual server, with one MCP tool per described endpoint.
//!
//! ```text
//! tools/call ─▶ [governance stack: … ▸ credential from the vault] ─▶ RestUpstream
//!     validate arguments (JSON Schema) ▸ render path/query/body ▸ add the credential's
//!     auth header ▸ HTTPS request ▸ select the answer ▸ tool result
//! ```
//!
//! - [`definition`]: the file format, validated at load (`docs/connectors.md`).
//! - [`template`]: placeholder rendering with safe escaping.
//! - [`RestUpstream`]: the [`Upstream`](crate::upstream::Upstream) that serves a definition.
//! - [`builtin`]: definitions shipped in the crate (`zendesk`, `salesforce`).
//!
//! The credential is never configured here: the governance stack's credential layer
//! resolves it from the vault for each call and hands it over in
//! [`CallContext::credential`](crate::upstream::CallContext::credential); the connector
//! puts it on exactly that outbound request and drops it.
//!
//! ```
//! use fortress_mcp::connector::{builtin, RestOptions, RestUpstream};
//!
//! let definition = builtin("zendesk").unwrap();
//! let mut options = RestOptions::default();
//! options.base_url = Some("http://127.0.0.1:9".into());
//! options.settings.insert("email".into(), "agent@example.com".into());
//! let upstream = RestUpstream::new("zendesk", definition, options).unwrap();
//! # let _ = upstream;
//! ```

pub mod definition;
pub mod template;

mod auth;
mod response;
mod rest;
pub mod token;

use std::sync::Arc;

pub use definition::{Definition, DefinitionError};
pub use rest::{RestError, RestOptions, RestUpstream};

/// The built-in definitions: name and TOML text.
pub const BUILTIN: [(&str, &str); 2] = [
    ("zendesk", include_str!("../../connectors/zendesk.toml")),
    (
        "salesforce",
        include_str!("../../connectors/salesforce.toml"),
    ),
];

/// A built-in definition by name (`zendesk`, `salesforce`), parsed and validated.
pub fn builtin(name: &str) -> Option<Arc<Definition>> {
    let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    // The built-ins are validated by the test suite; a broken one is a build defect.
    Definition::from_toml(text).ok().map(Arc::new)
}

/// A definition named in configuration: a `.toml` path, or else a built-in name.
pub fn resolve_definition(reference: &str) -> Result<Arc<Definition>, DefinitionError> {
    if reference.ends_with(".toml") {
        return Definition::load(std::path::Path::new(reference)).map(Arc::new);
    }
    builtin(reference).ok_or_else(|| DefinitionError::Invalid {
        connector: reference.to_owned(),
        location: "definition".into(),
        message: format!(
            "no built-in connector has this name (built-in: {}; a file path must end in .toml)",
            BUILTIN.map(|(n, _)| n).join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_definitions_load() {
        for (name, text) in BUILTIN {
            let def = Definition::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(def.name(), name);
        }
        let zendesk = builtin("zendesk").unwrap();
        let names: Vec<&str> = zendesk.tools().iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "search_tickets",
                "get_ticket",
                "add_comment",
                "update_ticket"
            ]
        );
        let salesforce = builtin("salesforce").unwrap();
        let names: Vec<&str> = salesforce.tools().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["query", "get_record", "update_record"]);
        assert!(
            resolve_definition("nope")
                .unwrap_err()
                .to_string()
                .contains("zendesk, salesforce")
        );
    }
}
