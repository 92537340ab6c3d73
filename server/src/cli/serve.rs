//! Commands that run the server side: `rondo serve`, `rondo migrate`, and the hidden
//! `rondo dev-db` used by `make run`. Rule: signals are handled here, once: the first SIGINT or
//! SIGTERM cancels the shutdown token, a second one exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::CliError;
use super::output::Printer;
use crate::config::ServeConfig;
use crate::{Listeners, pgcluster, store};

/// Exit code of a process ended by a second interrupt, as shells report SIGINT (128 + 2).
const FORCED_EXIT_CODE: i32 = 130;

/// Flags of `rondo migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "RONDO_DATABASE_URL")]
    pub database_url: String,
}

/// Flags of `rondo dev-db`.
#[derive(Debug, Clone, Args)]
pub struct DevDbArgs {
    /// Data directory of the private cluster.
    #[arg(long, default_value = ".data/pg")]
    pub dir: PathBuf,
    /// Port the cluster listens on (loopback only).
    #[arg(long, default_value_t = 55432, conflicts_with = "stop")]
    pub port: u16,
    /// Stop the cluster instead of starting it.
    #[arg(long)]
    pub stop: bool,
}

/// `rondo serve`: binds both ports, then serves until the first signal.
pub async fn serve(config: ServeConfig) -> Result<(), CliError> {
    let grpc = bind(config.listen, "gRPC API (--listen)").await?;
    let http = bind(config.http_listen, "HTTP port (--http-listen)").await?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(shutdown.clone()));
    let result = crate::serve(config, Listeners { grpc, http }, shutdown).await;
    signals.abort();
    result.map_err(|e| CliError::Failed(format!("server stopped with an error: {e}")))
}

/// Binds one listener, naming the address and its purpose when that fails.
async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {addr} for the {what}: {e}")))
}

/// Cancels `shutdown` on the first SIGINT/SIGTERM and exits the process on the second, so an
/// operator can always stop a server whose graceful shutdown hangs.
#[cfg(unix)]
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop the server with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::warn!("second signal: exiting at once");
    std::process::exit(FORCED_EXIT_CODE);
}

/// Cancels `shutdown` on the first Ctrl-C and exits the process on the second.
#[cfg(not(unix))]
async fn watch_signals(shutdown: CancellationToken) {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot install the Ctrl-C handler");
        return;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        tracing::warn!("second signal: exiting at once");
        std::process::exit(FORCED_EXIT_CODE);
    }
}

/// `rondo migrate`: applies pending migrations and says how many.
pub async fn migrate(args: MigrateArgs, p: &mut Printer<'_>) -> Result<(), CliError> {
    let applied = store::migrate(&args.database_url)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if p.is_json() {
        p.json(&json!({ "applied": applied }))?;
    } else if applied == 0 {
        writeln!(p.out, "database up to date")?;
    } else {
        writeln!(
            p.out,
            "applied {applied} migration{}",
            if applied == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// `rondo dev-db`: starts the private cluster and prints its URL (the only line on stdout, so
/// scripts can capture it), or stops it.
pub async fn dev_db(args: DevDbArgs, p: &mut Printer<'_>) -> Result<(), CliError> {
    if args.stop {
        pgcluster::stop_dev_cluster(&args.dir)
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        if p.is_json() {
            p.json(&json!({ "stopped": args.dir }))?;
        } else {
            writeln!(p.err, "stopped the dev cluster in {}", args.dir.display())?;
        }
        return Ok(());
    }
    let url = pgcluster::ensure_dev_cluster(&args.dir, args.port)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if p.is_json() {
        p.json(&json!({ "url": url }))?;
    } else {
        writeln!(p.out, "{url}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn dev_db_stop_and_port_exclude_each_other() {
        let cli = Cli::try_parse_from(["rondo", "dev-db", "--dir", "/tmp/pg", "--stop"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::DevDb(DevDbArgs { stop: true, .. })
        ));
        assert!(Cli::try_parse_from(["rondo", "dev-db", "--stop", "--port", "5"]).is_err());
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr, "gRPC API (--listen)").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {addr} for the gRPC API")),
            "{err}"
        );
    }
}
