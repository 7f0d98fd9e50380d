//! The `policy` command line: validate a policy directory, explain a decision, and diff a
//! candidate set against the live one over recorded calls. Reference binaries mount
//! [`PolicyCommand`] as a subcommand (`fortress-mcp policy explain …`).
//!
//! A call is given as JSON (inline, or `@file`), for example
//! `{"subject":{"id":"alice","kind":"user","workspace":"acme","groups":["support"]},
//!   "action":"tools/call","resource":{"kind":"tool","connector":"zendesk","id":"search_tickets"},
//!   "attributes":{"client_ip":"10.20.1.5"}}`; `received_at` defaults to now.
//!
//! ```
//! use clap::Parser;
//! use fortress_core::policy::cli::PolicyCli;
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("p.cedar"), "permit(principal, action, resource is Model);").unwrap();
//! let cli = PolicyCli::try_parse_from(["policy", "validate", "--dir", dir.path().to_str().unwrap()]).unwrap();
//! let mut out = Vec::new();
//! assert!(cli.command.run(&mut out).unwrap());
//! assert!(String::from_utf8(out).unwrap().contains("1 policies"));
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::PolicyError;
use super::compiled::CompiledSet;
use super::documents::PolicyDocuments;
use super::shadow::dry_run;
use crate::call::{Action, Attributes, Call, RequestId, Resource};
use crate::subject::Subject;

/// A stand-alone parser for [`PolicyCommand`] (binaries usually nest the command instead).
#[derive(Debug, clap::Parser)]
#[command(name = "policy", about = "Fortress policy tools")]
pub struct PolicyCli {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// Policy tools.
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum PolicyCommand {
    /// Compile a policy directory; print its version or the first error (file:line:column).
    Validate {
        /// The policy directory (`*.cedar`, `*.cedarschema`, `limits.toml`).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Would this call be allowed, and why.
    Explain {
        /// The policy directory.
        #[arg(long)]
        dir: PathBuf,
        /// The call as JSON, or `@path` to a JSON file.
        #[arg(long)]
        call: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay calls against the live and a candidate set; print the decisions that change.
    Diff {
        /// The live policy directory.
        #[arg(long)]
        live: PathBuf,
        /// The candidate policy directory.
        #[arg(long)]
        candidate: PathBuf,
        /// Calls as JSON lines (one call per line).
        #[arg(long)]
        calls: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The policy set is invalid or could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A call description is not valid JSON of the expected shape.
    #[error("call {what} is not valid")]
    Call {
        /// Which call (`--call`, or `line N`).
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading input or writing output failed.
    #[error("i/o failed")]
    Io(#[from] std::io::Error),
}

/// A call as an operator writes it (the command line, the admin API's explain endpoint).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    subject: Subject,
    action: Action,
    resource: Resource,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    received_at: Option<DateTime<Utc>>,
    #[serde(default)]
    request_id: Option<String>,
}

impl CallSpec {
    /// The call described; `received_at` defaults to now.
    pub fn into_call(self) -> Call {
        let mut call =
            Call::new(self.subject, self.action, self.resource).with_attributes(self.attributes);
        if let Some(at) = self.received_at {
            call.received_at = at;
        }
        if let Some(id) = self.request_id {
            call.request_id = RequestId::new(id);
        }
        call
    }
}

fn parse_call(what: &str, text: &str) -> Result<Call, CliError> {
    serde_json::from_str::<CallSpec>(text)
        .map(CallSpec::into_call)
        .map_err(|source| CliError::Call {
            what: what.to_owned(),
            source,
        })
}

fn compile(dir: &Path) -> Result<CompiledSet, PolicyError> {
    CompiledSet::compile(&PolicyDocuments::from_dir(dir)?)
}

impl PolicyCommand {
    /// Runs the command, writing its report to `out`. Returns whether the answer is the
    /// good one: the set is valid, the call is allowed, no decision changes.
    pub fn run(&self, out: &mut dyn Write) -> Result<bool, CliError> {
        match self {
            Self::Validate { dir } => match compile(dir) {
                Ok(set) => {
                    writeln!(
                        out,
                        "valid: {} policies, {} limits, version {}",
                        set.len(),
                        set.limits().limits.len(),
                        set.version()
                    )?;
                    Ok(true)
                }
                Err(PolicyError::Invalid {
                    line,
                    column,
                    message,
                }) => {
                    // `message` starts with the document name.
                    writeln!(out, "invalid: line {line}, column {column}: {message}")?;
                    Ok(false)
                }
                Err(other) => Err(other.into()),
            },
            Self::Explain { dir, call, json } => {
                let set = compile(dir)?;
                let text = match call.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)?,
                    None => call.clone(),
                };
                let call = parse_call("--call", &text)?;
                let explanation = set.explain(&call)?;
                if *json {
                    serde_json::to_writer_pretty(&mut *out, &explanation)
                        .map_err(std::io::Error::from)?;
                    writeln!(out)?;
                } else {
                    let d = &explanation.decision;
                    writeln!(
                        out,
                        "{:?}: {} {} {}",
                        d.effect, call.subject.id, call.action, call.resource
                    )?;
                    for reason in &d.reasons {
                        writeln!(out, "  because: {reason}")?;
                    }
                    for policy in &explanation.determining {
                        writeln!(out, "  policy {}:\n{}", policy.id, indent(&policy.text))?;
                    }
                    writeln!(
                        out,
                        "  evaluated {} of {} policies; policy set version {}",
                        explanation.evaluated, explanation.total, d.policy_version
                    )?;
                }
                Ok(explanation.decision.is_allowed())
            }
            Self::Diff {
                live,
                candidate,
                calls,
                json,
            } => {
                let live = compile(live)?;
                let candidate = compile(candidate)?;
                let text = std::fs::read_to_string(calls)?;
                let calls = text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| parse_call(&format!("line {}", i + 1), l))
                    .collect::<Result<Vec<_>, _>>()?;
                let report = dry_run(&live, &candidate, &calls);
                if *json {
                    serde_json::to_writer_pretty(&mut *out, &report)
                        .map_err(std::io::Error::from)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{} calls: {} would change ({} newly denied, {} newly allowed); {} -> {}",
                        report.calls,
                        report.changes.len(),
                        report.newly_denied,
                        report.newly_allowed,
                        live.version(),
                        candidate.version()
                    )?;
                    for change in &report.changes {
                        writeln!(
                            out,
                            "  {} {} {}: {:?} -> {:?} ({})",
                            change.subject,
                            change.action,
                            change.resource,
                            change.live.effect,
                            change.candidate.effect,
                            change.candidate.reasons.join("; ")
                        )?;
                    }
                }
                Ok(report.changes.is_empty())
            }
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
