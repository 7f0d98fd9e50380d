//! Which context attributes a policy can read, worked out once at compile time, so a
//! decision builds only the context attributes its selected policies look at.
//!
//! Building the context is most of the cost of a Cedar decision: an `ipaddr` or `datetime`
//! value is an extension call that Cedar evaluates (parses) each time. Leaving out an
//! attribute that no evaluated policy mentions cannot change the decision, its determining
//! policies or its errors: a policy that never names the attribute cannot observe whether
//! it is there. The analysis is conservative: a policy that uses `context` in any way other
//! than `context.<attr>` or `context has <attr>` (for example comparing the whole record)
//! is marked as reading everything.

use serde_json::Value;

/// A context attribute the engine can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContextAttr {
    Time,
    Hour,
    Weekday,
    ToolArguments,
    ToolArgumentsUnmatched,
    Betas,
    ClientIp,
    Model,
    MaxTokens,
    Stream,
}

impl ContextAttr {
    const ALL: [ContextAttr; 10] = [
        Self::Time,
        Self::Hour,
        Self::Weekday,
        Self::ToolArguments,
        Self::ToolArgumentsUnmatched,
        Self::Betas,
        Self::ClientIp,
        Self::Model,
        Self::MaxTokens,
        Self::Stream,
    ];

    /// The attribute's name in the Cedar context.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Hour => "hour",
            Self::Weekday => "weekday",
            Self::ToolArguments => "tool_arguments",
            Self::ToolArgumentsUnmatched => "tool_arguments_unmatched",
            Self::Betas => "betas",
            Self::ClientIp => "client_ip",
            Self::Model => "model",
            Self::MaxTokens => "max_tokens",
            Self::Stream => "stream",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of context attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ContextReads(u16);

impl ContextReads {
    /// Every attribute (what the unindexed reference evaluation and listings build).
    pub(crate) const ALL: Self = Self(u16::MAX);

    /// No attribute.
    pub(crate) const NONE: Self = Self(0);

    /// The set holding `attr` alone.
    pub(crate) fn only(attr: ContextAttr) -> Self {
        Self(attr.bit())
    }

    /// Whether `attr` is in the set.
    pub(crate) fn contains(self, attr: ContextAttr) -> bool {
        self.0 & attr.bit() != 0
    }

    /// The union of two sets.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The attributes `policy` can read.
    pub(crate) fn of_policy(policy: &cedar_policy::Policy) -> Self {
        match policy.to_json() {
            Ok(json) => {
                let mut reads = Self::NONE;
                collect(&json, &mut reads);
                reads
            }
            // Cannot analyse it: assume it reads everything.
            Err(_) => Self::ALL,
        }
    }

    fn add(&mut self, attr: &str) {
        // An attribute the engine never builds is absent either way.
        if let Some(attr) = ContextAttr::from_name(attr) {
            self.0 |= attr.bit();
        }
    }
}

fn is_context_var(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.get("Var").and_then(Value::as_str) == Some("context"))
}

/// `{".": {"left": L, "attr": "a"}}` or `{"has": {…}}`: the left operand and attribute name.
fn attribute_access(map: &serde_json::Map<String, Value>) -> Option<(&Value, &str)> {
    if map.len() != 1 {
        return None;
    }
    let inner = map.get(".").or_else(|| map.get("has"))?.as_object()?;
    if inner.len() != 2 {
        return None;
    }
    Some((inner.get("left")?, inner.get("attr")?.as_str()?))
}

/// Walks a policy's JSON form (Cedar's EST), noting context attribute accesses.
fn collect(value: &Value, reads: &mut ContextReads) {
    if *reads == ContextReads::ALL {
        return;
    }
    match value {
        Value::Object(map) => {
            if is_context_var(value) {
                // `context` used as a whole value.
                *reads = ContextReads::ALL;
                return;
            }
            if let Some((left, attr)) = attribute_access(map) {
                if is_context_var(left) {
                    reads.add(attr);
                    return;
                }
            }
            for item in map.values() {
                collect(item, reads);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, reads);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn reads(text: &str) -> ContextReads {
        ContextReads::of_policy(&cedar_policy::Policy::from_str(text).unwrap())
    }

    #[test]
    fn attribute_accesses_are_found_and_whole_context_uses_read_everything() {
        let office = reads(
            r#"forbid (principal, action, resource)
               unless { context has client_ip && context.client_ip.isInRange(ip("10.0.0.0/8")) };"#,
        );
        assert!(office.contains(ContextAttr::ClientIp));
        assert!(!office.contains(ContextAttr::Time));
        assert_ne!(office, ContextReads::ALL);

        assert_eq!(
            reads("permit (principal, action, resource);"),
            ContextReads::NONE
        );

        let nested = reads(
            r#"permit (principal, action, resource)
               when { context.tool_arguments.query like "*x*" && context.hour < 6 };"#,
        );
        assert!(nested.contains(ContextAttr::ToolArguments));
        assert!(nested.contains(ContextAttr::Hour));
        assert!(!nested.contains(ContextAttr::Time));

        // The whole record, in a comparison, a set or a record literal: everything.
        for text in [
            r#"permit (principal, action, resource) when { context == {} };"#,
            r#"permit (principal, action, resource) when { [context].isEmpty() };"#,
            r#"permit (principal, action, resource) when { {".": context}["."] has hour };"#,
        ] {
            assert_eq!(reads(text), ContextReads::ALL, "{text}");
        }
    }

    #[test]
    fn unknown_attributes_add_nothing() {
        let r = reads(r#"permit (principal, action, resource) when { context has nope };"#);
        assert_eq!(r, ContextReads::NONE);
    }
}
