//! Everything one run measured, turned into the figures of the table and the JSON line.

use std::time::Duration;

use crate::Sizes;
use crate::figures::{self, Figure, Section, figure, number};
use crate::history::HistoryResult;
use crate::idle::{IdleResult, OneJobResult};
use crate::memory::MemoryResult;
use crate::pgbench::{Ceiling, Settings};
use crate::procstat::{Measured, Usage};
use crate::stats::Percentiles;
use crate::targets::{self, Target};
use crate::workloads::{BatchResult, LatencySamples};

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
    /// (b) Workflows of sequential steps started at once, on a nearly empty database.
    pub chains: Measured<BatchResult>,
    /// (e) Idle pollers.
    pub idle: IdleResult,
    /// (f) One job while the idle pollers wait.
    pub one_job: OneJobResult,
    /// (g) Memory while the pollers drain a big queue.
    pub memory: MemoryResult,
    /// (h) Chains on a big history.
    pub history: HistoryResult,
    /// (d) What pgbench measured on the same PostgreSQL server.
    pub ceiling: Measured<Ceiling>,
    /// CPU and memory over the whole run.
    pub whole_run: WholeRun,
}

/// CPU and memory over the whole run, of the server and of this process.
#[derive(Debug, Clone, Copy)]
pub struct WholeRun {
    /// CPU seconds of the server's process, from its start to its stop.
    pub server_cpu_s: Option<f64>,
    /// Largest peak resident memory of the server's process in any phase, in KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// CPU seconds of this process (workers, pollers, clients).
    pub bench_cpu_s: Option<f64>,
    /// Peak resident memory of this process, in KiB.
    pub bench_peak_rss_kib: Option<u64>,
}

impl Report {
    /// The table: figure | value | target | pass, a section per workload.
    pub fn table(&self) -> String {
        figures::table(&self.sections())
    }

    /// Every figure of [`Report::table`] as one line of JSON (no newline).
    pub fn json(&self) -> String {
        figures::json(&self.sections())
    }

    fn sections(&self) -> Vec<Section> {
        vec![
            self.setup(),
            self.latency(),
            self.throughput(),
            self.chains(),
            self.idle(),
            self.one_job(),
            self.memory(),
            self.history(),
            self.ceiling(),
            ratios(
                self.chain_steps_per_s(&self.chains.value),
                self.workflows_per_s(),
                &self.ceiling.value,
            ),
            self.whole_run(),
        ]
    }

