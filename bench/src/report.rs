//! The results, as a table for people and one line of JSON for machines. Both are made from
//! one list of figures, so they never disagree.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::Sizes;
use crate::pgbench::{Ceiling, Settings};
use crate::procstat::{Measured, Usage};
use crate::stats::Percentiles;
use crate::workloads::{BatchResult, LatencySamples};

/// Width of the label column of the table.
const LABEL_WIDTH: usize = 46;

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The sizes the run used.
    pub sizes: Sizes,
    /// CPUs of this machine, which the server, the workers and PostgreSQL all share.
    pub cpus: usize,
    /// Settings of the PostgreSQL server.
    pub postgres: Settings,
    /// Size of the server's connection pool.
    pub db_pool_size: usize,
    /// (c) Round trips and dispatch latency on an idle server.
    pub latency: Measured<LatencySamples>,
    /// (a) One-step workflows started at once.
    pub throughput: Measured<BatchResult>,
    /// (b) Workflows of sequential steps started at once.
    pub chains: Measured<BatchResult>,
    /// (d) What pgbench measured on the same PostgreSQL server.
    pub ceiling: Measured<Ceiling>,
    /// CPU seconds of this process over the whole run.
    pub process_cpu_s: Option<f64>,
    /// Peak resident memory of this process over the whole run, in KiB.
    pub peak_rss_kib: Option<u64>,
}

/// One figure: its JSON key, its label in the table, its value and unit.
struct Figure {
    /// Key in the JSON line, stable for scripts that compare runs.
    key: String,
    /// What the table calls it.
    label: &'static str,
    /// A number, a string, or `null` when it was not measured.
    value: Value,
    /// Shown after the value in the table; JSON keys carry the unit in their names instead.
    unit: &'static str,
}

/// Figures under a heading of the table.
struct Section {
    /// The heading: which workload, at which size.
    title: String,
    /// The figures under it.
    figures: Vec<Figure>,
}

