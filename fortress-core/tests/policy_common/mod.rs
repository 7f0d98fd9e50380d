//! Helpers shared by the policy tests: the example document set and the golden case format.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, TimeZone, Utc};
use fortress_core::call::{Action, Attributes, Call, Resource, ResourceKind};
use fortress_core::decision::Effect;
use fortress_core::subject::{Subject, WorkspaceId};

/// The directory of the worked examples.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/policy")
}

/// One golden case.
#[derive(Debug)]
pub struct Case {
    pub line: usize,
    pub text: String,
    pub call: Call,
    pub expect: Effect,
    pub policies: Vec<String>,
}

/// Monday 2026-11-30 10:00 UTC.
pub fn default_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
        .single()
        .expect("valid time")
}

/// `user:alice@acme[support,interns]` or `app:ci@acme`.
pub fn parse_subject(text: &str) -> anyhow::Result<Subject> {
    let (kind, rest) = text.split_once(':').context("subject kind")?;
    let (id, rest) = rest.split_once('@').context("subject workspace")?;
    let (workspace, groups) = match rest.split_once('[') {
        Some((ws, groups)) => (
            ws,
            groups
                .trim_end_matches(']')
                .split(',')
                .filter(|g| !g.is_empty())
                .collect(),
        ),
        None => (rest, Vec::new()),
    };
    let subject = match kind {
        "user" => Subject::user(id, WorkspaceId::new(workspace)),
        "app" => Subject::app(id, WorkspaceId::new(workspace)),
        other => bail!("unknown subject kind {other}"),
    };
    Ok(subject.with_groups(groups))
}

/// `tool:zendesk/search`, `model:m`, `workspace:acme`, `connector:zendesk`, ...
pub fn parse_resource(text: &str) -> anyhow::Result<Resource> {
    let (kind, id) = text.split_once(':').context("resource kind")?;
    let kind = match kind {
        "workspace" => return Ok(Resource::workspace(id)),
        "connector" => return Ok(Resource::connector(id)),
        "model" => return Ok(Resource::model(id)),
        "endpoint" => return Ok(Resource::new(ResourceKind::Endpoint, id, None)),
        "tool" => ResourceKind::Tool,
        "resource" => ResourceKind::Resource,
        "prompt" => ResourceKind::Prompt,
        other => bail!("unknown resource kind {other}"),
    };
    let (connector, id) = id.split_once('/').context("connector/id")?;
    Ok(Resource::new(kind, id, Some(connector.to_owned())))
}

pub fn parse_case(line: usize, text: &str) -> anyhow::Result<Case> {
    let fields: Vec<&str> = text.split('|').map(str::trim).collect();
    let [expect, subject, action, resource, attrs, policies] = fields[..] else {
        bail!("line {line}: expected 6 fields");
    };
    let expect = match expect {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => bail!("line {line}: bad expectation {other}"),
    };
    let mut call = Call::new(
        parse_subject(subject)?,
        Action::from(action.to_owned()),
        parse_resource(resource)?,
    );
    call.received_at = default_time();
    let mut attributes = Attributes::default();
    for attr in attrs.split(';').filter(|a| *a != "-" && !a.is_empty()) {
        let (key, value) = attr
            .split_once('=')
            .ok_or_else(|| anyhow!("line {line}: bad attribute {attr}"))?;
        match key {
            "ip" => attributes.client_ip = Some(value.parse()?),
            "max_tokens" => attributes.max_tokens = Some(value.parse()?),
            "stream" => attributes.stream = Some(value.parse()?),
            "beta" => attributes.betas.push(value.to_owned()),
            "model" => attributes.model = Some(value.to_owned()),
            "args" => attributes.tool_arguments = Some(serde_json::from_str(value)?),
            "at" => call.received_at = value.parse()?,
            other => bail!("line {line}: unknown attribute {other}"),
        }
    }
    call.attributes = attributes;
    let mut policies: Vec<String> = match policies {
        "-" => Vec::new(),
        list => list.split(',').map(|p| p.trim().to_owned()).collect(),
    };
    policies.sort();
    Ok(Case {
        line,
        text: text.to_owned(),
        call,
        expect,
        policies,
    })
}

/// Every case of `tests/data/policy/golden_cases.txt`.
pub fn golden_cases() -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(examples_dir().join("golden_cases.txt"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_case(i + 1, l))
        .collect()
}