    fn setup(&self) -> Section {
        let s = &self.sizes;
        Section {
            title: "setup (server in a child process; workers, pollers and clients in this \
                    process; PostgreSQL on this machine)"
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
                figure("pollers", "idle pollers", s.pollers, ""),
                figure("idle_seconds", "idle window", s.idle_seconds, "s"),
                figure("ready_jobs", "ready jobs to drain", s.ready_jobs, ""),
                figure(
                    "history_jobs",
                    "completed jobs of history",
                    s.history_jobs,
                    "",
                ),
                figure(
                    "pgbench_seconds",
                    "pgbench duration",
                    s.pgbench_seconds,
                    "s",
                ),
            ],
        }
    }

    fn latency(&self) -> Section {
        Section {
            title: format!(
                "(c) latency: {} one-step workflows one at a time on an idle server",
                self.sizes.latency_rounds
            ),
            figures: with_usage(
                latency_figures(&self.latency.value),
                "latency",
                &self.latency.usage,
            ),
        }
    }

    fn throughput(&self) -> Section {
        let s = &self.sizes;
        Section {
            title: format!(
                "(a) throughput: {} one-step workflows from {} concurrent clients",
                s.workflows, s.concurrency
            ),
            figures: with_usage(
                vec![
                    figure(
                        "throughput_runs_workflows_per_s",
                        "workflows per second of each run (the median one is reported)",
                        runs_per_second(u64::from(s.workflows), &self.throughput.value),
                        "/s",
                    ),
                    number(
                        "throughput_wall_s",
                        "first start to last completion",
                        Some(secs(self.throughput.value.wall)),
                        "s",
                    ),
                    number(
                        "throughput_workflows_per_s",
                        "workflows per second",
                        self.workflows_per_s(),
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
        }
    }

    fn chains(&self) -> Section {
        let s = &self.sizes;
        Section {
            title: format!(
                "(b) chains: {} workflows of {} sequential steps from {} concurrent clients",
                s.chains, s.chain_steps, s.concurrency
            ),
            figures: with_usage(
                self.chain_figures("chain", &self.chains.value),
                "chain",
                &self.chains.usage,
            ),
        }
    }

    fn idle(&self) -> Section {
        let idle = &self.idle;
        let pg_per_s = idle.pg_transactions.and_then(|n| idle.per_second(n as f64));
        let figures = vec![
            number(
                "idle_waiting_pollers",
                "long polls waiting at the window's start",
                Some(idle.waiting_pollers),
                "",
            ),
            number("idle_window_s", "window", Some(secs(idle.usage.wall)), "s"),
            number(
                "idle_server_cpu_pct",
                "server CPU, % of one core",
                idle.usage.server_cpu_pct(),
                "%",
            )
            .against(targets::IDLE_SERVER_CPU_PCT),
            number(
                "idle_claim_queries_per_s",
                "claim queries per second",
                idle.per_second(idle.counters.claim_queries),
                "/s",
            )
            .against(targets::IDLE_CLAIM_QUERIES_PER_S),
            number(
                "idle_claim_queries",
                "claim queries in the window",
                Some(idle.counters.claim_queries),
                "",
            ),
            number(
                "idle_poller_wakeups_per_s",
                "waiting polls woken per second",
                idle.per_second(idle.counters.poller_wakeups),
                "/s",
            ),
            number(
                "idle_pg_transactions_per_s",
                "PostgreSQL transactions per second",
                pg_per_s,
                "/s",
            ),
            number(
                "idle_polls_per_s",
                "PollJobs calls per second (waits running out)",
                idle.per_second(idle.polls_sent as f64),
                "/s",
            ),
            figure(
                "idle_poller_errors",
                "failed poller calls (whole fleet, so far)",
                idle.poller_errors,
                "",
            )
            .against(Target::Exactly(0.0)),
        ];
        Section {
            title: format!(
                "(e) idle pollers: {} long polls on an operation without jobs, {} s window",
                idle.pollers, self.sizes.idle_seconds
            ),
            figures: with_usage(figures, "idle", &idle.usage),
        }
    }

    fn one_job(&self) -> Section {
        let one = &self.one_job;
        let claims = one.counters.claim_queries;
        let wakeups = one.counters.poller_wakeups;
        Section {
            title: format!(
                "(f) one job while {} pollers wait (new polls held back meanwhile)",
                self.idle.pollers
            ),
            figures: vec![
                number(
                    "one_job_waiting_pollers",
                    "long polls waiting at the start",
                    Some(one.waiting_pollers),
                    "",
                ),
                figure(
                    "one_job_pollers_with_job",
                    "pollers that received a job",
                    one.pollers_with_job,
                    "",
                )
                .against(targets::ONE_JOB_POLLERS_WITH_JOB),
                number("one_job_claim_queries", "claim queries", Some(claims), "")
                    .against(targets::ONE_JOB_CLAIM_QUERIES),
                number("one_job_poller_wakeups", "polls woken", Some(wakeups), "")
                    .against(targets::ONE_JOB_WAKEUPS),
                number(
                    "one_job_start_to_poller_ms",
                    "StartWorkflow sent -> a poller has the job",
                    Some(secs(one.start_to_job) * 1e3),
                    "ms",
                ),
                figure(
                    "one_job_pass",
                    "(f) as a whole",
                    targets::one_job_passes(one.pollers_with_job, claims, wakeups),
                    "",
                )
                .with_check(
                    targets::ONE_JOB_RULE,
                    targets::one_job_passes(one.pollers_with_job, claims, wakeups),
                ),
            ],
        }
    }

    fn memory(&self) -> Section {
        let m = &self.memory;
        let figures = vec![
            number(
                "memory_seed_s",
                "seeding the ready jobs (SQL)",
                Some(secs(m.seed_wall)),
                "s",
            ),
            figure("memory_drained_jobs", "jobs drained", m.drained, "")
                .against(Target::Exactly(f64::from(m.jobs))),
            number(
                "memory_drain_s",
                "first job received to last completed",
                m.drain_wall.map(secs),
                "s",
            ),
            number(
                "memory_drain_jobs_per_s",
                "jobs drained per second",
                m.drain_per_second(),
                "/s",
            ),
            number(
                "memory_server_peak_rss_mib",
                "server peak resident memory",
                mib(m.peak_rss_kib()),
                "MiB",
            )
            .against(targets::MEMORY_PEAK_RSS_MIB),
        ];
        Section {
            title: format!(
                "(g) memory: {} ready jobs drained by {} pollers (capped at {} s)",
                m.jobs,
                self.idle.pollers,
                crate::memory::DRAIN_LIMIT.as_secs()
            ),
            figures: with_usage(figures, "memory", &m.usage),
        }
    }

    fn history(&self) -> Section {
        let h = &self.history;
        let mut figures = vec![
            figure("history_seeded_jobs", "completed jobs seeded", h.jobs, ""),
            figure(
                "history_seeded_workflows",
                "completed workflows seeded",
                h.workflows,
                "",
            ),
            number(
                "history_seed_s",
                "seeding them, one event per job (SQL)",
                Some(secs(h.seed_wall)),
                "s",
            ),
            number(
                "history_vacuum_s",
                "VACUUM ANALYZE afterwards",
                Some(secs(h.vacuum_wall)),
                "s",
            ),
        ];
        figures.extend(self.chain_figures("history_chain", &h.chains.value));
        let mut figures = with_usage(figures, "history_chain", &h.chains.usage);
        let empty = self.chain_figures("history_empty_chain", &h.empty.value);
        figures.extend(
            with_usage(empty, "history_empty_chain", &h.empty.usage)
                .into_iter()
                .map(|f| f.labelled_under("empty database")),
        );
        let pair_ratios: Vec<f64> = h
            .pair_ratios
            .iter()
            .map(|r| (r * 1000.0).round() / 1000.0)
            .collect();
        figures.push(figure(
            "history_chain_pair_ratios",
            "steps/s on the history / on the empty database, each pair of runs",
            pair_ratios,
            "",
        ));
        figures.push(
            number(
                "history_chain_ratio_to_empty",
                "the median of those ratios",
                h.ratio_to_empty(),
                "",
            )
            .against(targets::HISTORY_CHAIN_RATIO),
        );
        Section {
            title: format!(
                "(h) chains on a big history: (b) again after seeding {} completed jobs, \
                 {} runs alternating with {} on an empty database (history_empty_*)",
                h.jobs,
                crate::history::HISTORY_RUNS,
                crate::history::HISTORY_RUNS
            ),
            figures,
        }
    }

    fn ceiling(&self) -> Section {
        let s = &self.sizes;
        let (pgbench, skipped) = match &self.ceiling.value {
            Ceiling::Measured(result) => (Some(*result), None),
            Ceiling::Skipped(reason) => (None, Some(reason.as_str())),
        };
        Section {
            title: format!(
                "(d) PostgreSQL ceiling: pgbench, {} clients for {} s, one transaction = \
                 update + insert + insert",
                s.concurrency, s.pgbench_seconds
            ),
            figures: with_usage(
                vec![
                    number(
                        "pgbench_tps",
                        "transactions per second",
                        pgbench.map(|r| r.tps),
                        "/s",
                    ),
                    number(
                        "pgbench_latency_avg_ms",
                        "mean transaction latency",
                        pgbench.and_then(|r| r.latency_avg_ms),
                        "ms",
                    ),
                    figure("pgbench_skipped_reason", "skipped because", skipped, ""),
                ],
                "pgbench",
                &self.ceiling.usage,
            ),
        }
    }

    fn whole_run(&self) -> Section {
        let w = &self.whole_run;
        Section {
            title: "whole run".to_owned(),
            figures: vec![
                number(
                    "server_cpu_s",
                    "server process CPU time, user + system",
                    w.server_cpu_s,
                    "s",
                ),
                number(
                    "server_peak_rss_mib",
                    "server process peak resident memory (phases)",
                    mib(w.server_peak_rss_kib),
                    "MiB",
                ),
                number(
                    "bench_process_cpu_s",
                    "this process (workers, pollers, clients) CPU",
                    w.bench_cpu_s,
                    "s",
                ),
                number(
                    "bench_process_peak_rss_mib",
                    "this process peak resident memory (VmHWM)",
                    mib(w.bench_peak_rss_kib),
                    "MiB",
                ),
            ],
        }
    }

    /// Wall time, steps and workflows per second, and handler calls of a chain batch,
    /// keyed `{prefix}_*`.
    fn chain_figures(&self, prefix: &str, batch: &BatchResult) -> Vec<Figure> {
        let steps = u64::from(self.sizes.chains) * u64::from(self.sizes.chain_steps);
        vec![
            figure(
                &format!("{prefix}_runs_steps_per_s"),
                "steps per second of each run (the median one is reported)",
                runs_per_second(steps, batch),
                "/s",
            ),
            number(
                &format!("{prefix}_wall_s"),
                "first start to last completion",
                Some(secs(batch.wall)),
                "s",
            ),
            number(
                &format!("{prefix}_steps_per_s"),
                "steps per second",
                self.chain_steps_per_s(batch),
                "/s",
            ),
            number(
                &format!("{prefix}_workflows_per_s"),
                "workflows per second",
                per_second(u64::from(self.sizes.chains), batch.wall),
                "/s",
            ),
            figure(
                &format!("{prefix}_handler_calls"),
                "handler calls",
                batch.handler_calls,
                "",
            ),
        ]
    }

    fn chain_steps_per_s(&self, batch: &BatchResult) -> Option<f64> {
        let steps = u64::from(self.sizes.chains) * u64::from(self.sizes.chain_steps);
        per_second(steps, batch.wall)
    }

    fn workflows_per_s(&self) -> Option<f64> {
        per_second(u64::from(self.sizes.workflows), self.throughput.value.wall)
    }
}

/// The rate of `count` things in each run of `batch`, in the order the runs were made, to one
/// decimal.
fn runs_per_second(count: u64, batch: &BatchResult) -> Vec<f64> {
    batch
        .runs
        .iter()
        .filter_map(|wall| per_second(count, *wall))
        .map(|rate| (rate * 10.0).round() / 10.0)
        .collect()
}

/// Why the ratios to the PostgreSQL ceiling have no value when pgbench was skipped, as the
/// table says it next to their targets.
const PGBENCH_SKIPPED: &str = "pgbench skipped, see (d)";

/// The percentiles of (c), with their targets.
fn latency_figures(samples: &LatencySamples) -> Vec<Figure> {
    let round_trip = Percentiles::of(&samples.round_trip_ms);
    let dispatch = Percentiles::of(&samples.dispatch_ms);
    vec![
        number(
            "latency_round_trip_p50_ms",
            "StartWorkflow(wait) -> COMPLETED, p50",
            round_trip.map(|p| p.p50),
            "ms",
        )
        .against(targets::LATENCY_ROUND_TRIP_P50_MS),
        number(
            "latency_round_trip_p99_ms",
            "StartWorkflow(wait) -> COMPLETED, p99",
            round_trip.map(|p| p.p99),
            "ms",
        )
        .against(targets::LATENCY_ROUND_TRIP_P99_MS),
        number(
            "dispatch_latency_p50_ms",
            "job created_at -> worker has it, p50",
            dispatch.map(|p| p.p50),
            "ms",
        )
        .against(targets::DISPATCH_LATENCY_P50_MS),
        number(
            "dispatch_latency_p99_ms",
            "job created_at -> worker has it, p99",
            dispatch.map(|p| p.p99),
            "ms",
        ),
        figure(
            "dispatch_latency_samples",
            "jobs received",
            samples.dispatch_ms.len(),
            "",
        ),
    ]
}

/// (b) and (a) per pgbench transaction of (d), with their targets; both targets are not
/// measured (neither met nor missed) when pgbench was skipped.
fn ratios(
    chain_steps_per_s: Option<f64>,
    workflows_per_s: Option<f64>,
    ceiling: &Ceiling,
) -> Section {
    let (tps, skipped, title) = match ceiling {
        Ceiling::Measured(result) => (
            Some(result.tps),
            None,
            "ratios to the PostgreSQL ceiling (pgbench tps of (d))",
        ),
        Ceiling::Skipped(_) => (
            None,
            Some(PGBENCH_SKIPPED),
            "ratios to the PostgreSQL ceiling: not measured, pgbench was skipped (why: see (d))",
        ),
    };
    Section {
        title: title.to_owned(),
        figures: vec![
            number(
                "ratio_chain_steps_per_pgbench_tps",
                "chain steps/s / pgbench tps",
                ratio(chain_steps_per_s, tps),
                "",
            )
            .against_unless_skipped(targets::RATIO_CHAIN_STEPS_PER_PGBENCH_TPS, skipped),
            number(
                "ratio_throughput_per_pgbench_tps",
                "one-step workflows/s / pgbench tps",
                ratio(workflows_per_s, tps),
                "",
            )
            .against_unless_skipped(targets::RATIO_THROUGHPUT_PER_PGBENCH_TPS, skipped),
        ],
    }
}

/// `figures` followed by the [`usage_figures`] of their phase that they do not already have
/// (a phase may give one of them a target).
fn with_usage(mut figures: Vec<Figure>, prefix: &str, usage: &Usage) -> Vec<Figure> {
    for extra in usage_figures(prefix, usage) {
        if figures.iter().all(|f| f.key() != extra.key()) {
            figures.push(extra);
        }
    }
    figures
}

/// What a phase cost, keyed `{prefix}_server_cpu_s`, `{prefix}_server_cpu_pct`,
/// `{prefix}_server_peak_rss_mib`, `{prefix}_bench_cpu_s` and `{prefix}_host_cpu_busy_pct`.
fn usage_figures(prefix: &str, usage: &Usage) -> Vec<Figure> {
    vec![
        number(
            &format!("{prefix}_server_cpu_s"),
            "server CPU time",
            usage.server_cpu_s,
            "s",
        ),
        number(
            &format!("{prefix}_server_cpu_pct"),
            "server CPU, % of one core",
            usage.server_cpu_pct(),
            "%",
        ),
        number(
            &format!("{prefix}_server_peak_rss_mib"),
            "server peak resident memory",
            mib(usage.server_peak_rss_kib),
            "MiB",
        ),
        number(
            &format!("{prefix}_bench_cpu_s"),
            "this process (workers, clients) CPU time",
            usage.process_cpu_s,
            "s",
        ),
        number(
            &format!("{prefix}_host_cpu_busy_pct"),
            "machine CPU busy (PostgreSQL included)",
            usage.host_busy_pct,
            "%",
        ),
    ]
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// KiB as MiB.
fn mib(kib: Option<u64>) -> Option<f64> {
    // Memory sizes stay far below 2^52, so the conversion is exact.
    kib.map(|kib| kib as f64 / 1024.0)
}

/// `count` per second of `wall`; `None` for no time at all.
fn per_second(count: u64, wall: Duration) -> Option<f64> {
    // Counts stay far below 2^52, so the conversion is exact.
    (!wall.is_zero()).then(|| count as f64 / wall.as_secs_f64())
}

/// `numerator / denominator`; `None` when either is missing or the denominator is not positive.
fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    let (n, d) = (numerator?, denominator?);
    (d > 0.0).then(|| n / d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgbench::PgbenchResult;

    #[test]
    fn each_run_is_listed_as_a_rate_in_the_order_it_ran() {
        let batch = BatchResult {
            wall: Duration::from_secs(2),
            runs: [4000, 2000, 3000].map(Duration::from_millis).to_vec(),
            handler_calls: 10_000,
        };
        assert_eq!(runs_per_second(10_000, &batch), [2500.0, 5000.0, 3333.3]);
    }

    #[test]
    fn a_ratio_needs_both_sides_and_a_positive_denominator() {
        assert_eq!(ratio(Some(900.0), Some(1000.0)), Some(0.9));
        assert_eq!(ratio(None, Some(1000.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn a_phase_figure_with_a_target_replaces_the_usage_figure_of_its_key() {
        let usage = Usage {
            wall: Duration::from_secs(10),
            process_cpu_s: Some(1.0),
            server_cpu_s: Some(0.2),
            server_peak_rss_kib: Some(1024),
            host_busy_pct: Some(50.0),
        };
        let own = number(
            "idle_server_cpu_pct",
            "server CPU",
            usage.server_cpu_pct(),
            "%",
        )
        .against(targets::IDLE_SERVER_CPU_PCT);
        let figures = with_usage(vec![own.clone()], "idle", &usage);
        let keys: Vec<&str> = figures.iter().map(Figure::key).collect();
        assert_eq!(
            keys,
            [
                "idle_server_cpu_pct",
                "idle_server_cpu_s",
                "idle_server_peak_rss_mib",
                "idle_bench_cpu_s",
                "idle_host_cpu_busy_pct"
            ]
        );
        assert_eq!(figures[0], own);
    }

    /// The JSON of `sections`, parsed.
    fn json_of(sections: Vec<Section>) -> serde_json::Value {
        serde_json::from_str(&figures::json(&sections)).unwrap()
    }

    #[test]
    fn latency_percentiles_are_held_to_their_targets() {
        let samples = LatencySamples {
            // p50 2.0 (meets <= 2), p99 9.0 (misses <= 5).
            round_trip_ms: vec![1.0, 2.0, 2.0, 9.0],
            // p50 1.5 (misses <= 1).
            dispatch_ms: vec![1.5, 1.5, 3.0],
        };
        let json = json_of(vec![Section {
            title: "(c)".to_owned(),
            figures: latency_figures(&samples),
        }]);
        assert_eq!(json["latency_round_trip_p50_ms_target"], "<= 2");
        assert_eq!(json["latency_round_trip_p50_ms_pass"], true);
        assert_eq!(json["latency_round_trip_p99_ms_target"], "<= 5");
        assert_eq!(json["latency_round_trip_p99_ms_pass"], false);
        assert_eq!(json["dispatch_latency_p50_ms_target"], "<= 1");
        assert_eq!(json["dispatch_latency_p50_ms_pass"], false);
        assert!(
            json.get("dispatch_latency_p99_ms_target").is_none(),
            "the issue sets no target for the dispatch p99"
        );
        assert_eq!(
            json["targets_failed"],
            serde_json::json!(["latency_round_trip_p99_ms", "dispatch_latency_p50_ms"])
        );
    }

    #[test]
    fn no_latency_samples_miss_the_latency_targets() {
        let json = json_of(vec![Section {
            title: "(c)".to_owned(),
            figures: latency_figures(&LatencySamples {
                round_trip_ms: Vec::new(),
                dispatch_ms: Vec::new(),
            }),
        }]);
        assert_eq!(json["latency_round_trip_p50_ms"], serde_json::Value::Null);
        assert_eq!(
            json["targets_failed"],
            serde_json::json!([
                "latency_round_trip_p50_ms",
                "latency_round_trip_p99_ms",
                "dispatch_latency_p50_ms"
            ])
        );
    }

    #[test]
    fn ratios_to_a_measured_ceiling_are_held_to_their_targets() {
        let ceiling = Ceiling::Measured(PgbenchResult {
            tps: 1000.0,
            latency_avg_ms: None,
        });
        let json = json_of(vec![ratios(Some(1000.0), Some(400.0), &ceiling)]);
        assert_eq!(json["ratio_chain_steps_per_pgbench_tps"], 1.0);
        assert_eq!(json["ratio_chain_steps_per_pgbench_tps_target"], ">= 1");
        assert_eq!(json["ratio_chain_steps_per_pgbench_tps_pass"], true);
        assert_eq!(json["ratio_throughput_per_pgbench_tps"], 0.4);
        assert_eq!(json["ratio_throughput_per_pgbench_tps_target"], ">= 0.5");
        assert_eq!(json["ratio_throughput_per_pgbench_tps_pass"], false);
        assert_eq!(
            json["targets_failed"],
            serde_json::json!(["ratio_throughput_per_pgbench_tps"])
        );
        assert_eq!(json["targets_not_measured"], serde_json::json!([]));
    }

    #[test]
    fn ratios_without_pgbench_are_not_measured_rather_than_failed() {
        let ceiling = Ceiling::Skipped("pgbench not found".to_owned());
        let section = ratios(Some(1000.0), Some(400.0), &ceiling);
        assert!(
            section.title.contains("pgbench was skipped"),
            "{}",
            section.title
        );
        let table = figures::table(std::slice::from_ref(&section));
        for label in [
            "chain steps/s / pgbench tps",
            "one-step workflows/s / pgbench tps",
        ] {
            let line = table.lines().find(|line| line.contains(label)).unwrap();
            assert!(
                line.ends_with(&format!("not measured: {PGBENCH_SKIPPED}")),
                "{line}"
            );
            assert!(!line.contains("FAIL"), "{line}");
        }
        let json = json_of(vec![section]);
        assert_eq!(
            json["ratio_chain_steps_per_pgbench_tps"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["ratio_chain_steps_per_pgbench_tps_pass"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["ratio_throughput_per_pgbench_tps_pass"],
            serde_json::Value::Null
        );
        assert_eq!(json["targets_failed"], serde_json::json!([]));
        assert_eq!(
            json["targets_not_measured"],
            serde_json::json!([
                "ratio_chain_steps_per_pgbench_tps",
                "ratio_throughput_per_pgbench_tps"
            ])
        );
    }

    #[test]
    fn rates_are_per_second_of_wall_time() {
        assert_eq!(per_second(500, Duration::from_millis(250)), Some(2000.0));
        assert_eq!(per_second(500, Duration::ZERO), None);
        assert_eq!(mib(Some(204_800)), Some(200.0));
    }
}
