//! `rondo-bench` (`make bench`): how fast Rondo runs workflows on this machine, next to how
//! fast the same PostgreSQL server commits the writes of one step.
//!
//! One run starts a fresh database (a throwaway PostgreSQL cluster unless
//! `RONDO_DATABASE_URL` or `DATABASE_URL` names a server), the real server in this process,
//! and in-process workers, then measures in turn: (c) latency on the idle system, (a)
//! throughput of one-step workflows, (b) chains of sequential steps, and (d) the PostgreSQL
//! ceiling with `pgbench`. It prints a table, then one line of JSON with every figure.
//! Progress goes to stderr, logs too (`RONDO_LOG`, default `warn`).

mod pgbench;
mod procstat;
mod report;
mod stats;
mod workloads;

use clap::Parser;
use rondo_server::testing::{TestDb, TestServer};
use tracing_subscriber::EnvFilter;

use crate::procstat::measured;
use crate::report::Report;
use crate::workloads::{Batch, CHAIN_GRAPH, ONE_STEP_GRAPH};

/// Benchmark Rondo (server and workers in-process) against the PostgreSQL ceiling (pgbench).
///
/// Sizes not given take their default, or their `--quick` value with `--quick`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// One-step workflows of the throughput workload [default: 10000; --quick: 500].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    workflows: Option<u32>,
    /// Workflows of the chain workload [default: 500; --quick: 50].
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
    /// Duration of the pgbench run, in seconds [default: 10; --quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pgbench_seconds: Option<u32>,
    /// Size of the server's PostgreSQL connection pool [default: the server's default].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_pool_size: Option<u32>,
    /// Small sizes for a smoke run, such as in CI.
    #[arg(long)]
    quick: bool,
}

/// How much work one run does.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// One-step workflows of the throughput workload.
    pub workflows: u32,
    /// Workflows of the chain workload.
    pub chains: u32,
    /// Steps of each chain workflow.
    pub chain_steps: u32,
    /// Round trips of the latency workload.
    pub latency_rounds: u32,
    /// Worker concurrency, starting clients, and pgbench clients.
    pub concurrency: u32,
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
    let sizes = Args::parse().sizes();
    let report = run(sizes).await?;
    print!("{}", report.table());
    println!("{}", report.json());
    Ok(())
}

/// Sets up PostgreSQL and the server, runs every workload in turn, and stops the server.
async fn run(sizes: Sizes) -> anyhow::Result<Report> {
    eprintln!("starting PostgreSQL and the server...");
    let db = TestDb::new().await;
    let postgres = pgbench::settings(&db.url).await?;
    let mut db_pool_size = 0;
    let server = TestServer::start_with(&db.url, |config| {
        if let Some(size) = sizes.db_pool_size {
            config.db_pool_size = size as usize;
        }
        db_pool_size = config.db_pool_size;
    })
    .await;
    let url = server.grpc_url();
    workloads::put_graphs(&url, sizes.chain_steps).await?;

    eprintln!("(c) latency: {} round trips...", sizes.latency_rounds);
    let latency = measured(workloads::run_latency(&url, sizes.latency_rounds))
        .await
        .transpose()?;
    eprintln!("(a) throughput: {} workflows...", sizes.workflows);
    let one_step = Batch {
        graph: ONE_STEP_GRAPH,
        count: sizes.workflows,
        steps: 1,
        concurrency: sizes.concurrency,
    };
    let throughput = measured(workloads::run_batch(&url, &one_step))
        .await
        .transpose()?;
    eprintln!(
        "(b) chains: {} workflows of {} steps...",
        sizes.chains, sizes.chain_steps
    );
    let chain = Batch {
        graph: CHAIN_GRAPH,
        count: sizes.chains,
        steps: sizes.chain_steps,
        concurrency: sizes.concurrency,
    };
    let chains = measured(workloads::run_batch(&url, &chain))
        .await
        .transpose()?;
    eprintln!("(d) pgbench: {} s...", sizes.pgbench_seconds);
    let ceiling = measured(pgbench::ceiling(
        &db.url,
        sizes.concurrency,
        sizes.pgbench_seconds,
    ))
    .await;
    if let pgbench::Ceiling::Skipped(reason) = &ceiling.value {
        eprintln!("pgbench skipped, ratios are null: {reason}");
    }

    let process_cpu_s = procstat::process_cpu_seconds();
    let peak_rss_kib = procstat::peak_rss_kib();
    server.shutdown().await?;
    Ok(Report {
        sizes,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        postgres,
        db_pool_size,
        latency,
        throughput,
        chains,
        ceiling,
        process_cpu_s,
        peak_rss_kib,
    })
}
