//! The Fortress Cedar schema, and what the engine pre-computes from it once per policy set:
//! each action's entity uid, its ancestors (action groups), its action entities, and the
//! principal and resource types it applies to.
//!
//! ```
//! use fortress_core::policy::schema::{FORTRESS_SCHEMA, FortressSchema};
//!
//! assert!(FORTRESS_SCHEMA.contains("action \"tools/call\""));
//! let schema = FortressSchema::compile(&[]).unwrap();
//! assert!(schema.action("tools/call").is_some());
//! ```

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, Schema, SchemaFragment};
use miette::Diagnostic;

use super::PolicyError;
use super::documents::{Document, invalid_at};
use crate::call::ResourceKind;

/// The Fortress schema in Cedar schema syntax (see `docs/policy.md`).
pub const FORTRESS_SCHEMA: &str = include_str!("fortress.cedarschema");

/// The default `ToolArguments` type, used when no fragment of the set defines one: no
/// declared attributes, so any arguments sent are reported as unmatched.
const DEFAULT_TOOL_ARGUMENTS: &str = "type ToolArguments = {};";

/// Pre-built entity type names, so requests never parse a type name.
pub(crate) struct Types {
    pub(crate) workspace: EntityTypeName,
    pub(crate) group: EntityTypeName,
    pub(crate) user: EntityTypeName,
    pub(crate) app: EntityTypeName,
    pub(crate) connector: EntityTypeName,
    pub(crate) tool: EntityTypeName,
    pub(crate) resource: EntityTypeName,
    pub(crate) prompt: EntityTypeName,
    pub(crate) model: EntityTypeName,
    pub(crate) endpoint: EntityTypeName,
}

fn type_name(name: &str) -> EntityTypeName {
    // The names are constants of this module; a failure is a bug caught by every test.
    EntityTypeName::from_str(name).unwrap_or_else(|_| panic!("invalid built-in type name {name}"))
}

pub(crate) static TYPES: LazyLock<Types> = LazyLock::new(|| Types {
    workspace: type_name("Workspace"),
    group: type_name("Group"),
    user: type_name("User"),
    app: type_name("App"),
    connector: type_name("Connector"),
    tool: type_name("Tool"),
    resource: type_name("Resource"),
    prompt: type_name("Prompt"),
    model: type_name("Model"),
    endpoint: type_name("Endpoint"),
});

impl Types {
    /// The entity type of a resource kind.
    pub(crate) fn of_resource(&self, kind: ResourceKind) -> &EntityTypeName {
        match kind {
            ResourceKind::Workspace => &self.workspace,
            ResourceKind::Connector => &self.connector,
            ResourceKind::Tool => &self.tool,
            ResourceKind::Resource => &self.resource,
            ResourceKind::Prompt => &self.prompt,
            ResourceKind::Model => &self.model,
            ResourceKind::Endpoint => &self.endpoint,
        }
    }

    /// An entity uid of type `ty`.
    pub(crate) fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// What the engine knows of one action.
#[derive(Debug)]
pub struct ActionInfo {
    pub(crate) uid: EntityUid,
    /// The action and every action group it is in.
    pub(crate) self_and_ancestors: Vec<EntityUid>,
    /// The action's entity and its groups' entities, for the request's entity store.
    pub(crate) entities: Vec<Entity>,
    principals: HashSet<String>,
    resources: HashSet<String>,
}

impl ActionInfo {
    /// Whether the schema declares the action for this principal and resource type.
    pub(crate) fn applies_to(&self, principal: &EntityTypeName, resource: &EntityTypeName) -> bool {
        self.principals.contains(principal.basename())
            && self.resources.contains(resource.basename())
    }

