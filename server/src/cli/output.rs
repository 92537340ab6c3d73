//! How the CLI shows things: the text/JSON switch, aligned tables, and the one place where
//! protobuf values become display strings (RFC 3339 times, lowercase status names, JSON
//! payloads). Rule: no network here; commands fetch, this module formats.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use rondo_gen::v1;
use serde_json::{Value, json};

/// Output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Where a command writes, and in which format.
pub struct Printer<'a> {
    /// Format of the results on `out`.
    pub format: OutputFormat,
    /// Results: ids, tables, JSON documents.
    pub out: &'a mut dyn Write,
    /// Notes, warnings and errors, so that `out` stays parseable.
    pub err: &'a mut dyn Write,
}

impl Printer<'_> {
    /// True when the user asked for JSON.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Writes `doc` as one pretty-printed JSON document on `out`.
    pub fn json(&mut self, doc: &Value) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *self.out, doc)?;
        writeln!(self.out)
    }
}

/// A text table whose columns are aligned to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    /// Column titles, written in capitals by convention.
    headers: Vec<&'static str>,
    /// Cells, one vector per row, as many as there are headers.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; newlines inside cells are flattened so rows stay one line each.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| c.replace(['\n', '\r'], " "))
                .collect(),
        );
    }

    /// Writes the header and the rows. The last column is not padded (no trailing spaces).
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Lowercase name of a protobuf enum value without its type prefix (`WORKFLOW_STATUS_STUCK`
/// becomes `stuck`); values this build does not know show as `unknown(N)`.
fn enum_name(name: Option<&'static str>, prefix: &str, raw: i32) -> String {
    match name {
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase(),
        None => format!("unknown({raw})"),
    }
}

/// `running`, `stuck`, ... for a workflow status.
pub fn workflow_status(raw: i32) -> String {
    let name = v1::WorkflowStatus::try_from(raw)
        .ok()
        .map(|s| s.as_str_name());
    enum_name(name, "WORKFLOW_STATUS_", raw)
}

/// `ready`, `active`, ... for a job state.
pub fn job_state(raw: i32) -> String {
    let name = v1::JobState::try_from(raw).ok().map(|s| s.as_str_name());
    enum_name(name, "JOB_STATE_", raw)
}

/// `no_route`, `step_limit`, ... for an incident reason.
pub fn incident_reason(raw: i32) -> String {
    let name = v1::IncidentReason::try_from(raw)
        .ok()
        .map(|s| s.as_str_name());
    enum_name(name, "INCIDENT_REASON_", raw)
}

/// `node_entered`, `job_timed_out`, ... for a history event kind.
pub fn event_kind(raw: i32) -> String {
    let name = v1::EventKind::try_from(raw).ok().map(|s| s.as_str_name());
    enum_name(name, "EVENT_KIND_", raw)
}

/// `skip` or `allow` for a schedule's overlap policy; unspecified means skip (see the proto).
pub fn overlap_policy(raw: i32) -> String {
    match v1::OverlapPolicy::try_from(raw) {
        Ok(v1::OverlapPolicy::Unspecified) => "skip".to_owned(),
        other => enum_name(other.ok().map(|p| p.as_str_name()), "OVERLAP_POLICY_", raw),
    }
}

/// A protobuf timestamp as a UTC date-time, when it is set and in range.
pub fn datetime(ts: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// A UTC date-time as a protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Sub-second nanoseconds are below 2e9, so they always fit; leap seconds saturate.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(999_999_999),
    }
}

/// A timestamp for tables: RFC 3339 to the second, or `-` when unset.
pub fn time_text(ts: Option<&prost_types::Timestamp>) -> String {
    datetime(ts).map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// A timestamp for JSON: RFC 3339 with its fraction, or `null` when unset.
pub fn time_json(ts: Option<&prost_types::Timestamp>) -> Value {
    datetime(ts).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    })
}

/// A protobuf duration as graphs write it (`1h30m`); negative or unset durations show as `-`.
pub fn proto_duration_text(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| Duration::try_from(*d).ok())
        .map_or_else(|| "-".to_owned(), rondo_engine::duration::format)
}