impl Report {
    /// The table, one section per workload, each line ending in a newline.
    pub fn table(&self) -> String {
        let mut table = String::new();
        for section in self.sections() {
            let _ = writeln!(table, "{}", section.title);
            for f in section.figures {
                let value = match &f.value {
                    Value::Null => "-".to_owned(),
                    Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let line = format!("  {:<LABEL_WIDTH$} {value} {}", f.label, f.unit);
                let _ = writeln!(table, "{}", line.trim_end());
            }
            table.push('\n');
        }
        table
    }

    /// Every figure of [`Report::table`] as one line of JSON (no newline), numbers rounded to
    /// three decimals, `null` for what was not measured.
    pub fn json(&self) -> String {
        let map: Map<String, Value> = self
            .sections()
            .into_iter()
            .flat_map(|section| section.figures)
            .map(|f| (f.key, f.value))
            .collect();
        Value::Object(map).to_string()
    }

    fn sections(&self) -> Vec<Section> {
        let s = &self.sizes;
        let pgbench = match &self.ceiling.value {
            Ceiling::Measured(result) => Some(*result),
            Ceiling::Skipped(_) => None,
        };
        let skipped = match &self.ceiling.value {
            Ceiling::Measured(_) => None,
            Ceiling::Skipped(reason) => Some(reason.as_str()),
        };
        let tps = pgbench.map(|r| r.tps);
        let workflows_per_s = per_second(u64::from(s.workflows), self.throughput.value.wall);
        let chain_steps = u64::from(s.chains) * u64::from(s.chain_steps);
        let chain_steps_per_s = per_second(chain_steps, self.chains.value.wall);
        let round_trip = Percentiles::of(&self.latency.value.round_trip_ms);
        let dispatch = Percentiles::of(&self.latency.value.dispatch_ms);

        vec![
            Section {
                title: "setup (server and workers in this process, PostgreSQL on this machine)"
                    .to_owned(),
                figures: vec![
                    figure(
                        "postgres_version",
                        "PostgreSQL",
                        self.postgres.version.as_str(),
                        "",
                    ),
                    figure("postgres_fsync", "fsync", self.postgres.fsync.as_str(), ""),
                    figure(
                        "postgres_synchronous_commit",
                        "synchronous_commit",
                        self.postgres.synchronous_commit.as_str(),
                        "",
                    ),
                    figure(
                        "postgres_shared_buffers",
                        "shared_buffers",
                        self.postgres.shared_buffers.as_str(),
                        "",
                    ),
                    figure(
                        "server_db_pool_size",
                        "server connection pool",
                        self.db_pool_size,
                        "connections",
                    ),
                    figure("cpus", "CPUs", self.cpus, ""),
                    figure(
                        "concurrency",
                        "worker concurrency = clients = pgbench clients",
                        s.concurrency,
                        "",
                    ),
                    figure("workflows", "throughput workflows", s.workflows, ""),
                    figure("chains", "chain workflows", s.chains, ""),
                    figure("chain_steps", "steps per chain", s.chain_steps, ""),
                    figure(
                        "latency_rounds",
                        "latency round trips",
                        s.latency_rounds,
                        "",
                    ),
                    figure(
                        "pgbench_seconds",
                        "pgbench duration",
                        s.pgbench_seconds,
                        "s",
                    ),
                ],
            },
            Section {
                title: format!(
                    "(c) latency: {} one-step workflows one at a time on an idle server",
                    s.latency_rounds
                ),
                figures: with_usage(
                    vec![
                        figure(
                            "latency_round_trip_p50_ms",
                            "StartWorkflow + AwaitWorkflow, p50",
                            round(round_trip.map(|p| p.p50)),
                            "ms",
                        ),
                        figure(
                            "latency_round_trip_p99_ms",
                            "StartWorkflow + AwaitWorkflow, p99",
                            round(round_trip.map(|p| p.p99)),
                            "ms",
                        ),
                        figure(
                            "dispatch_latency_p50_ms",
                            "job created_at -> worker has it, p50",
                            round(dispatch.map(|p| p.p50)),
                            "ms",
                        ),
                        figure(
                            "dispatch_latency_p99_ms",
                            "job created_at -> worker has it, p99",
                            round(dispatch.map(|p| p.p99)),
                            "ms",
                        ),
                        figure(
                            "dispatch_latency_samples",
                            "jobs received",
                            self.latency.value.dispatch_ms.len(),
                            "",
                        ),
                    ],
                    "latency",
                    &self.latency.usage,
                ),
            },
            Section {
                title: format!(
                    "(a) throughput: {} one-step workflows from {} concurrent clients",
                    s.workflows, s.concurrency
                ),
                figures: with_usage(
                    vec![
                        figure(
                            "throughput_wall_s",
                            "first start to last completion",
                            round(Some(secs(self.throughput.value.wall))),
                            "s",
                        ),
                        figure(
                            "throughput_workflows_per_s",
                            "workflows per second",
                            round(workflows_per_s),
                            "/s",
                        ),
                        figure(
                            "throughput_handler_calls",
                            "handler calls",
                            self.throughput.value.handler_calls,
                            "",
                        ),
                    ],
                    "throughput",
                    &self.throughput.usage,
                ),
            },
            Section {
                title: format!(
                    "(b) chains: {} workflows of {} sequential steps from {} concurrent clients",
                    s.chains, s.chain_steps, s.concurrency
                ),
                figures: with_usage(
                    vec![
                        figure(
                            "chain_wall_s",
                            "first start to last completion",
                            round(Some(secs(self.chains.value.wall))),
                            "s",
                        ),
                        figure(
                            "chain_steps_per_s",
                            "steps per second",
                            round(chain_steps_per_s),
                            "/s",
                        ),
                        figure(
                            "chain_workflows_per_s",
                            "workflows per second",
                            round(per_second(u64::from(s.chains), self.chains.value.wall)),
                            "/s",
                        ),
                        figure(
                            "chain_handler_calls",
                            "handler calls",
                            self.chains.value.handler_calls,
                            "",
                        ),
                    ],
                    "chain",
                    &self.chains.usage,
                ),
            },
            Section {
                title: format!(
                    "(d) PostgreSQL ceiling: pgbench, {} clients for {} s, one transaction = \
                     update + insert + insert",
                    s.concurrency, s.pgbench_seconds
                ),
                figures: with_usage(
                    vec![
                        figure("pgbench_tps", "transactions per second", round(tps), "/s"),
                        figure(
                            "pgbench_latency_avg_ms",
                            "mean transaction latency",
                            round(pgbench.and_then(|r| r.latency_avg_ms)),
                            "ms",
                        ),
                        figure("pgbench_skipped_reason", "skipped because", skipped, ""),
                    ],
                    "pgbench",
                    &self.ceiling.usage,
                ),
            },
            Section {
                title: "ratios to the PostgreSQL ceiling".to_owned(),
                figures: vec![
                    figure(
                        "ratio_chain_steps_per_pgbench_tps",
                        "chain steps/s / pgbench tps",
                        round(ratio(chain_steps_per_s, tps)),
                        "",
                    ),
                    figure(
                        "ratio_throughput_per_pgbench_tps",
                        "one-step workflows/s / pgbench tps",
                        round(ratio(workflows_per_s, tps)),
                        "",
                    ),
                ],
            },
            Section {
                title: "in-process server+workers (this process, with the benchmark's clients), \
                        whole run"
                    .to_owned(),
                figures: vec![
                    figure(
                        "in_process_server_workers_cpu_s",
                        "CPU time, user + system",
                        round(self.process_cpu_s),
                        "s",
                    ),
                    figure(
                        "in_process_server_workers_peak_rss_mib",
                        "peak resident memory (VmHWM)",
                        round(self.peak_rss_kib.map(|kib| kib as f64 / 1024.0)),
                        "MiB",
                    ),
                ],
            },
        ]
    }
}

fn figure(key: &str, label: &'static str, value: impl Into<Value>, unit: &'static str) -> Figure {
    Figure {
        key: key.to_owned(),
        label,
        value: value.into(),
        unit,
    }
}

/// `figures` followed by the CPU figures of their phase, keyed `{prefix}_cpu_s` and
/// `{prefix}_host_cpu_busy_pct`.
fn with_usage(mut figures: Vec<Figure>, prefix: &str, usage: &Usage) -> Vec<Figure> {
    figures.extend([
        figure(
            &format!("{prefix}_cpu_s"),
            "CPU time of the in-process server+workers",
            round(usage.process_cpu_s),
            "s",
        ),
        figure(
            &format!("{prefix}_host_cpu_busy_pct"),
            "machine CPU busy (PostgreSQL included)",
            round(usage.host_busy_pct),
            "%",
        ),
    ]);
    figures
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// `count` per second of `wall`; `None` for no time at all.
fn per_second(count: u64, wall: Duration) -> Option<f64> {
    // Counts stay far below 2^52, so the conversion is exact.
    (!wall.is_zero()).then(|| count as f64 / wall.as_secs_f64())
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    let (n, d) = (numerator?, denominator?);
    (d > 0.0).then(|| n / d)
}

/// Three decimals are more than any of these figures can tell.
fn round(value: Option<f64>) -> Option<f64> {
    value.map(|v| (v * 1000.0).round() / 1000.0)
}
