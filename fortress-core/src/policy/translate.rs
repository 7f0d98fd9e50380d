//! Translation of a [`Call`] into a Cedar request and its entities.
//!
//! - principal: `User::"<id>"` or `App::"<id>"`, in each `Group::"<group>"` and in
//!   `Workspace::"<workspace>"`, with attribute `workspace`;
//! - action: `Action::"<Action::as_str()>"` with its action groups;
//! - resource: by kind — `Tool::"<connector>/<tool>"` in `Connector::"<connector>"`,
//!   `Model::"<id>"`, `Workspace::"<id>"`, … — every resource in the caller's workspace;
//! - context: `client_ip` (ipaddr), `time` (datetime), `hour`, `weekday`, `tool_arguments`
//!   (when they fit `ToolArguments`), `tool_arguments_unmatched`, `model`, `max_tokens`,
//!   `stream`, `betas`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use cedar_policy::{Context, Entity, EntityTypeName, EntityUid, RestrictedExpression};
use chrono::{DateTime, Datelike, Timelike, Utc};

use super::PolicyError;
use super::reads::{ContextAttr, ContextReads};
use super::schema::{ActionInfo, FortressSchema, TYPES, Types};
use crate::call::{Call, Resource, ResourceKind};
use crate::subject::{Subject, SubjectKind};

/// The principal side of a request: built once per subject (see [`super::request_cache`]).
pub(crate) struct PrincipalPart {
    pub(crate) uid: EntityUid,
    pub(crate) workspace: EntityUid,
    /// Every entity the principal is `in` (its groups and workspace).
    pub(crate) ancestors: Vec<EntityUid>,
    pub(crate) entities: Vec<Entity>,
}

/// The resource side of a request. Its entities are built only when Cedar evaluates
/// (see [`resource_entities`]); the index and scope-only decisions need the uids alone.
pub(crate) struct ResourcePart {
    pub(crate) uid: EntityUid,
    pub(crate) ty: &'static EntityTypeName,
    /// Every entity the resource is `in` (connector, workspace), nearest first.
    pub(crate) ancestors: Vec<EntityUid>,
    /// The resource's connector, which is an entity of the request of its own.
    connector: Option<EntityUid>,
}
pub(crate) fn principal(subject: &Subject) -> Result<PrincipalPart, PolicyError> {
    let workspace = Types::uid(&TYPES.workspace, subject.workspace.as_str());
    let ty = match subject.kind {
        SubjectKind::User => &TYPES.user,
        SubjectKind::App => &TYPES.app,
    };
    let uid = Types::uid(ty, &subject.id);
    let ws_only: HashSet<EntityUid> = HashSet::from([workspace.clone()]);
    let mut parents = ws_only.clone();
    let mut entities = Vec::with_capacity(subject.groups.len() + 2);
    for group in &subject.groups {
        let group_uid = Types::uid(&TYPES.group, group);
        if parents.insert(group_uid.clone()) {
            entities.push(Entity::new_no_attrs(group_uid, ws_only.clone()));
        }
    }
    let attrs = HashMap::from([(
        "workspace".to_owned(),
        RestrictedExpression::new_entity_uid(workspace.clone()),
    )]);
    let ancestors = parents.iter().cloned().collect();
    let principal = Entity::new(uid.clone(), attrs, parents)
        .map_err(|e| PolicyError::Request(format!("principal: {e}")))?;
    entities.push(principal);
    entities.push(Entity::new_no_attrs(workspace.clone(), HashSet::new()));
    Ok(PrincipalPart {
        uid,
        workspace,
        ancestors,
        entities,
    })
}

pub(crate) fn resource(resource: &Resource, workspace: &EntityUid) -> ResourcePart {
    let ty = TYPES.of_resource(resource.kind);
    let mut ancestors = Vec::with_capacity(2);
    let mut connector_uid = None;
    let uid = match resource.kind {
        ResourceKind::Workspace => Types::uid(ty, &resource.id),
        ResourceKind::Connector => {
            ancestors.push(workspace.clone());
            Types::uid(ty, resource.connector.as_deref().unwrap_or(&resource.id))
        }
        ResourceKind::Model => {
            ancestors.push(workspace.clone());
            Types::uid(ty, &resource.id)
        }
        ResourceKind::Tool
        | ResourceKind::Resource
        | ResourceKind::Prompt
        | ResourceKind::Endpoint => match &resource.connector {
            Some(connector) => {
                let uid = Types::uid(&TYPES.connector, connector);
                ancestors.push(uid.clone());
                ancestors.push(workspace.clone());
                connector_uid = Some(uid);
                let mut id = String::with_capacity(connector.len() + 1 + resource.id.len());
                id.push_str(connector);
                id.push('/');
                id.push_str(&resource.id);
                Types::uid(ty, &id)
            }
            None => {
                ancestors.push(workspace.clone());
                Types::uid(ty, &resource.id)
            }
        },
    };
    ResourcePart {
        uid,
        ty,
        ancestors,
        connector: connector_uid,
    }
}

