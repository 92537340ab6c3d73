//! The server under test, in a child process of its own so that its CPU time and memory are
//! measured apart from the workers and the benchmark's clients.
//!
//! The benchmark runs itself again (`current_exe`) with a hidden flag; that child starts the
//! real server on the benchmark's database, prints one line saying where it listens, and
//! serves until its stdin closes. The parent holds the other end of that pipe, so the child
//! stops when the parent asks, and also when the parent dies, however it dies; on the
//! parent's early returns and panics, dropping the [`ServerProcess`] kills the child.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rondo_server::testing::TestServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::procstat::Proc;

/// Environment variable carrying the database URL to the child (not its command line, which
/// any local user can read).
pub const SERVE_DATABASE_URL_ENV: &str = "RONDO_BENCH_SERVE_DATABASE_URL";

/// First word of the child's one line of output.
const READY: &str = "rondo-bench-server-ready";

/// Longest the child may take to start serving (it migrates nothing: the database is ready).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest the child may take to stop once asked, before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the child waits for the server to stop gracefully before it exits anyway: when
/// the parent died, nobody is left to kill it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the child serves, as it announced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ready {
    /// `http://127.0.0.1:PORT` of the gRPC API.
    grpc_url: String,
    /// `http://127.0.0.1:PORT/metrics`.
    metrics_url: String,
    /// Size of its PostgreSQL connection pool.
    db_pool_size: usize,
}

/// The server's child process, serving until [`ServerProcess::stop`]; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child, started with `kill_on_drop`.
    child: Child,
    /// The write end of the child's stdin: closing it tells the child to stop.
    stdin: Option<ChildStdin>,
    /// The child in `/proc`, for its CPU time and memory.
    proc: Proc,
    /// Where it serves.
    ready: Ready,
}

impl ServerProcess {
    /// Starts the server in a child process on the database at `db_url`, with a pool of
    /// `db_pool_size` connections (`None`: the server's default), and returns once it serves.
    pub async fn spawn(db_url: &str, db_pool_size: Option<u32>) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("finding the benchmark's own executable")?;
        let mut command = Command::new(&exe);
        command
            .arg("--serve")
            .env(SERVE_DATABASE_URL_ENV, db_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(size) = db_pool_size {
            command.arg("--db-pool-size").arg(size.to_string());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} --serve", exe.display()))?;
        let pid = child.id().context("the server's process has no id")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .with_context(|| {
                format!("the server did not start in {}s", START_TIMEOUT.as_secs())
            })??;
        let Some(line) = line else {
            let status = child.wait().await?;
            bail!("the server's process ended before it served: {status}");
        };
        let ready = parse_ready_line(&line)
            .with_context(|| format!("the server's process said `{line}`"))?;
        Ok(ServerProcess {
            child,
            stdin,
            proc: Proc::of(pid),
            ready,
        })
    }

    /// `http://127.0.0.1:PORT` of the gRPC API.
    pub fn grpc_url(&self) -> &str {
        &self.ready.grpc_url
    }

    /// URL of the Prometheus metrics.
    pub fn metrics_url(&self) -> &str {
        &self.ready.metrics_url
    }

    /// Size of the server's PostgreSQL connection pool.
    pub fn db_pool_size(&self) -> usize {
        self.ready.db_pool_size
    }

    /// The server's process in `/proc`.
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Asks the server to stop and waits for its process to end; kills it if it takes
    /// longer than a few seconds. Fails when it ended badly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the server's process ended with {status}");
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "the server's process did not stop within {}s and was killed",
                    STOP_TIMEOUT.as_secs()
                )
            }
        }
    }
}

/// The child's side: starts the server on `db_url`, announces it on stdout, and serves until
/// stdin closes.
pub async fn serve(db_url: &str, db_pool_size: Option<u32>) -> anyhow::Result<()> {
    let mut pool = 0;
    let server = TestServer::start_with(db_url, |config| {
        if let Some(size) = db_pool_size {
            config.db_pool_size = size as usize;
        }
        pool = config.db_pool_size;
    })
    .await;
    let ready = Ready {
        grpc_url: server.grpc_url(),
        metrics_url: format!("{}/metrics", server.http_url()),
        db_pool_size: pool,
    };
    {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(ready_line(&ready).as_bytes())?;
        stdout.flush()?;
    }
    // The parent never writes: a read returns 0 (or fails) once it closes the pipe or dies.
    tokio::task::spawn_blocking(|| {
        let mut buffer = [0_u8; 64];
        while std::io::stdin().read(&mut buffer).is_ok_and(|n| n > 0) {}
    })
    .await?;
    tokio::time::timeout(SHUTDOWN_TIMEOUT, server.shutdown())
        .await
        .context("the server did not stop in time")??;
    Ok(())
}

/// The child's one line: `rondo-bench-server-ready GRPC_URL METRICS_URL POOL_SIZE\n`.
fn ready_line(ready: &Ready) -> String {
    format!(
        "{READY} {} {} {}\n",
        ready.grpc_url, ready.metrics_url, ready.db_pool_size
    )
}

/// Reads the line [`ready_line`] writes.
fn parse_ready_line(line: &str) -> Option<Ready> {
    let mut words = line.split_whitespace();
    if words.next()? != READY {
        return None;
    }
    let ready = Ready {
        grpc_url: words.next()?.to_owned(),
        metrics_url: words.next()?.to_owned(),
        db_pool_size: words.next()?.parse().ok()?,
    };
    words.next().is_none().then_some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_reads_back() {
        let ready = Ready {
            grpc_url: "http://127.0.0.1:4001".to_owned(),
            metrics_url: "http://127.0.0.1:4002/metrics".to_owned(),
            db_pool_size: 16,
        };
        let line = ready_line(&ready);
        assert!(line.ends_with('\n'));
        assert_eq!(parse_ready_line(&line), Some(ready));
    }

    #[test]
    fn other_output_is_not_a_ready_line() {
        assert_eq!(parse_ready_line(""), None);
        assert_eq!(parse_ready_line("thread 'main' panicked at ..."), None);
        assert_eq!(
            parse_ready_line("rondo-bench-server-ready http://a http://b/metrics many"),
            None
        );
        assert_eq!(
            parse_ready_line("rondo-bench-server-ready http://a http://b/metrics 16 extra"),
            None
        );
    }
}
