//! Export for GDPR access and portability requests and before termination: JSON Lines,
//! CSV, or OCSF API Activity (class 6003). Every export is itself audited — the record of
//! who exported what (format and filter) is made durable before the first byte goes out,
//! so an export that cannot be audited does not happen.
//!
//! ```
//! use fortress_core::audit::export::ExportFormat;
//!
//! assert_eq!("ocsf".parse::<ExportFormat>().unwrap(), ExportFormat::Ocsf);
//! assert_eq!(ExportFormat::Csv.extension(), "csv");
//! ```

use std::io::Write;
use std::str::FromStr;

use serde_json::{Value, json};

use super::query::{AuditFilter, AuditQuery};
use super::row::{StoredEvent, effect_name, kind_name, outcome_name};
use super::store::{AuditStore, StoreError};
use super::{AuditError, AuditEvent, AuditSink, EventKind, Outcome, SubjectRef};

/// The action name of the record an export makes about itself.
pub const EXPORT_ACTION: &str = "audit.export";

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line: `{"seq", "recorded_at", "hash", "event"}`.
    JsonLines,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One OCSF 1.3 API Activity (class 6003) object per line.
    Ocsf,
}

impl ExportFormat {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
            Self::Ocsf => "ocsf.jsonl",
        }
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
            Self::Ocsf => "ocsf",
        }
    }
}