/// The entities of the resource side: the resource (unless it is the caller's workspace,
/// which the principal side holds) and its connector.
pub(crate) fn resource_entities(resource: &ResourcePart, workspace: &EntityUid) -> Vec<Entity> {
    let mut entities = Vec::with_capacity(2);
    if let Some(connector) = &resource.connector {
        entities.push(Entity::new_no_attrs(
            connector.clone(),
            HashSet::from([workspace.clone()]),
        ));
    }
    if resource.uid != *workspace {
        let parents: HashSet<EntityUid> = resource.ancestors.iter().take(1).cloned().collect();
        entities.push(Entity::new_no_attrs(resource.uid.clone(), parents));
    }
    entities
}

/// Fails as building the whole context would, without building it: a decision that
/// builds only part of the context (or none) still fails where the full context would,
/// so leaving attributes out never turns an error into a decision.
pub(crate) fn check_attributes(call: &Call) -> Result<(), PolicyError> {
    if let Some(n) = call.attributes.max_tokens {
        if i64::try_from(n).is_err() {
            return Err(PolicyError::Request("max_tokens is out of range".into()));
        }
    }
    let t = call.received_at;
    // Cedar's `datetime` reads a four-digit year and refuses a leap second; its `ip`
    // refuses the dotted IPv4-in-IPv6 forms (`::ffff:10.0.0.1`). Either fails the whole
    // context: build that attribute alone to fail with the very same error.
    let bad_time = !(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000;
    let bad_ip =
        matches!(call.attributes.client_ip, Some(IpAddr::V6(ip)) if ip.to_string().contains('.'));
    for (bad, attr) in [
        (bad_time, ContextAttr::Time),
        (bad_ip, ContextAttr::ClientIp),
    ] {
        if bad {
            build_context(call, ContextReads::only(attr), None, false)?;
        }
    }
    Ok(())
}

/// What a context built for `reads` depends on, when that is not the call's time or its
/// tool arguments (which differ from call to call, so such contexts are not cached).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ContextKey {
    reads: ContextReads,
    hour: Option<u32>,
    weekday: Option<u32>,
    betas: Option<Vec<String>>,
    client_ip: Option<IpAddr>,
    model: Option<String>,
    max_tokens: Option<u64>,
    stream: Option<bool>,
}

impl ContextKey {
    /// The key of the context [`context`] builds for `call` and `reads`, or `None` when it
    /// holds the time or the tool arguments.
    pub(crate) fn of(call: &Call, reads: ContextReads) -> Option<Self> {
        if reads == ContextReads::ALL
            || reads.contains(ContextAttr::Time)
            || reads.contains(ContextAttr::ToolArguments)
            || reads.contains(ContextAttr::ToolArgumentsUnmatched)
        {
            return None;
        }
        let a = &call.attributes;
        let t = call.received_at;
        let when = |attr: ContextAttr| reads.contains(attr);
        Some(Self {
            reads,
            hour: when(ContextAttr::Hour).then(|| t.hour()),
            weekday: when(ContextAttr::Weekday).then(|| t.weekday().number_from_monday()),
            betas: when(ContextAttr::Betas).then(|| a.betas.clone()),
            client_ip: a.client_ip.filter(|_| when(ContextAttr::ClientIp)),
            model: model_of(call)
                .filter(|_| when(ContextAttr::Model))
                .map(str::to_owned),
            max_tokens: a.max_tokens.filter(|_| when(ContextAttr::MaxTokens)),
            stream: a.stream.filter(|_| when(ContextAttr::Stream)),
        })
    }
}

/// The model a call names: its `model` attribute, or the model it acts on.
fn model_of(call: &Call) -> Option<&str> {
    call.attributes
        .model
        .as_deref()
        .or((call.resource.kind == ResourceKind::Model).then_some(call.resource.id.as_str()))
}

/// The request context of `call` for `action`, holding the attributes in `reads` (the
/// attributes the policies about to be evaluated can read; see [`super::reads`]).
pub(crate) fn context(
    call: &Call,
    schema: &FortressSchema,
    action: &ActionInfo,
    reads: ContextReads,
) -> Result<Context, PolicyError> {
    let arguments = call
        .attributes
        .tool_arguments
        .as_ref()
        .filter(|v| !v.is_null());
    if reads.contains(ContextAttr::ToolArguments)
        || reads.contains(ContextAttr::ToolArgumentsUnmatched)
    {
        // Whether the arguments fit `ToolArguments` is decided by validating the whole
        // context against the schema, so this path builds every attribute.
        if let Some(arguments) = arguments {
            if let Some(record) = json_to_cedar(arguments) {
                let with = build_context(call, ContextReads::ALL, Some(record), false)?;
                if with.validate(&schema.schema, &action.uid).is_ok() {
                    return Ok(with);
                }
            }
        }
        return build_context(call, ContextReads::ALL, None, arguments.is_some());
    }
    if reads != ContextReads::ALL {
        check_attributes(call)?;
    }
    build_context(call, reads, None, arguments.is_some())
}

