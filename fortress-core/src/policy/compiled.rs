//! A compiled policy set: parsed, schema-validated, indexed and versioned once, then shared
//! read-only by every evaluation until it is swapped out.
//!
//! ```
//! use fortress_core::call::{Action, Call, Resource};
//! use fortress_core::policy::compiled::CompiledSet;
//! use fortress_core::policy::documents::PolicyDocuments;
//! use fortress_core::subject::{Subject, WorkspaceId};
//!
//! let docs = PolicyDocuments::new().with_policies("p.cedar", r#"
//!     @id("support-search")
//!     permit (principal in Group::"support", action == Action::"tools/call",
//!             resource == Tool::"zendesk/search_tickets");
//! "#);
//! let set = CompiledSet::compile(&docs).unwrap();
//! let alice = Subject::user("alice", WorkspaceId::new("acme")).with_groups(["support"]);
//! let call = Call::new(alice, Action::CallTool, Resource::tool("zendesk", "search_tickets"));
//! let decision = set.decide(&call).unwrap();
//! assert!(decision.is_allowed());
//! assert_eq!(decision.policy_ids, ["support-search"]);
//! assert_eq!(decision.policy_version, set.version());
//! ```

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Authorizer, Entities, Policy, PolicyId, PolicySet, PrincipalConstraint, Request, Response,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Serialize;

use super::PolicyError;
use super::documents::{DocumentKind, PolicyDocuments, invalid_at};
use super::index::PolicyIndex;
use super::reads::ContextReads;
use super::request_cache::RequestCache;
use super::schema::{ActionInfo, FortressSchema};
use super::translate::{self, PrincipalPart, ResourcePart};
use crate::call::{Call, Resource};
use crate::decision::{Decision, Effect};
use crate::guard::limits::{LimitsConfig, LimitsError};

/// How many distinct candidate lists keep a pre-built policy set; past this, a set is built
/// per evaluation (still correct, slower).
const CACHE_LIMIT: usize = 4096;

/// Options for compiling a document set.
#[derive(Clone, Copy, Debug)]
pub struct CompileOptions {
    /// Validate policies against the schema (strict mode). On by default; turning it off is
    /// meant for tests that explore policies outside the schema.
    pub validate: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self { validate: true }
    }
}

/// One policy of the set, with what explain and the index need.
#[derive(Debug)]
struct Entry {
    policy: Policy,
    id: String,
    effect: Effect,
    /// Whether the policy has `when`/`unless` conditions (beyond its scope).
    conditional: bool,
    /// The principal scope, checked natively for condition-free selections.
    principal: PrincipalConstraint,
    /// The context attributes the policy can read.
    reads: ContextReads,
    /// The decision reason when the policy determines an allow.
    allow_reason: String,
    /// The decision reason when the policy determines a deny.
    deny_reason: String,
}

/// A pre-built Cedar policy set for one index selection, with the context attributes its
/// policies can read (the only ones a decision over it builds).
#[derive(Debug)]
struct Selection {
    set: PolicySet,
    reads: ContextReads,
}

/// A parsed, validated, indexed policy set with its limits.
#[derive(Debug)]
pub struct CompiledSet {
    version: String,
    schema: FortressSchema,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    full: Arc<Selection>,
    index: PolicyIndex,
    limits: Arc<LimitsConfig>,
    authorizer: Authorizer,
    cache: RwLock<HashMap<Box<[u32]>, Arc<Selection>>>,
    requests: RequestCache,
}

/// One determining or erroring policy in an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyTrace {
    /// Policy id.
    pub id: String,
    /// `permit` (allow) or `forbid` (deny).
    pub effect: Effect,
    /// The policy's Cedar text.
    pub text: String,
}

/// The answer to "would this call be allowed, and why".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision, as enforcement would return it.
    pub decision: Decision,
    /// Policies that determined the decision (satisfied permits for an allow, satisfied
    /// forbids for a deny; empty for a default deny).
    pub determining: Vec<PolicyTrace>,
    /// Evaluation errors (each denies: fail closed).
    pub errors: Vec<String>,
    /// How many policies the index selected for evaluation.
    pub evaluated: usize,
    /// How many policies the set holds.
    pub total: usize,
}