    /// The action's entity uid.
    pub fn uid(&self) -> &EntityUid {
        &self.uid
    }
}

/// The compiled schema of a policy set.
#[derive(Debug)]
pub struct FortressSchema {
    pub(crate) schema: Schema,
    actions: HashMap<String, ActionInfo>,
}

impl FortressSchema {
    /// Compiles the Fortress schema extended by the set's `.cedarschema` fragments.
    pub fn compile(extensions: &[&Document]) -> Result<Self, PolicyError> {
        let mut fragments = Vec::with_capacity(extensions.len() + 2);
        fragments.push(fragment("fortress.cedarschema", FORTRESS_SCHEMA)?);
        let mut defines_tool_arguments = false;
        for doc in extensions {
            defines_tool_arguments |= doc
                .text
                .split([';', '\n'])
                .any(|s| s.split_whitespace().take(2).eq(["type", "ToolArguments"]));
            fragments.push(fragment(&doc.name, &doc.text)?);
        }
        if !defines_tool_arguments {
            fragments.push(fragment("default ToolArguments", DEFAULT_TOOL_ARGUMENTS)?);
        }
        let schema =
            Schema::from_schema_fragments(fragments).map_err(|e| PolicyError::Invalid {
                line: 1,
                column: 1,
                message: format!("schema: {e}"),
            })?;
        let actions = Self::actions_of(&schema)?;
        Ok(Self { schema, actions })
    }

    fn actions_of(schema: &Schema) -> Result<HashMap<String, ActionInfo>, PolicyError> {
        let store = schema
            .action_entities()
            .map_err(|e| PolicyError::Evaluation(format!("schema actions: {e}")))?;
        let mut actions = HashMap::new();
        for uid in schema.actions() {
            let mut self_and_ancestors = vec![uid.clone()];
            if let Some(ancestors) = store.ancestors(uid) {
                self_and_ancestors.extend(ancestors.cloned());
            }
            let entities = self_and_ancestors
                .iter()
                .filter_map(|u| store.get(u).cloned())
                .collect();
            let principals = schema
                .principals_for_action(uid)
                .into_iter()
                .flatten()
                .map(|t| t.basename().to_owned())
                .collect();
            let resources = schema
                .resources_for_action(uid)
                .into_iter()
                .flatten()
                .map(|t| t.basename().to_owned())
                .collect();
            actions.insert(
                uid.id().unescaped().to_owned(),
                ActionInfo {
                    uid: uid.clone(),
                    self_and_ancestors,
                    entities,
                    principals,
                    resources,
                },
            );
        }
        Ok(actions)
    }

    /// The action named `name` (for example `tools/call`), if the schema declares it.
    pub fn action(&self, name: &str) -> Option<&ActionInfo> {
        self.actions.get(name)
    }

    /// Every declared action (not the action groups) by name.
    pub fn actions(&self) -> impl Iterator<Item = (&str, &ActionInfo)> {
        self.actions
            .iter()
            .filter(|(_, a)| !a.resources.is_empty())
            .map(|(n, a)| (n.as_str(), a))
    }

    /// The underlying Cedar schema.
    pub fn cedar(&self) -> &Schema {
        &self.schema
    }
}

fn fragment(name: &str, text: &str) -> Result<SchemaFragment, PolicyError> {
    SchemaFragment::from_cedarschema_str(text)
        .map(|(fragment, _warnings)| fragment)
        .map_err(|e| {
            let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
            invalid_at(name, text, offset, &e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Action;
    use crate::policy::documents::DocumentKind;

    #[test]
    fn every_built_in_action_is_declared_with_its_groups() {
        let schema = FortressSchema::compile(&[]).unwrap();
        for action in Action::BUILT_IN {
            assert!(schema.action(action.as_str()).is_some(), "{action}");
        }
        let call = schema.action("tools/call").unwrap();
        let groups: Vec<_> = call
            .self_and_ancestors
            .iter()
            .map(|u| u.id().unescaped().to_owned())
            .collect();
        assert!(groups.contains(&"tools".to_owned()) && groups.contains(&"mcp".to_owned()));
        assert!(call.applies_to(&TYPES.user, &TYPES.tool));
        assert!(!call.applies_to(&TYPES.user, &TYPES.model));
        assert_eq!(schema.actions().count(), Action::BUILT_IN.len());
    }

    #[test]
    fn fragments_extend_tool_arguments_and_errors_are_located() {
        let ok = Document {
            name: "args.cedarschema".into(),
            kind: DocumentKind::Schema,
            text: "type ToolArguments = { query?: String };".into(),
        };
        assert!(FortressSchema::compile(&[&ok]).is_ok());
        let bad = Document {
            name: "bad.cedarschema".into(),
            kind: DocumentKind::Schema,
            text: "\n  entity Foo = { a: };".into(),
        };
        match FortressSchema::compile(&[&bad]) {
            Err(PolicyError::Invalid { line, message, .. }) => {
                assert_eq!(line, 2);
                assert!(message.starts_with("bad.cedarschema"), "{message}");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}