/// A JSON payload field (JSON text) as a value: `{}` when empty, the raw text when it is not
/// valid JSON (the server should never send that, but showing it beats hiding it).
pub fn payload(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A JSON payload pretty-printed for text output.
pub fn payload_text(text: &str) -> String {
    serde_json::to_string_pretty(&payload(text)).unwrap_or_else(|_| text.to_owned())
}

/// An optional string field for JSON: `null` when empty.
pub fn opt(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// An optional string field for tables: `-` when empty.
pub fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `order@3`.
pub fn graph_ref(graph: &str, version: u32) -> String {
    format!("{graph}@{version}")
}

/// One line saying where a workflow stands: `running at charge (step 4)`,
/// `completed with outcome sent`, `stuck at charge: <incident>`.
pub fn workflow_state(wf: &v1::Workflow) -> String {
    let status = workflow_status(wf.status);
    match v1::WorkflowStatus::try_from(wf.status) {
        Ok(v1::WorkflowStatus::Completed) => {
            format!("{status} with outcome {}", or_dash(&wf.outcome))
        }
        Ok(v1::WorkflowStatus::Stuck) => match &wf.incident {
            Some(incident) => format!(
                "{status} at {}: {}",
                or_dash(&wf.current_node),
                incident.message
            ),
            None => format!("{status} at {}", or_dash(&wf.current_node)),
        },
        _ if wf.current_node.is_empty() => status,
        _ => format!("{status} at {} (step {})", wf.current_node, wf.step_count),
    }
}

/// A workflow as a JSON object.
pub fn workflow_json(wf: &v1::Workflow) -> Value {
    json!({
        "id": wf.id,
        "graph": wf.graph,
        "graph_version": wf.graph_version,
        "status": workflow_status(wf.status),
        "current_node": opt(&wf.current_node),
        "input": payload(&wf.input),
        "vars": payload(&wf.vars),
        "step_count": wf.step_count,
        "outcome": opt(&wf.outcome),
        "idempotency_key": opt(&wf.idempotency_key),
        "schedule_id": opt(&wf.schedule_id),
        "start_at": time_json(wf.start_at.as_ref()),
        "deadline_at": time_json(wf.deadline_at.as_ref()),
        "created_at": time_json(wf.created_at.as_ref()),
        "updated_at": time_json(wf.updated_at.as_ref()),
        "ended_at": time_json(wf.ended_at.as_ref()),
        "incident": wf.incident.as_ref().map_or(Value::Null, incident_json),
        "current_job": wf.current_job.as_ref().map_or(Value::Null, job_json),
    })
}

/// An incident as a JSON object.
pub fn incident_json(incident: &v1::Incident) -> Value {
    json!({
        "reason": incident_reason(incident.reason),
        "message": incident.message,
        "node": opt(&incident.node),
        "label": opt(&incident.label),
        "at": time_json(incident.at.as_ref()),
    })
}

/// A job summary as a JSON object.
pub fn job_json(job: &v1::JobSummary) -> Value {
    json!({
        "id": job.id,
        "node": job.node,
        "operation": opt(&job.operation),
        "human": job.human,
        "state": job_state(job.state),
        "attempt": job.attempt,
        "idempotency_key": job.idempotency_key,
        "available_at": time_json(job.available_at.as_ref()),
        "worker": opt(&job.worker),
        "lease_expires_at": time_json(job.lease_expires_at.as_ref()),
        "progress": job.progress.as_ref().map_or(Value::Null, |p| json!({
            "percent": p.percent,
            "message": opt(&p.message),
        })),
        "created_at": time_json(job.created_at.as_ref()),
    })
}

/// A job summary on one line: `job 12 at charge (payments.charge), active, attempt 2, ...`.
pub fn job_text(job: &v1::JobSummary) -> String {
    let what = if job.human {
        "human".to_owned()
    } else {
        job.operation.clone()
    };
    let mut text = format!(
        "job {} at {} ({what}), {}, attempt {}",
        job.id,
        job.node,
        job_state(job.state),
        job.attempt
    );
    if !job.worker.is_empty() {
        text.push_str(&format!(", worker {}", job.worker));
    }
    if job.lease_expires_at.is_some() {
        let clock = if job.human { "due" } else { "lease until" };
        text.push_str(&format!(
            ", {clock} {}",
            time_text(job.lease_expires_at.as_ref())
        ));
    } else if job.available_at.is_some() {
        text.push_str(&format!(
            ", available at {}",
            time_text(job.available_at.as_ref())
        ));
    }
    if let Some(progress) = &job.progress {
        text.push_str(&format!(", progress {}%", progress.percent));
        if !progress.message.is_empty() {
            text.push_str(&format!(" {}", progress.message));
        }
    }
    text
}

/// Writes a workflow in full, one `key: value` line per field that is set, then its vars.
pub fn write_workflow(out: &mut dyn Write, wf: &v1::Workflow) -> io::Result<()> {
    let mut fields: Vec<(&str, String)> = vec![
        ("id", wf.id.clone()),
        ("graph", graph_ref(&wf.graph, wf.graph_version)),
        ("status", workflow_status(wf.status)),
        ("node", or_dash(&wf.current_node).to_owned()),
        ("steps", wf.step_count.to_string()),
    ];
    let optional = [
        ("outcome", wf.outcome.clone()),
        ("idempotency key", wf.idempotency_key.clone()),
        ("schedule", wf.schedule_id.clone()),
    ];
    fields.extend(optional.into_iter().filter(|(_, v)| !v.is_empty()));
    let times = [
        ("created", &wf.created_at),
        ("updated", &wf.updated_at),
        ("start at", &wf.start_at),
        ("deadline", &wf.deadline_at),
        ("ended", &wf.ended_at),
    ];
    fields.extend(
        times
            .into_iter()
            .filter(|(_, t)| t.is_some())
            .map(|(k, t)| (k, time_text(t.as_ref()))),
    );
    if let Some(incident) = &wf.incident {
        let mut text = format!(
            "{} at {}",
            incident_reason(incident.reason),
            or_dash(&incident.node)
        );
        if !incident.label.is_empty() {
            text.push_str(&format!(" (label {})", incident.label));
        }
        text.push_str(&format!(
            " since {}: {}",
            time_text(incident.at.as_ref()),
            incident.message
        ));
        fields.push(("incident", text));
    }
    if let Some(job) = &wf.current_job {
        fields.push(("job", job_text(job)));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in &fields {
        writeln!(out, "{:<width$} {value}", format!("{key}:"))?;
    }
    writeln!(out, "vars:")?;
    for line in payload_text(&wf.vars).lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// A history event as a JSON object.
pub fn event_json(event: &v1::Event) -> Value {
    json!({
        "seq": event.seq,
        "at": time_json(event.at.as_ref()),
        "kind": event_kind(event.kind),
        "node": opt(&event.node),
        "label": opt(&event.label),
        "job_id": if event.job_id == 0 { Value::Null } else { json!(event.job_id) },
        "attempt": if event.attempt == 0 { Value::Null } else { json!(event.attempt) },
        "actor": opt(&event.actor),
        "message": opt(&event.message),
        "data": if event.data.is_empty() { Value::Null } else { payload(&event.data) },
    })
}

/// History as a table: one line per event.
pub fn history_table(events: &[v1::Event]) -> Table {
    let mut table = Table::new(&[
        "SEQ", "TIME", "KIND", "NODE", "LABEL", "ATTEMPT", "ACTOR", "MESSAGE",
    ]);
    for e in events {
        let attempt = if e.attempt == 0 {
            "-".to_owned()
        } else {
            e.attempt.to_string()
        };
        table.row(vec![
            e.seq.to_string(),
            time_text(e.at.as_ref()),
            event_kind(e.kind),
            or_dash(&e.node).to_owned(),
            or_dash(&e.label).to_owned(),
            attempt,
            or_dash(&e.actor).to_owned(),
            e.message.clone(),
        ]);
    }
    table
}

/// A graph problem reported by the server, as one line naming what it concerns.
pub fn problem_text(p: &v1::GraphProblem) -> String {
    let parts: Vec<String> = [("node", &p.node), ("label", &p.label), ("field", &p.field)]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k} `{v}`"))
        .collect();
    if parts.is_empty() {
        p.message.clone()
    } else {
        format!("{}: {}", parts.join(", "), p.message)
    }
}

/// A graph problem reported by the server, as a JSON object.
pub fn problem_json(p: &v1::GraphProblem) -> Value {
    json!({ "node": opt(&p.node), "label": opt(&p.label), "field": opt(&p.field), "message": p.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_lowercase_without_prefix() {
        assert_eq!(workflow_status(v1::WorkflowStatus::Stuck as i32), "stuck");
        assert_eq!(job_state(v1::JobState::Active as i32), "active");
        assert_eq!(
            incident_reason(v1::IncidentReason::RetriesExhausted as i32),
            "retries_exhausted"
        );
        assert_eq!(
            event_kind(v1::EventKind::JobTimedOut as i32),
            "job_timed_out"
        );
        assert_eq!(
            overlap_policy(v1::OverlapPolicy::Unspecified as i32),
            "skip"
        );
        assert_eq!(overlap_policy(v1::OverlapPolicy::Allow as i32), "allow");
        assert_eq!(workflow_status(99), "unknown(99)");
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(time_text(Some(&ts)), "2023-11-14T22:13:20Z");
        assert_eq!(time_json(Some(&ts)), json!("2023-11-14T22:13:20.250Z"));
        assert_eq!(time_text(None), "-");
        assert_eq!(time_json(None), Value::Null);
        assert_eq!(
            datetime(Some(&timestamp(datetime(Some(&ts)).unwrap()))),
            datetime(Some(&ts))
        );
    }

    #[test]
    fn durations_render_like_graph_files() {
        assert_eq!(
            proto_duration_text(Some(&prost_types::Duration {
                seconds: 5400,
                nanos: 0
            })),
            "1h30m"
        );
        assert_eq!(
            proto_duration_text(Some(&prost_types::Duration {
                seconds: -1,
                nanos: 0
            })),
            "-"
        );
        assert_eq!(proto_duration_text(None), "-");
    }

    #[test]
    fn payloads_parse_and_default_to_empty_object() {
        assert_eq!(payload(""), json!({}));
        assert_eq!(payload(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(payload("not json"), json!("not json"));
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATUS", "NODE"]);
        table.row(vec!["a".into(), "running".into(), "charge".into()]);
        table.row(vec!["bbbb".into(), "stuck".into(), String::new()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    STATUS   NODE\na     running  charge\nbbbb  stuck\n"
        );
    }

    #[test]
    fn workflow_state_says_where_it_stands() {
        let mut wf = v1::Workflow {
            status: v1::WorkflowStatus::Running as i32,
            current_node: "charge".into(),
            step_count: 4,
            ..Default::default()
        };
        assert_eq!(workflow_state(&wf), "running at charge (step 4)");
        wf.status = v1::WorkflowStatus::Completed as i32;
        wf.outcome = "sent".into();
        wf.current_node.clear();
        assert_eq!(workflow_state(&wf), "completed with outcome sent");
        wf.status = v1::WorkflowStatus::Stuck as i32;
        wf.current_node = "charge".into();
        wf.incident = Some(v1::Incident {
            message: "no route for `timeout`".into(),
            ..Default::default()
        });
        assert_eq!(
            workflow_state(&wf),
            "stuck at charge: no route for `timeout`"
        );
    }

    #[test]
    fn problems_name_what_they_concern() {
        let p = v1::GraphProblem {
            node: "charge".into(),
            label: "declined".into(),
            field: String::new(),
            message: "targets unknown node `refund`".into(),
        };
        assert_eq!(
            problem_text(&p),
            "node `charge`, label `declined`: targets unknown node `refund`"
        );
    }

    #[test]
    fn workflow_text_lists_set_fields_and_vars() {
        let wf = v1::Workflow {
            id: "w1".into(),
            graph: "order".into(),
            graph_version: 3,
            status: v1::WorkflowStatus::Running as i32,
            current_node: "charge".into(),
            vars: r#"{"order_id":"o-1"}"#.into(),
            current_job: Some(v1::JobSummary {
                id: 12,
                node: "charge".into(),
                operation: "payments.charge".into(),
                state: v1::JobState::Active as i32,
                attempt: 2,
                worker: "w-1".into(),
                progress: Some(v1::Progress {
                    percent: 40,
                    message: "calling bank".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_workflow(&mut out, &wf).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("graph:  order@3\n"), "{text}");
        assert!(
            text.contains("job:    job 12 at charge (payments.charge), active, attempt 2, worker w-1, progress 40% calling bank"),
            "{text}"
        );
        assert!(
            text.ends_with("vars:\n  {\n    \"order_id\": \"o-1\"\n  }\n"),
            "{text}"
        );
        assert!(!text.contains("outcome"), "{text}");
    }
}