/// A format name other than `jsonl`, `csv` or `ocsf`.
#[derive(Debug, thiserror::Error)]
#[error("unknown export format {0:?} (expected jsonl, csv or ocsf)")]
pub struct UnknownFormat(String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "json-lines" | "jsonlines" | "ndjson" => Ok(Self::JsonLines),
            "csv" => Ok(Self::Csv),
            "ocsf" => Ok(Self::Ocsf),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The export could not be audited, so nothing was exported.
    #[error("the export could not be audited, so nothing was exported")]
    Audit(#[source] AuditError),
    /// The store could not be read.
    #[error("audit store could not be read")]
    Store(#[from] StoreError),
    /// A stored body could not be decoded.
    #[error("stored audit event {seq} cannot be decoded")]
    Decode {
        /// The event.
        seq: u64,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The output could not be written.
    #[error("export output could not be written")]
    Write(#[from] std::io::Error),
}

fn filter_summary(filter: &AuditFilter) -> Value {
    json!({
        "from": filter.from.map(|t| t.to_rfc3339()),
        "until": filter.until.map(|t| t.to_rfc3339()),
        "workspace": filter.workspace,
        "subject": filter.subject,
        "action": filter.action,
        "connector": filter.connector,
        "model": filter.model,
        "decision": filter.decision.map(effect_name),
        "outcome": filter.outcome.map(outcome_name),
        "kind": filter.kind.map(kind_name),
    })
}

/// Writes every event matching `filter`, oldest first, to `out`, after recording the
/// export by `actor` through `audit`. Returns the number of events written.
pub async fn export(
    store: &dyn AuditStore,
    filter: &AuditFilter,
    format: ExportFormat,
    out: &mut (dyn Write + Send),
    audit: &dyn AuditSink,
    actor: SubjectRef,
) -> Result<u64, ExportError> {
    let workspace = filter.workspace.clone().unwrap_or_else(|| "*".to_owned());
    let mut record = AuditEvent::activity(
        EventKind::System,
        workspace.as_str().into(),
        actor,
        EXPORT_ACTION,
        format!("audit:{workspace}"),
    );
    record
        .detail
        .insert("format".into(), format.as_str().into());
    record
        .detail
        .insert("filter".into(), filter_summary(filter));
    audit.record(record).await.map_err(ExportError::Audit)?;

    if format == ExportFormat::Csv {
        write_csv_row(out, &CSV_HEADER)?;
    }
    let mut query = AuditQuery::oldest_first(1_000).with_filter(filter.clone());
    let mut written = 0;
    loop {
        let page = store.query(&query).await?;
        for row in &page.events {
            let event = row.event().map_err(|source| ExportError::Decode {
                seq: row.seq,
                source,
            })?;
            match format {
                ExportFormat::JsonLines => write_json_line(out, &json_lines_record(row, &event))?,
                ExportFormat::Ocsf => write_json_line(out, &ocsf_record(row, &event))?,
                ExportFormat::Csv => write_csv_row(out, &csv_fields(row, &event))?,
            }
            written += 1;
        }
        match page.next {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    out.flush()?;
    Ok(written)
}

fn write_json_line(out: &mut (dyn Write + Send), value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// The JSON Lines record of one stored event.
pub fn json_lines_record(row: &StoredEvent, event: &AuditEvent) -> Value {
    json!({
        "seq": row.seq,
        "recorded_at": row.recorded_at().to_rfc3339(),
        "hash": hex::encode(row.hash),
        "event": event,
    })
}

const CSV_HEADER: [&str; 22] = [
    "seq",
    "recorded_at",
    "timestamp",
    "workspace",
    "kind",
    "subject_id",
    "subject_kind",
    "action",
    "resource",
    "connector",
    "model",
    "decision",
    "policy_version",
    "outcome",
    "denial",
    "status",
    "latency_us",
    "duration_us",
    "client_ip",
    "arguments_digest",
    "request_id",
    "hash",
];

fn csv_fields(row: &StoredEvent, event: &AuditEvent) -> [String; 22] {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    [
        row.seq.to_string(),
        row.recorded_at().to_rfc3339(),
        event.timestamp.to_rfc3339(),
        event.workspace.to_string(),
        kind,
        event.subject.id.clone(),
        event.subject.kind.as_str().to_owned(),
        event.action.clone(),
        event.resource.clone(),
        event.connector.clone().unwrap_or_default(),
        event.model.clone().unwrap_or_default(),
        event
            .decision
            .as_ref()
            .map(|d| effect_name(d.effect).to_owned())
            .unwrap_or_default(),
        event
            .decision
            .as_ref()
            .map(|d| d.policy_version.clone())
            .unwrap_or_default(),
        outcome_name(event.outcome).to_owned(),
        event.denial.clone().unwrap_or_default(),
        event.status.map(|s| s.to_string()).unwrap_or_default(),
        event.latency_us.to_string(),
        event.duration_us.to_string(),
        event.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        event.arguments_digest.clone().unwrap_or_default(),
        event.request_id.clone(),
        hex::encode(row.hash),
    ]
}

/// Quotes a CSV field (RFC 4180), and defuses spreadsheet formulas: a field starting with
/// `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`.
pub fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

fn write_csv_row<S: AsRef<str>>(out: &mut (dyn Write + Send), fields: &[S]) -> std::io::Result<()> {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f.as_ref())).collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

/// OCSF API Activity `activity_id`: 1 create, 2 read, 3 update, 4 delete, 99 other.
fn ocsf_activity(action: &str) -> (u32, &'static str) {
    let verb = action.rsplit(['/', '.']).next().unwrap_or(action);
    match verb {
        "create" | "put" | "add" => (1, "Create"),
        "list" | "get" | "read" | "count_tokens" | "export" => (2, "Read"),
        "update" | "rotate" | "set" => (3, "Update"),
        "delete" | "cancel" | "revoke" | "retention_purge" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// The OCSF 1.3 API Activity (class_uid 6003) object of one stored event.
pub fn ocsf_record(row: &StoredEvent, event: &AuditEvent) -> Value {
    let (activity_id, activity_name) = ocsf_activity(&event.action);
    let (status_id, status) = match event.outcome {
        Outcome::Success => (1, "Success"),
        _ => (2, "Failure"),
    };
    let resource_type = event.resource.split(':').next().unwrap_or_default();
    let mut value = json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 600_300 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
        "time": event.timestamp.timestamp_millis(),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": status_id,
        "status": status,
        "status_detail": event.denial.clone().unwrap_or_else(|| outcome_name(event.outcome).to_owned()),
        "duration": event.duration_us / 1_000,
        "actor": {
            "user": {
                "uid": event.subject.id,
                "type": if event.subject.kind.as_str() == "user" { "User" } else { "Other" },
                "type_id": if event.subject.kind.as_str() == "user" { 1 } else { 99 },
            }
        },
        "api": {
            "operation": event.action,
            "request": { "uid": event.request_id },
            "service": { "name": event.connector.clone().or_else(|| event.model.clone()).unwrap_or_else(|| "fortress".to_owned()) },
        },
        "resources": [{ "uid": event.resource, "type": resource_type }],
        "metadata": {
            "version": "1.3.0",
            "product": { "name": "Fortress", "vendor_name": "Fortress" },
            "uid": format!("{}:{}", row.seq, hex::encode(row.hash)),
            "sequence": row.seq,
            "tenant_uid": event.workspace.as_str(),
            "logged_time": row.recorded_at().timestamp_millis(),
            "log_name": "fortress-audit",
        },
        "unmapped": {
            "kind": event.kind,
            "decision": event.decision,
            "latency_us": event.latency_us,
            "redactions": event.redactions,
            "arguments_digest": event.arguments_digest,
            "chain_hash": hex::encode(row.hash),
        },
    });
    if let Some(ip) = event.client_ip {
        value["src_endpoint"] = json!({ "ip": ip.to_string() });
    }
    if let Some(code) = event.status {
        value["http_response"] = json!({ "code": code });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn actions_map_to_ocsf_activities() {
        assert_eq!(ocsf_activity("tools/list").0, 2);
        assert_eq!(ocsf_activity("messages/create").0, 1);
        assert_eq!(ocsf_activity("policy.update").0, 3);
        assert_eq!(ocsf_activity("batches/cancel").0, 4);
        assert_eq!(ocsf_activity("tools/call").0, 99);
    }
}
