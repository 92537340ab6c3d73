//! `rondo-example-worker`: runs the example handlers against a Rondo server until Ctrl-C.

use std::time::Duration;

use clap::Parser;
use rondo_example_worker::{Faults, register};
use rondo_worker::{CancellationToken, Worker};

/// Example worker for Rondo's example graphs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// gRPC address of the Rondo server.
    #[arg(long, env = "RONDO_SERVER", default_value = "http://127.0.0.1:7233")]
    server: String,
    /// Worker identity shown in history.
    #[arg(long, default_value = "example-worker")]
    identity: String,
    /// Jobs handled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Probability (0 to 1) that a handler fails on purpose, to show retries and escalation.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Seed of the failure injection, to repeat a run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated work per job, in milliseconds.
    #[arg(long, default_value_t = 200)]
    work_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RONDO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fail_rate) {
        anyhow::bail!(
            "--fail-rate must be between 0 and 1, got {}",
            args.fail_rate
        );
    }
    let faults = Faults::new(args.fail_rate, args.seed);
    let builder = Worker::builder(args.server)
        .identity(args.identity)
        .concurrency(args.concurrency);
    let worker = register(builder, &faults, Duration::from_millis(args.work_ms)).build()?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("shutting down; finishing jobs in hand");
            signal.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    worker.run(shutdown).await?;
    Ok(())
}
