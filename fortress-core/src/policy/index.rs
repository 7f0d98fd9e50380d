//! The (action, resource) index: for a request, the exact list of policies whose action and
//! resource scope constraints hold, so evaluation touches only policies that can apply.
//!
//! Scope constraints never error and are conjoined with the conditions, so a policy whose
//! scope does not hold can neither be satisfied nor fail; leaving it out gives the same
//! decision, the same determining policies and the same errors. The index is exact, not a
//! superset, which also lets a selection of condition-free policies be decided by principal
//! scope alone.

use std::collections::HashMap;

use cedar_policy::{ActionConstraint, EntityTypeName, EntityUid, Policy, ResourceConstraint};

use super::schema::FortressSchema;
use super::translate::ResourcePart;

/// Policies (by position in the set) that apply to one action, by resource constraint.
#[derive(Debug, Default)]
struct ActionBucket {
    any: Vec<u32>,
    is: HashMap<EntityTypeName, Vec<u32>>,
    eq: HashMap<EntityUid, Vec<u32>>,
    within: HashMap<EntityUid, Vec<u32>>,
    is_within: HashMap<EntityUid, Vec<(EntityTypeName, u32)>>,
}

/// The index of one policy set.
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex {
    actions: HashMap<String, ActionBucket>,
}

impl PolicyIndex {
    /// Indexes `policies` for every action the schema declares.
    pub(crate) fn build(schema: &FortressSchema, policies: &[Policy]) -> Self {
        let mut actions: HashMap<String, ActionBucket> = HashMap::new();
        for (name, info) in schema.actions() {
            let bucket = actions.entry(name.to_owned()).or_default();
            for (position, policy) in policies.iter().enumerate() {
                let position = position as u32;
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(uid) => uid == info.uid,
                    ActionConstraint::In(list) => {
                        list.iter().any(|u| info.self_and_ancestors.contains(u))
                    }
                };
                if !applies {
                    continue;
                }
                match policy.resource_constraint() {
                    ResourceConstraint::Any => bucket.any.push(position),
                    ResourceConstraint::Is(ty) => bucket.is.entry(ty).or_default().push(position),
                    ResourceConstraint::Eq(uid) => bucket.eq.entry(uid).or_default().push(position),
                    ResourceConstraint::In(uid) => {
                        bucket.within.entry(uid).or_default().push(position)
                    }
                    ResourceConstraint::IsIn(ty, uid) => {
                        bucket
                            .is_within
                            .entry(uid)
                            .or_default()
                            .push((ty, position));
                    }
                }
            }
        }
        Self { actions }
    }

    /// The positions, ascending, of the policies whose scope admits `action` on `resource`.
    pub(crate) fn candidates(&self, action: &str, resource: &ResourcePart) -> Vec<u32> {
        let Some(bucket) = self.actions.get(action) else {
            return Vec::new();
        };
        let mut out = bucket.any.clone();
        if let Some(list) = bucket.is.get(resource.ty) {
            out.extend_from_slice(list);
        }
        if let Some(list) = bucket.eq.get(&resource.uid) {
            out.extend_from_slice(list);
        }
        for uid in std::iter::once(&resource.uid).chain(&resource.ancestors) {
            if let Some(list) = bucket.within.get(uid) {
                out.extend_from_slice(list);
            }
            if let Some(list) = bucket.is_within.get(uid) {
                out.extend(
                    list.iter()
                        .filter(|(ty, _)| ty == resource.ty)
                        .map(|(_, p)| *p),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
