//! A deny-by-default allow list: the simplest useful policy, for tests and examples.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{PolicyEngine, PolicyError};
use crate::call::Call;
use crate::decision::Decision;

/// Who an [`AllowRule`] applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Any subject.
    Anyone,
    /// One subject by id.
    Subject(String),
    /// Members of a group.
    Group(String),
}

/// One allow rule: principal, action name (or `*`), and resource pattern.
///
/// Resource patterns match the resource's display form (`tool:zendesk/search`,
/// `model:claude-x`); a trailing `*` matches any suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// Who.
    pub principal: Principal,
    /// Action name, or `*`.
    pub action: String,
    /// Resource pattern.
    pub resource: String,
}

impl AllowRule {
    /// A rule for one subject.
    pub fn subject(id: &str, action: &str, resource: &str) -> Self {
        Self::of(Principal::Subject(id.into()), action, resource)
    }

    /// A rule for a group.
    pub fn group(group: &str, action: &str, resource: &str) -> Self {
        Self::of(Principal::Group(group.into()), action, resource)
    }

    /// A rule for anyone.
    pub fn anyone(action: &str, resource: &str) -> Self {
        Self::of(Principal::Anyone, action, resource)
    }

    fn of(principal: Principal, action: &str, resource: &str) -> Self {
        Self {
            principal,
            action: action.into(),
            resource: resource.into(),
        }
    }

    fn matches(&self, call: &Call) -> bool {
        let who = match &self.principal {
            Principal::Anyone => true,
            Principal::Subject(id) => *id == call.subject.id,
            Principal::Group(g) => call.subject.in_group(g),
        };
        let what = self.action == "*" || self.action == call.action.as_str();
        let on = match self.resource.strip_suffix('*') {
            Some(prefix) => call.resource.to_string().starts_with(prefix),
            None => self.resource == call.resource.to_string(),
        };
        who && what && on
    }

    fn id(&self, index: usize) -> String {
        format!("allow-{index}")
    }
}

/// Allows a call when any rule matches; denies otherwise.
#[derive(Clone, Debug)]
pub struct AllowListPolicy {
    rules: Vec<AllowRule>,
    version: String,
}

impl AllowListPolicy {
    /// Builds the policy; its version is a hash of the rules.
    pub fn new(rules: impl IntoIterator<Item = AllowRule>) -> Self {
        let rules: Vec<AllowRule> = rules.into_iter().collect();
        let mut hasher = Sha256::new();
        for rule in &rules {
            hasher.update(format!("{:?}\n", rule).as_bytes());
        }
        let version = hex::encode(&hasher.finalize()[..8]);
        Self { rules, version }
    }
}

#[async_trait]
impl PolicyEngine for AllowListPolicy {
    async fn decide(&self, call: &Call) -> Result<Decision, PolicyError> {
        match self.rules.iter().position(|r| r.matches(call)) {
            Some(index) => Ok(Decision::allow(&self.version)
                .with_policy(self.rules[index].id(index))
                .with_reason("allowed by an allow-list rule")),
            None => Ok(Decision::deny(&self.version).with_reason("no rule allows this call")),
        }
    }

    fn version(&self) -> String {
        self.version.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Action, Resource};
    use crate::subject::{Subject, WorkspaceId};

    fn call(groups: &[&str], action: Action, resource: Resource) -> Call {
        let s = Subject::user("u1", WorkspaceId::new("w")).with_groups(groups.iter().copied());
        Call::new(s, action, resource)
    }

    #[tokio::test]
    async fn denies_by_default_and_allows_matching_rules() {
        let p = AllowListPolicy::new([
            AllowRule::group("support", "tools/call", "tool:zendesk/search*"),
            AllowRule::subject("u1", "messages/create", "model:small"),
        ]);
        let ok = call(
            &["support"],
            Action::CallTool,
            Resource::tool("zendesk", "search_tickets"),
        );
        let d = p.decide(&ok).await.unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.policy_ids, vec!["allow-0"]);
        assert_eq!(d.policy_version, p.version());

        let no = call(
            &["support"],
            Action::CallTool,
            Resource::tool("zendesk", "delete_ticket"),
        );
        assert!(!p.decide(&no).await.unwrap().is_allowed());
        let other = call(&[], Action::CreateMessage, Resource::model("large"));
        assert!(!p.decide(&other).await.unwrap().is_allowed());
    }

    #[tokio::test]
    async fn decide_each_answers_in_order() {
        let p = AllowListPolicy::new([AllowRule::anyone("tools/list", "tool:gh/read*")]);
        let template = call(&[], Action::ListTools, Resource::workspace("w"));
        let got = p
            .decide_each(
                &template,
                &[
                    Resource::tool("gh", "read_file"),
                    Resource::tool("gh", "push"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(Decision::is_allowed).collect::<Vec<_>>(),
            [true, false]
        );
    }
}