impl CompiledSet {
    /// Compiles a document set with schema validation.
    pub fn compile(docs: &PolicyDocuments) -> Result<Self, PolicyError> {
        Self::compile_with(docs, CompileOptions::default())
    }

    /// Compiles a document set. Any error names the document, line and column.
    pub fn compile_with(
        docs: &PolicyDocuments,
        options: CompileOptions,
    ) -> Result<Self, PolicyError> {
        let schema_docs: Vec<_> = docs.of_kind(DocumentKind::Schema).collect();
        let schema = FortressSchema::compile(&schema_docs)?;

        let mut entries: Vec<Entry> = Vec::new();
        let mut origin: HashMap<String, (usize, usize)> = HashMap::new(); // id -> (doc, ordinal)
        let policy_docs: Vec<_> = docs.of_kind(DocumentKind::Policies).collect();
        for (doc_index, doc) in policy_docs.iter().enumerate() {
            let parsed = PolicySet::from_str(&doc.text).map_err(|e| {
                let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
                invalid_at(&doc.name, &doc.text, offset, &e)
            })?;
            if let Some(template) = parsed.templates().next() {
                return Err(invalid_at(
                    &doc.name,
                    &doc.text,
                    None,
                    format!(
                        "template `{}`: templates are not supported in policy files",
                        template.id()
                    ),
                ));
            }
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            // Cedar numbers the policies of a text `policy0`, `policy1`, … in source order.
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (ordinal, policy) in policies.into_iter().enumerate() {
                let id = match policy.annotation("id") {
                    Some(id) => id.to_owned(),
                    None => format!("{}#{ordinal}", doc.name),
                };
                if origin.insert(id.clone(), (doc_index, ordinal)).is_some() {
                    let needle = format!("\"{id}\"");
                    return Err(invalid_at(
                        &doc.name,
                        &doc.text,
                        doc.text.find(&needle),
                        format!("duplicate policy id `{id}`"),
                    ));
                }
                let reason = policy.annotation("reason").map(str::to_owned);
                entries.push(Entry {
                    allow_reason: reason
                        .clone()
                        .unwrap_or_else(|| format!("permitted by policy `{id}`")),
                    deny_reason: reason.unwrap_or_else(|| format!("forbidden by policy `{id}`")),
                    reads: ContextReads::of_policy(policy),
                    policy: policy.new_id(PolicyId::new(&id)),
                    effect: match policy.effect() {
                        cedar_policy::Effect::Permit => Effect::Allow,
                        cedar_policy::Effect::Forbid => Effect::Deny,
                    },
                    conditional: policy.has_non_scope_constraint(),
                    principal: policy.principal_constraint(),
                    id,
                });
            }
        }
        let full = PolicySet::from_policies(entries.iter().map(|e| e.policy.clone()))
            .map_err(|e| PolicyError::Evaluation(format!("policy set: {e}")))?;
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();

        if options.validate {
            let validator = Validator::new(schema.schema.clone());
            let result = validator.validate(&full, ValidationMode::Strict);
            if let Some(error) = result.validation_errors().next() {
                let id = error.policy_id().to_string();
                let offset = error
                    .labels()
                    .and_then(|mut l| l.next())
                    .map(|l| l.offset());
                let (name, text) = match origin.get(&id) {
                    Some((doc, _)) => (
                        policy_docs[*doc].name.as_str(),
                        policy_docs[*doc].text.as_str(),
                    ),
                    None => ("policies", ""),
                };
                return Err(invalid_at(
                    name,
                    text,
                    offset,
                    format!("policy `{id}`: {error}"),
                ));
            }
        }

        let limits = match docs.of_kind(DocumentKind::Limits).next() {
            None => LimitsConfig::none(),
            Some(doc) => LimitsConfig::from_toml(&doc.text).map_err(|e| match e {
                LimitsError::Syntax {
                    offset,
                    ref message,
                } => invalid_at(&doc.name, &doc.text, offset, message),
                LimitsError::Rule { ref id, .. } => {
                    let needle = format!("\"{id}\"");
                    let offset = doc
                        .text
                        .find(&needle)
                        .or_else(|| doc.text.find(&format!("'{id}'")));
                    invalid_at(&doc.name, &doc.text, offset, &e)
                }
            })?,
        };

        let policies: Vec<Policy> = entries.iter().map(|e| e.policy.clone()).collect();
        let index = PolicyIndex::build(&schema, &policies);
        Ok(Self {
            version: docs.version(),
            schema,
            entries,
            by_id,
            // The unindexed reference builds the whole context, as a plain evaluation would.
            full: Arc::new(Selection {
                set: full,
                reads: ContextReads::ALL,
            }),
            index,
            limits: Arc::new(limits),
            authorizer: Authorizer::new(),
            cache: RwLock::new(HashMap::new()),
            requests: RequestCache::default(),
        })
    }