thread_local! {
    /// The last `datetime` and `ip` expressions this thread built, by their value. (Contexts
    /// that read neither time nor arguments are cached whole by the request cache; these
    /// serve the ones it cannot keep.)
    static LAST_TIME: RefCell<Option<(i64, RestrictedExpression)>> = const { RefCell::new(None) };
    static LAST_IP: RefCell<Option<(IpAddr, RestrictedExpression)>> = const { RefCell::new(None) };
}

/// `datetime("…")` of `t` at millisecond precision. Cedar's constructor parses the
/// extension function's name on every call (a large share of a whole decision), so the
/// last expression is reused while calls arrive within the same millisecond.
fn datetime_expression(t: DateTime<Utc>) -> RestrictedExpression {
    let millis = t.timestamp_millis();
    LAST_TIME.with_borrow_mut(|last| match last {
        Some((at, expression)) if *at == millis => expression.clone(),
        _ => {
            let expression =
                RestrictedExpression::new_datetime(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            *last = Some((millis, expression.clone()));
            expression
        }
    })
}

/// `ip("…")` of `ip`, reused while the same client calls (see [`datetime_expression`]).
fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    LAST_IP.with_borrow_mut(|last| match last {
        Some((at, expression)) if *at == ip => expression.clone(),
        _ => {
            let expression = RestrictedExpression::new_ip(ip.to_string());
            *last = Some((ip, expression.clone()));
            expression
        }
    })
}

fn build_context(
    call: &Call,
    reads: ContextReads,
    arguments: Option<RestrictedExpression>,
    unmatched: bool,
) -> Result<Context, PolicyError> {
    let a = &call.attributes;
    let t = call.received_at;
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(10);
    let mut push = |attr: ContextAttr, value: &dyn Fn() -> RestrictedExpression| {
        if reads.contains(attr) {
            pairs.push((attr.name().to_owned(), value()));
        }
    };
    push(ContextAttr::Time, &|| datetime_expression(t));
    push(ContextAttr::Hour, &|| {
        RestrictedExpression::new_long(i64::from(t.hour()))
    });
    push(ContextAttr::Weekday, &|| {
        RestrictedExpression::new_long(i64::from(t.weekday().number_from_monday()))
    });
    push(ContextAttr::ToolArgumentsUnmatched, &|| {
        RestrictedExpression::new_bool(unmatched)
    });
    push(ContextAttr::Betas, &|| {
        RestrictedExpression::new_set(
            a.betas
                .iter()
                .map(|b| RestrictedExpression::new_string(b.clone())),
        )
    });
    if let Some(ip) = a.client_ip {
        push(ContextAttr::ClientIp, &|| ip_expression(ip));
    }
    if let Some(model) = model_of(call) {
        push(ContextAttr::Model, &|| {
            RestrictedExpression::new_string(model.to_owned())
        });
    }
    if let Some(max_tokens) = a.max_tokens {
        let value = i64::try_from(max_tokens)
            .map_err(|_| PolicyError::Request("max_tokens is out of range".into()))?;
        push(ContextAttr::MaxTokens, &|| {
            RestrictedExpression::new_long(value)
        });
    }
    if let Some(stream) = a.stream {
        push(ContextAttr::Stream, &|| {
            RestrictedExpression::new_bool(stream)
        });
    }
    if let Some(args) = arguments {
        if reads.contains(ContextAttr::ToolArguments) {
            pairs.push((ContextAttr::ToolArguments.name().to_owned(), args));
        }
    }
    Context::from_pairs(pairs).map_err(|e| PolicyError::Request(format!("context: {e}")))
}

/// A JSON value as a Cedar value, or `None` when Cedar has no equivalent (fractions, nulls
/// inside arrays, integers beyond 64 bits). Nulls in objects are left out.
fn json_to_cedar(value: &serde_json::Value) -> Option<RestrictedExpression> {
    use serde_json::Value;
    Some(match value {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(json_to_cedar)
                .collect::<Option<Vec<_>>>()?,
        ),
        Value::Object(map) => {
            let fields = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Some((k.clone(), json_to_cedar(v)?)))
                .collect::<Option<Vec<_>>>()?;
            RestrictedExpression::new_record(fields).ok()?
        }
        Value::Null => return None,
    })
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    /// A reused `datetime` or `ip` expression is exactly the one a fresh build gives, and a
    /// new value is never answered with the previous one.
    #[test]
    fn reused_time_and_ip_expressions_match_fresh_ones() {
        let first = DateTime::parse_from_rfc3339("2026-11-30T14:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = first + chrono::Duration::milliseconds(1);
        for t in [first, first, next, first] {
            let fresh =
                RestrictedExpression::new_datetime(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            assert_eq!(datetime_expression(t), fresh);
        }
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        for ip in [a, a, b, a] {
            assert_eq!(
                ip_expression(ip),
                RestrictedExpression::new_ip(ip.to_string())
            );
        }
    }
}
