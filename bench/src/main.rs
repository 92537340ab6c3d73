//! `rondo-bench` (`make bench`): how fast Rondo runs workflows on this machine, what idle
//! pollers cost, how much memory the server needs, and whether a big history slows it down,
//! next to how fast the same PostgreSQL server commits the writes of one step.
//!
//! One run starts a fresh database (a throwaway PostgreSQL cluster unless
//! `RONDO_DATABASE_URL` or `DATABASE_URL` names a server), the real server in a child process
//! of its own (this executable again, with a hidden `--serve`), and workers, pollers and
//! clients in this process, then measures in turn: (a) throughput of one-step workflows, (c)
//! latency on the idle system, (b) chains of sequential steps, (e) 1,000 idle pollers,
//! (f) one job while they wait, (g) the server's memory while they drain a big queue, (h)
//! chains again on a big history, and (d) the PostgreSQL ceiling with `pgbench`. It prints a
//! table (figure | value | target | pass), then one line of JSON with every figure. Progress
//! goes to stderr, logs too (`RONDO_LOG`, default `warn`).

mod db;
mod figures;
mod fleet;
mod history;
mod idle;
mod memory;
mod metrics;
mod pgbench;
mod procstat;
mod report;
mod server;
mod stats;
mod targets;
mod workloads;

use anyhow::Context;
use clap::Parser;
use rondo_server::testing::TestDb;
use tracing_subscriber::EnvFilter;

use crate::idle::Probe;
use crate::procstat::{Proc, measured};
use crate::report::{Report, WholeRun};
use crate::server::ServerProcess;
use crate::workloads::{Batch, CHAIN_GRAPH, ONE_STEP_GRAPH};

/// Benchmark Rondo (the server in a child process; workers, pollers and clients in this one)
/// against the PostgreSQL ceiling (pgbench).
///
/// Sizes not given take their default, or their `--quick` value with `--quick`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// One-step workflows of the throughput workload [default: 10000; --quick: 500].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    workflows: Option<u32>,
    /// Workflows of the chain workloads [default: 500; --quick: 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    chains: Option<u32>,
    /// Sequential steps of each chain workflow [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    chain_steps: Option<u32>,
    /// Sequential round trips of the latency workload [default: 300; --quick: 30].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    latency_rounds: Option<u32>,
    /// Worker concurrency, concurrent starting clients, and pgbench clients [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    concurrency: Option<u32>,
    /// Long-polling pollers of the idle, one-job and memory workloads [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pollers: Option<u32>,
    /// Measured window of the idle-pollers workload, in seconds [default: 60; --quick: 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    idle_seconds: Option<u32>,
    /// Ready jobs the pollers drain in the memory workload [default: 100000; --quick: 5000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    ready_jobs: Option<u32>,
    /// Completed jobs seeded before the chains run again [default: 1000000; --quick: 20000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    history_jobs: Option<u32>,
    /// Duration of the pgbench run, in seconds [default: 10; --quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pgbench_seconds: Option<u32>,
    /// Size of the server's PostgreSQL connection pool [default: the server's default].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_pool_size: Option<u32>,
    /// Small sizes for a smoke run, such as in CI.
    #[arg(long)]
    quick: bool,
    /// Internal: be the server's child process, serving the database named in
    /// `RONDO_BENCH_SERVE_DATABASE_URL` until stdin closes.
    #[arg(long, hide = true, requires = "serve_database_url")]
    serve: bool,
    /// The database of `--serve`.
    #[arg(long, hide = true, env = server::SERVE_DATABASE_URL_ENV, hide_env_values = true)]
    serve_database_url: Option<String>,
}

/// How much work one run does.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// One-step workflows of the throughput workload.
    pub workflows: u32,
    /// Workflows of the chain workloads.
    pub chains: u32,
    /// Steps of each chain workflow.
    pub chain_steps: u32,
    /// Round trips of the latency workload.
    pub latency_rounds: u32,
    /// Worker concurrency, starting clients, and pgbench clients.
    pub concurrency: u32,
    /// Pollers of the idle, one-job and memory workloads.
    pub pollers: u32,
    /// Measured window of the idle-pollers workload, in seconds.
    pub idle_seconds: u32,
    /// Ready jobs of the memory workload.
    pub ready_jobs: u32,
    /// Completed jobs seeded for the history workload.
    pub history_jobs: u32,
    /// Duration of the pgbench run, in seconds.
    pub pgbench_seconds: u32,
    /// Server connection pool size; `None` for the server's default.
    pub db_pool_size: Option<u32>,
}