    /// The content hash of the documents this set was compiled from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no policy (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ids of the policies, in document order.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.id.as_str())
    }

    /// The rate limits shipped with this set.
    pub fn limits(&self) -> &Arc<LimitsConfig> {
        &self.limits
    }

    /// The compiled schema.
    pub fn schema(&self) -> &FortressSchema {
        &self.schema
    }

    /// Decides `call` evaluating only the policies the index selects. The principal side
    /// and the entity store come from this set's caches, and the context holds only the
    /// attributes the selected policies can read.
    pub fn decide(&self, call: &Call) -> Result<Decision, PolicyError> {
        let principal = self.requests.principal(&call.subject)?;
        let resource = translate::resource(&call.resource, &principal.workspace);
        self.evaluate(call, &principal, &resource, true)
            .map(|(d, _)| d)
    }

    /// Decides `call` evaluating every policy of the set, with a freshly built request and
    /// the whole context (the reference the index and the caches are checked against, and
    /// the baseline of the benchmarks).
    pub fn decide_unindexed(&self, call: &Call) -> Result<Decision, PolicyError> {
        let principal = translate::principal(&call.subject)?;
        let resource = translate::resource(&call.resource, &principal.workspace);
        self.evaluate(call, &principal, &resource, false)
            .map(|(d, _)| d)
    }

    /// Decides, for a listing, each candidate resource in one pass: the principal is built
    /// once and the context at most once; a candidate whose selected policies hold no
    /// `permit` is denied without evaluation; a candidate whose selected policies are all
    /// condition-free is decided by principal scope without Cedar.
    pub fn decide_each(
        &self,
        template: &Call,
        candidates: &[Resource],
    ) -> Result<Vec<Decision>, PolicyError> {
        let principal = self.requests.principal(&template.subject)?;
        let action_name = template.action.as_str();
        let action = self.action_info(action_name)?;
        // Fail as a full context would, even when no candidate needs one.
        translate::check_attributes(template)?;
        let mut context = None;
        let mut out = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let resource = translate::resource(candidate, &principal.workspace);
            if !action.applies_to(principal.uid.type_name(), resource.ty) {
                out.push(self.not_applicable(action_name, resource.ty.basename()));
                continue;
            }
            let selected = self.index.candidates(action_name, &resource);
            if !selected
                .iter()
                .any(|&p| self.entries[p as usize].effect == Effect::Allow)
            {
                out.push(
                    Decision::deny(&self.version)
                        .with_reason("no policy permits this call (default deny)"),
                );
                continue;
            }
            if selected
                .iter()
                .all(|&p| !self.entries[p as usize].conditional)
            {
                out.push(self.decide_scopes(&principal, &selected));
                continue;
            }
            let selection = self.set_for(&selected);
            let context = match &context {
                Some(context) => context,
                None => context.insert(translate::context(
                    template,
                    &self.schema,
                    action,
                    ContextReads::ALL,
                )?),
            };
            let entities =
                self.requests
                    .entities(&template.subject, action_name, candidate, || {
                        Self::entities(&principal, action, &resource)
                    })?;
            let response = self.authorize(
                &principal,
                action,
                &resource,
                context.clone(),
                &selection.set,
                &entities,
            )?;
            out.push(self.decision_of(&response));
        }
        Ok(out)
    }

    /// Decides `call` and says why, with the text of the determining policies.
    pub fn explain(&self, call: &Call) -> Result<Explanation, PolicyError> {
        let principal = self.requests.principal(&call.subject)?;
        let resource = translate::resource(&call.resource, &principal.workspace);
        let (decision, evaluated) = self.evaluate(call, &principal, &resource, true)?;
        let determining = decision
            .policy_ids
            .iter()
            .filter_map(|id| self.entry(id))
            .map(|e| PolicyTrace {
                id: e.id.clone(),
                effect: e.effect,
                text: e.policy.to_cedar().unwrap_or_else(|| e.policy.to_string()),
            })
            .collect();
        let errors = decision
            .reasons
            .iter()
            .filter(|r| r.starts_with("evaluation error"))
            .cloned()
            .collect();
        Ok(Explanation {
            decision,
            determining,
            errors,
            evaluated,
            total: self.entries.len(),
        })
    }

    fn entry(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    fn action_info(&self, name: &str) -> Result<&ActionInfo, PolicyError> {
        self.schema
            .action(name)
            .ok_or_else(|| PolicyError::Request(format!("action `{name}` is not in the schema")))
    }

    fn not_applicable(&self, action: &str, resource_type: &str) -> Decision {
        Decision::deny(&self.version).with_reason(format!(
            "action `{action}` does not apply to a {resource_type} (default deny)"
        ))
    }

    fn evaluate(
        &self,
        call: &Call,
        principal: &PrincipalPart,
        resource: &ResourcePart,
        indexed: bool,
    ) -> Result<(Decision, usize), PolicyError> {
        let action_name = call.action.as_str();
        let action = self.action_info(action_name)?;
        if !action.applies_to(principal.uid.type_name(), resource.ty) {
            return Ok((self.not_applicable(action_name, resource.ty.basename()), 0));
        }
        let (selection, evaluated) = if indexed {
            let selected = self.index.candidates(action_name, resource);
            if selected.is_empty() {
                // Nothing can apply: the answer is a default deny without evaluation.
                let d = Decision::deny(&self.version)
                    .with_reason("no policy permits this call (default deny)");
                return Ok((d, 0));
            }
            let n = selected.len();
            if selected
                .iter()
                .all(|&p| !self.entries[p as usize].conditional)
            {
                // Scopes only: the index already checked action and resource exactly, so
                // the principal scope decides; no context, entities or Cedar evaluation.
                translate::check_attributes(call)?;
                return Ok((self.decide_scopes(principal, &selected), n));
            }
            (self.set_for(&selected), n)
        } else {
            (Arc::clone(&self.full), self.entries.len())
        };
        let context = if indexed {
            // A cached context skips building, so check what building would refuse.
            translate::check_attributes(call)?;
            let key = translate::ContextKey::of(call, selection.reads);
            self.requests.context(key, || {
                translate::context(call, &self.schema, action, selection.reads)
            })?
        } else {
            translate::context(call, &self.schema, action, selection.reads)?
        };
        let entities = if indexed {
            self.requests
                .entities(&call.subject, action_name, &call.resource, || {
                    Self::entities(principal, action, resource)
                })?
        } else {
            Arc::new(Self::entities(principal, action, resource)?)
        };
        let response = self.authorize(
            principal,
            action,
            resource,
            context,
            &selection.set,
            &entities,
        )?;
        Ok((self.decision_of(&response), evaluated))
    }

    /// The entity store of a request: the principal side, the resource side and the
    /// action with its groups.
    fn entities(
        principal: &PrincipalPart,
        action: &ActionInfo,
        resource: &ResourcePart,
    ) -> Result<Entities, PolicyError> {
        Entities::from_entities(
            principal
                .entities
                .iter()
                .cloned()
                .chain(translate::resource_entities(resource, &principal.workspace))
                .chain(action.entities.iter().cloned()),
            None,
        )
        .map_err(|e| PolicyError::Request(format!("entities: {e}")))
    }

    fn authorize(
        &self,
        principal: &PrincipalPart,
        action: &ActionInfo,
        resource: &ResourcePart,
        context: cedar_policy::Context,
        set: &PolicySet,
        entities: &Entities,
    ) -> Result<Response, PolicyError> {
        let request = Request::new(
            principal.uid.clone(),
            action.uid.clone(),
            resource.uid.clone(),
            context,
            None,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok(self.authorizer.is_authorized(&request, set, entities))
    }

    /// The pre-built policy set holding exactly the `selected` policies.
    fn set_for(&self, selected: &[u32]) -> Arc<Selection> {
        if let Ok(cache) = self.cache.read() {
            if let Some(selection) = cache.get(selected) {
                return Arc::clone(selection);
            }
        }
        let chosen = || selected.iter().map(|&p| &self.entries[p as usize]);
        let selection = Arc::new(Selection {
            // Ids are unique in the full set, so any subset builds.
            set: PolicySet::from_policies(chosen().map(|e| e.policy.clone())).unwrap_or_default(),
            reads: chosen().fold(ContextReads::NONE, |r, e| r.union(e.reads)),
        });
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() < CACHE_LIMIT {
                cache.insert(selected.into(), Arc::clone(&selection));
            }
        }
        selection
    }

    fn decision_of(&self, response: &Response) -> Decision {
        let diagnostics = response.diagnostics();
        let mut errors: Vec<(String, String)> = diagnostics
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
                (pe.policy_id().to_string(), pe.to_string())
            })
            .collect();
        if !errors.is_empty() {
            // Fail closed: an erroring policy could have been a forbid.
            errors.sort();
            let mut d = Decision::deny(&self.version);
            for (id, message) in errors {
                d.reasons.push(format!(
                    "evaluation error in policy `{id}`: {message} (denied: fail closed)"
                ));
                d.policy_ids.push(id);
            }
            return d;
        }
        let ids: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        self.decided(response.decision() == cedar_policy::Decision::Allow, ids)
    }

    /// Decides condition-free `selected` policies by their principal scope, as Cedar
    /// would: any satisfied forbid denies, else any satisfied permit allows.
    fn decide_scopes(&self, principal: &PrincipalPart, selected: &[u32]) -> Decision {
        let within = |uid: &cedar_policy::EntityUid| {
            *uid == principal.uid || principal.ancestors.contains(uid)
        };
        let satisfied = selected
            .iter()
            .map(|&p| &self.entries[p as usize])
            .filter(|e| match &e.principal {
                PrincipalConstraint::Any => true,
                PrincipalConstraint::Eq(uid) => *uid == principal.uid,
                PrincipalConstraint::In(uid) => within(uid),
                PrincipalConstraint::Is(ty) => ty == principal.uid.type_name(),
                PrincipalConstraint::IsIn(ty, uid) => {
                    ty == principal.uid.type_name() && within(uid)
                }
            });
        let (forbids, permits): (Vec<&Entry>, Vec<&Entry>) =
            satisfied.partition(|e| e.effect == Effect::Deny);
        if forbids.is_empty() {
            self.decided(
                !permits.is_empty(),
                permits.iter().map(|e| e.id.clone()).collect(),
            )
        } else {
            self.decided(false, forbids.iter().map(|e| e.id.clone()).collect())
        }
    }

    fn decided(&self, allowed: bool, mut ids: Vec<String>) -> Decision {
        ids.sort();
        let mut d = if allowed {
            Decision::allow(&self.version)
        } else {
            Decision::deny(&self.version)
        };
        if ids.is_empty() {
            return d.with_reason("no policy permits this call (default deny)");
        }
        for id in ids {
            let reason = match self.entry(&id) {
                Some(e) if allowed => e.allow_reason.clone(),
                Some(e) => e.deny_reason.clone(),
                // Every id comes from this set; a stranger still gets a reason.
                None => format!(
                    "{} by policy `{id}`",
                    if allowed { "permitted" } else { "forbidden" }
                ),
            };
            d.reasons.push(reason);
            d.policy_ids.push(id);
        }
        d
    }
}
