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

use std::collections::{HashMap, HashSet};

use cedar_policy::{Context, Entity, EntityTypeName, EntityUid, RestrictedExpression};
use chrono::{Datelike, Timelike};

use super::PolicyError;
use super::schema::{ActionInfo, FortressSchema, TYPES, Types};
use crate::call::{Call, Resource, ResourceKind};
use crate::subject::SubjectKind;

/// The principal side of a request: built once per call (or once per listing).
pub(crate) struct PrincipalPart {
    pub(crate) uid: EntityUid,
    pub(crate) workspace: EntityUid,
    /// Every entity the principal is `in` (its groups and workspace).
    pub(crate) ancestors: Vec<EntityUid>,
    pub(crate) entities: Vec<Entity>,
}

/// The resource side of a request.
pub(crate) struct ResourcePart {
    pub(crate) uid: EntityUid,
    pub(crate) ty: &'static EntityTypeName,
    /// Every entity the resource is `in` (connector, workspace).
    pub(crate) ancestors: Vec<EntityUid>,
    pub(crate) entities: Vec<Entity>,
}

pub(crate) fn principal(call: &Call) -> Result<PrincipalPart, PolicyError> {
    let subject = &call.subject;
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
    let mut entities = Vec::with_capacity(2);
    let ws_set = || HashSet::from([workspace.clone()]);
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
                let connector_uid = Types::uid(&TYPES.connector, connector);
                entities.push(Entity::new_no_attrs(connector_uid.clone(), ws_set()));
                ancestors.push(connector_uid);
                ancestors.push(workspace.clone());
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
    // The caller's workspace entity is already in the principal part.
    if uid != *workspace {
        let parents: HashSet<EntityUid> = ancestors.iter().take(1).cloned().collect();
        entities.push(Entity::new_no_attrs(uid.clone(), parents));
    }
    ResourcePart {
        uid,
        ty,
        ancestors,
        entities,
    }
}

/// Fails as building the context would, without building it (for decisions that need no
/// context).
pub(crate) fn check_attributes(call: &Call) -> Result<(), PolicyError> {
    match call.attributes.max_tokens {
        Some(n) if i64::try_from(n).is_err() => {
            Err(PolicyError::Request("max_tokens is out of range".into()))
        }
        _ => Ok(()),
    }
}

/// The request context of `call` for `action`.
pub(crate) fn context(
    call: &Call,
    schema: &FortressSchema,
    action: &ActionInfo,
) -> Result<Context, PolicyError> {
    let arguments = call
        .attributes
        .tool_arguments
        .as_ref()
        .filter(|v| !v.is_null());
    if let Some(arguments) = arguments {
        if let Some(record) = json_to_cedar(arguments) {
            let with = build_context(call, Some(record), false)?;
            if with.validate(&schema.schema, &action.uid).is_ok() {
                return Ok(with);
            }
        }
    }
    build_context(call, None, arguments.is_some())
}

fn build_context(
    call: &Call,
    arguments: Option<RestrictedExpression>,
    unmatched: bool,
) -> Result<Context, PolicyError> {
    let a = &call.attributes;
    let t = call.received_at;
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(10);
    pairs.push((
        "time".into(),
        RestrictedExpression::new_datetime(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
    ));
    pairs.push((
        "hour".into(),
        RestrictedExpression::new_long(i64::from(t.hour())),
    ));
    pairs.push((
        "weekday".into(),
        RestrictedExpression::new_long(i64::from(t.weekday().number_from_monday())),
    ));
    pairs.push((
        "tool_arguments_unmatched".into(),
        RestrictedExpression::new_bool(unmatched),
    ));
    pairs.push((
        "betas".into(),
        RestrictedExpression::new_set(
            a.betas
                .iter()
                .map(|b| RestrictedExpression::new_string(b.clone())),
        ),
    ));
    if let Some(ip) = a.client_ip {
        pairs.push((
            "client_ip".into(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
    }
    if let Some(args) = arguments {
        pairs.push(("tool_arguments".into(), args));
    }
    let model = a
        .model
        .as_deref()
        .or((call.resource.kind == ResourceKind::Model).then_some(call.resource.id.as_str()));
    if let Some(model) = model {
        pairs.push((
            "model".into(),
            RestrictedExpression::new_string(model.to_owned()),
        ));
    }
    if let Some(max_tokens) = a.max_tokens {
        let value = i64::try_from(max_tokens)
            .map_err(|_| PolicyError::Request("max_tokens is out of range".into()))?;
        pairs.push(("max_tokens".into(), RestrictedExpression::new_long(value)));
    }
    if let Some(stream) = a.stream {
        pairs.push(("stream".into(), RestrictedExpression::new_bool(stream)));
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
