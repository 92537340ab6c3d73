//! The PostgreSQL side of the benchmark: the settings the run used, and the ceiling measured
//! by `pgbench` running, on the same server, one transaction of the writes a step must make
//! (update the workflow, insert the next job, append an event).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::db::connect;

/// Where Debian and Ubuntu install each PostgreSQL major version: `<root>/<version>/bin`.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// Rows of the workflow table the script updates, picked at random: enough that 64 clients
/// rarely wait for each other's row locks, as distinct workflows do not.
const WORKFLOW_ROWS: i32 = 10_000;

/// The settings that decide how fast a commit can be.
const SETTINGS: &str = "SELECT current_setting('server_version'), current_setting('fsync'), \
     current_setting('synchronous_commit'), current_setting('shared_buffers')";

/// Tables shaped like the hot part of Rondo's schema, in a schema of their own: a workflow row
/// to update, a job table and an event table to insert into, each with the primary key and the
/// by-workflow index its Rondo counterpart has.
const CREATE_TABLES: &str = "
CREATE SCHEMA rondo_bench;
CREATE TABLE rondo_bench.bench_wf (
    id           integer     PRIMARY KEY,
    status       text        NOT NULL,
    current_node text,
    vars         jsonb       NOT NULL,
    step_count   integer     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE TABLE rondo_bench.bench_jobs (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id     integer     NOT NULL,
    node            text        NOT NULL,
    operation       text,
    state           text        NOT NULL,
    attempt         integer     NOT NULL,
    idempotency_key text        NOT NULL,
    available_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX bench_jobs_workflow ON rondo_bench.bench_jobs (workflow_id, id);
CREATE TABLE rondo_bench.bench_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id integer     NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    node        text,
    label       text,
    actor       text        NOT NULL,
    data        jsonb
);
CREATE INDEX bench_events_workflow ON rondo_bench.bench_events (workflow_id, id);
";

/// Fills the workflow table with `$1` running workflows.
const FILL_WORKFLOWS: &str = "INSERT INTO rondo_bench.bench_wf (id, status, current_node, vars) \
     SELECT g, 'running', 's1', '{}' FROM generate_series(1, $1::int) AS g";

/// Run apart: VACUUM refuses to run inside the implicit transaction of a multi-statement query.
const VACUUM: &str = "VACUUM ANALYZE rondo_bench.bench_wf";

/// The pgbench script: what one step writes, as one transaction. `:rows` comes from `-D`.
const SCRIPT: &str = r#"\set wf random(1, :rows)
BEGIN;
UPDATE rondo_bench.bench_wf SET current_node = 's2', step_count = step_count + 1, vars = vars || '{"last": "done"}', updated_at = now() WHERE id = :wf;
INSERT INTO rondo_bench.bench_jobs (workflow_id, node, operation, state, attempt, idempotency_key) VALUES (:wf, 's2', 'bench.work', 'ready', 1, md5(random()::text));
INSERT INTO rondo_bench.bench_events (workflow_id, kind, node, label, actor, data) VALUES (:wf, 'job_completed', 's1', 'done', 'bench-worker', '{}');
END;
"#;

/// What the PostgreSQL server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `server_version`.
    pub version: String,
    /// `fsync`.
    pub fsync: String,
    /// `synchronous_commit`.
    pub synchronous_commit: String,
    /// `shared_buffers`.
    pub shared_buffers: String,
}

/// What pgbench measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgbenchResult {
    /// Transactions per second, without connection set-up.
    pub tps: f64,
    /// Mean transaction latency in milliseconds, when pgbench printed it.
    pub latency_avg_ms: Option<f64>,
}

/// The ceiling, or why there is none.
#[derive(Debug, Clone)]
pub enum Ceiling {
    /// pgbench ran.
    Measured(PgbenchResult),
    /// pgbench is missing or failed; the reason, for the report.
    Skipped(String),
}

/// Reads the settings of the server holding the database at `db_url`.
pub async fn settings(db_url: &str) -> anyhow::Result<Settings> {
    let client = connect(db_url).await?;
    let row = client.query_one(SETTINGS, &[]).await?;
    Ok(Settings {
        version: row.try_get(0)?,
        fsync: row.try_get(1)?,
        synchronous_commit: row.try_get(2)?,
        shared_buffers: row.try_get(3)?,
    })
}