impl Args {
    fn sizes(&self) -> Sizes {
        let pick = |given: Option<u32>, full: u32, quick: u32| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        Sizes {
            workflows: pick(self.workflows, 10_000, 500),
            chains: pick(self.chains, 500, 50),
            chain_steps: pick(self.chain_steps, 10, 10),
            latency_rounds: pick(self.latency_rounds, 300, 30),
            concurrency: pick(self.concurrency, 64, 64),
            pollers: pick(self.pollers, 1000, 1000),
            idle_seconds: pick(self.idle_seconds, 60, 5),
            ready_jobs: pick(self.ready_jobs, 100_000, 5_000),
            history_jobs: pick(self.history_jobs, 1_000_000, 20_000),
            pgbench_seconds: pick(self.pgbench_seconds, 10, 2),
            db_pool_size: self.db_pool_size,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("RONDO_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.serve {
        let db_url = args
            .serve_database_url
            .as_deref()
            .context("--serve needs RONDO_BENCH_SERVE_DATABASE_URL")?;
        return server::serve(db_url, args.db_pool_size).await;
    }
    let report = run(args.sizes()).await?;
    print!("{}", report.table());
    println!("{}", report.json());
    Ok(())
}

/// Sets up PostgreSQL and the server, runs every workload in turn, and stops the server.
async fn run(sizes: Sizes) -> anyhow::Result<Report> {
    eprintln!("starting PostgreSQL and the server...");
    let db = TestDb::new().await;
    let postgres = pgbench::settings(&db.url).await?;
    // Declared after `db`, so that on an early return it is dropped (and killed) first.
    let server = ServerProcess::spawn(&db.url, sizes.db_pool_size).await?;
    let proc = server.proc().clone();
    let url = server.grpc_url().to_owned();
    workloads::put_graphs(&url, sizes.chain_steps).await?;

    eprintln!(
        "(a) throughput: {} workflows, {} runs...",
        sizes.workflows,
        workloads::BATCH_RUNS
    );
    let one_step = Batch {
        graph: ONE_STEP_GRAPH,
        count: sizes.workflows,
        steps: 1,
        concurrency: sizes.concurrency,
    };
    let throughput =
        workloads::run_batch_median(&proc, &url, &one_step, workloads::BATCH_RUNS).await?;
    // A server in service has statistics that fit its tables. On a brand-new database the
    // server analyzes each hot table at its first thousand changes, and then every cached
    // plan is made again: in (c), that would land in the measured rounds.
    db::vacuum(&db::connect(&db.url).await?).await?;
    eprintln!("(c) latency: {} round trips...", sizes.latency_rounds);
    let latency = measured(&proc, workloads::run_latency(&url, sizes.latency_rounds))
        .await
        .transpose()?;
    eprintln!(
        "(b) chains: {} workflows of {} steps, {} runs...",
        sizes.chains,
        sizes.chain_steps,
        workloads::BATCH_RUNS
    );
    let chain = Batch {
        graph: CHAIN_GRAPH,
        count: sizes.chains,
        steps: sizes.chain_steps,
        concurrency: sizes.concurrency,
    };
    let chains = workloads::run_batch_median(&proc, &url, &chain, workloads::BATCH_RUNS).await?;

    let probe = Probe {
        server: &proc,
        metrics_url: server.metrics_url(),
        grpc_url: &url,
        db_url: &db.url,
    };
    eprintln!(
        "(e) idle pollers: {} pollers, {} s window...",
        sizes.pollers, sizes.idle_seconds
    );
    let window = std::time::Duration::from_secs(u64::from(sizes.idle_seconds));
    let (fleet, idle) = idle::run_idle(&probe, sizes.pollers, window).await?;
    eprintln!("(f) one job while {} pollers wait...", sizes.pollers);
    let one_job = idle::run_one_job(&probe, &fleet).await?;
    eprintln!("(g) memory: {} ready jobs to drain...", sizes.ready_jobs);
    let memory = memory::run_memory(&probe, &fleet, sizes.ready_jobs).await?;
    fleet.stop().await;
    eprintln!(
        "(h) chains on a big history: seeding {} completed jobs...",
        sizes.history_jobs
    );
    let target = history::Target {
        server: &proc,
        grpc_url: &url,
        db_url: &db.url,
        db_pool_size: sizes.db_pool_size,
    };
    let history = history::run_history(target, &chain, sizes.history_jobs).await?;

    eprintln!("(d) pgbench: {} s...", sizes.pgbench_seconds);
    let ceiling = measured(
        &proc,
        pgbench::ceiling(&db.url, sizes.concurrency, sizes.pgbench_seconds),
    )
    .await;
    if let pgbench::Ceiling::Skipped(reason) = &ceiling.value {
        eprintln!("pgbench skipped, ratios null and their targets not measured: {reason}");
    }

    let phase_peaks = [
        latency.usage.server_peak_rss_kib,
        throughput.usage.server_peak_rss_kib,
        chains.usage.server_peak_rss_kib,
        idle.usage.server_peak_rss_kib,
        memory.peak_rss_kib(),
        history.chains.usage.server_peak_rss_kib,
        ceiling.usage.server_peak_rss_kib,
    ];
    let whole_run = WholeRun {
        server_cpu_s: proc.cpu_seconds(),
        server_peak_rss_kib: phase_peaks.into_iter().flatten().max(),
        bench_cpu_s: Proc::current().cpu_seconds(),
        bench_peak_rss_kib: Proc::current().peak_rss_kib(),
    };
    let db_pool_size = server.db_pool_size();
    server.stop().await?;
    Ok(Report {
        sizes,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        postgres,
        db_pool_size,
        latency,
        throughput,
        chains,
        idle,
        one_job,
        memory,
        history,
        ceiling,
        whole_run,
    })
}