/// Measures the ceiling with `clients` pgbench clients for `seconds` against the database at
/// `db_url`. Never fails: a missing or failing pgbench is a [`Ceiling::Skipped`].
pub async fn ceiling(db_url: &str, clients: u32, seconds: u32) -> Ceiling {
    let Some(binary) = find_pgbench() else {
        return Ceiling::Skipped(format!(
            "`pgbench` not found on PATH or under {VERSIONED_ROOT}/*/bin; install it \
             (apt-get install postgresql-contrib, or postgresql on Debian) to measure the ceiling"
        ));
    };
    match measure(&binary, db_url, clients, seconds).await {
        Ok(result) => Ceiling::Measured(result),
        Err(error) => Ceiling::Skipped(format!("pgbench ({}): {error:#}", binary.display())),
    }
}

async fn measure(
    binary: &Path,
    db_url: &str,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<PgbenchResult> {
    prepare(db_url).await.context("creating its tables")?;
    let script = std::env::temp_dir().join(format!("rondo-bench-{}.sql", std::process::id()));
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let output = tokio::process::Command::new(binary)
        .args(["-n", "-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.to_string()])
        .args(["-D", &format!("rows={WORKFLOW_ROWS}")])
        .arg("-f")
        .arg(&script)
        .arg(db_url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    // The script is ours alone; a leftover file in the temporary directory harms nothing.
    let _ = std::fs::remove_file(&script);
    let output = output.context("starting it")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_output(&stdout).with_context(|| format!("no `tps = ` line in its output:\n{stdout}"))
}

async fn prepare(db_url: &str) -> anyhow::Result<()> {
    let client = connect(db_url).await?;
    client.batch_execute(CREATE_TABLES).await?;
    client.execute(FILL_WORKFLOWS, &[&WORKFLOW_ROWS]).await?;
    client.batch_execute(VACUUM).await?;
    Ok(())
}

/// `pgbench` on PATH, else in the highest installed version's directory.
fn find_pgbench() -> Option<PathBuf> {
    // The lookup a shell does for a command, not configuration.
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(VERSIONED_ROOT)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry
                .file_name()
                .to_str()?
                .split('.')
                .next()?
                .parse()
                .ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    on_path
        .into_iter()
        .chain(versioned.into_iter().map(|(_, dir)| dir))
        .map(|dir| dir.join("pgbench"))
        .find(|path| path.is_file())
}

/// Reads pgbench's summary: `tps = N (without initial connection time)` (PostgreSQL 14 and
/// later), or the `excluding connections establishing` line of older versions, falling back
/// to the first `tps = ` line; and `latency average = N ms`.
fn parse_output(text: &str) -> Option<PgbenchResult> {
    let tps_lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tps = "))
        .collect();
    let preferred = tps_lines
        .iter()
        .find(|rest| rest.contains("without initial") || rest.contains("excluding"))
        .or(tps_lines.first())?;
    let tps = leading_number(preferred)?;
    let latency_avg_ms = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("latency average = "))
        .and_then(leading_number);
    Some(PgbenchResult {
        tps,
        latency_avg_ms,
    })
}

/// The number at the start of `text`, before the first space.
fn leading_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps_and_latency_of_postgresql_16() {
        let output = "\
transaction type: /tmp/rondo-bench-1.sql
scaling factor: 1
query mode: simple
number of clients: 64
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 25012
number of failed transactions: 0 (0.000%)
latency average = 25.551 ms
initial connection time = 61.837 ms
tps = 2504.757829 (without initial connection time)
";
        assert_eq!(
            parse_output(output),
            Some(PgbenchResult {
                tps: 2504.757829,
                latency_avg_ms: Some(25.551),
            })
        );
    }

    #[test]
    fn prefers_the_tps_excluding_connections_of_older_versions() {
        let output = "\
number of transactions actually processed: 1000
latency average = 12.5 ms
tps = 790.1 (including connections establishing)
tps = 801.25 (excluding connections establishing)
";
        assert_eq!(parse_output(output).map(|r| r.tps), Some(801.25));
    }

    #[test]
    fn a_bare_tps_line_is_enough() {
        assert_eq!(
            parse_output("tps = 42\n"),
            Some(PgbenchResult {
                tps: 42.0,
                latency_avg_ms: None,
            })
        );
    }

    #[test]
    fn output_without_tps_has_no_result() {
        assert_eq!(parse_output(""), None);
        assert_eq!(
            parse_output("pgbench: error: connection to server failed\n"),
            None
        );
        assert_eq!(
            parse_output("tps = fast (without initial connection time)"),
            None
        );
    }
}
