//! Private PostgreSQL clusters, for `make run` and for tests: find the installed server
//! programs, create a cluster in a directory, start it on a loopback port and wait until it
//! accepts connections.
//!
//! Rule: [`PgCluster`] does blocking IO (it starts processes and waits for them); the async
//! functions for `rondo dev-db` run it on tokio's blocking threads. PostgreSQL refuses
//! to run as root, so as root every PostgreSQL program runs as the `postgres` user through
//! `runuser` and the cluster directory belongs to that user. Durability settings (`fsync`,
//! `synchronous_commit`) are never lowered, not even for tests.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The programs a cluster needs, looked up together so that their versions match.
const BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where Debian and Ubuntu install each major version: `<root>/<version>/bin`.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The user that owns cluster files and runs PostgreSQL when we are root.
const POSTGRES_USER: &str = "postgres";

/// Longest a cluster may take to start before it counts as failed (a crash recovery can be slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many free ports a throwaway cluster tries: another process may take a port between our
/// probe and the postmaster binding it.
const PORT_ATTEMPTS: u32 = 5;

/// Server settings of throwaway clusters: tests run many servers and pools at once. Shared
/// buffers stay at PostgreSQL's default, since `make bench` measures on this cluster too
/// (pgbench included), with a history of a million jobs.
const TEST_SETTINGS: &[(&str, &str)] = &[("max_connections", "200"), ("shared_buffers", "128MB")];

/// Numbers throwaway directories within this process.
static NEXT_THROWAWAY: AtomicU32 = AtomicU32::new(0);

/// Errors of creating, starting or stopping a private cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A PostgreSQL program is not installed where we look for it.
    #[error(
        "`{binary}` not found on PATH or under {VERSIONED_ROOT}/*/bin: install PostgreSQL \
         (apt-get install postgresql) or set RONDO_DATABASE_URL"
    )]
    MissingBinary {
        /// The program that was looked for.
        binary: &'static str,
    },
    /// We are root, and `runuser` is missing to run PostgreSQL as `postgres`.
    #[error(
        "`runuser` not found: as root, PostgreSQL runs as the `postgres` user through it; \
         install util-linux, or run as another user"
    )]
    MissingRunuser,
    /// A file operation failed, or a program could not be launched.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "creating".
        action: &'static str,
        /// The file, directory or program concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A PostgreSQL program exited with an error.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The failed step, e.g. "pg_ctl start".
        command: &'static str,
        /// Its exit status and what it printed; for `pg_ctl start`, the end of the server log.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error(
        "postgresql in {} not ready on port {port} within {}s: {detail}",
        dir.display(),
        START_TIMEOUT.as_secs()
    )]
    NotReady {
        /// The cluster directory.
        dir: PathBuf,
        /// The port that was expected to accept connections.
        port: u16,
        /// The end of the server log.
        detail: String,
    },
}

/// A PostgreSQL cluster of our own: its data directory (`data/`), Unix socket and server log
/// (`postgres.log`) all live in one directory.
#[derive(Debug)]
pub struct PgCluster {
    /// Holds everything of the cluster, so that deleting it deletes the cluster.
    dir: PathBuf,
    /// Loopback port the server listens on.
    port: u16,
    /// Directory of the installation's `initdb`, `pg_ctl` and `postgres`.
    bin_dir: PathBuf,
    /// `runuser` when we are root: PostgreSQL programs then run as `postgres` through it.
    runuser: Option<PathBuf>,
    /// Throwaway clusters are stopped and deleted on drop; `make run`'s cluster is kept.
    throwaway: bool,
}

impl PgCluster {
    /// Creates the cluster in `dir` unless one is there, starts it on `127.0.0.1:port` unless it
    /// is running, and waits until it accepts connections. A cluster already running keeps the
    /// port it was started with; [`PgCluster::url`] tells which.
    pub fn ensure(dir: &Path, port: u16) -> Result<PgCluster, ClusterError> {
        let dir = std::path::absolute(dir).map_err(|source| ClusterError::Io {
            action: "resolving",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut cluster = PgCluster::at(dir, port)?;
        cluster.prepare_dir()?;
        if !cluster.is_initialized() {
            cluster.initdb(&[])?;
        }
        match cluster.running_port() {
            Some(running) => cluster.port = running,
            None => cluster.start(&[])?,
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Creates and starts a cluster for tests in a new temporary directory on a free port.
    ///
    /// It is stopped and deleted on drop, and in any case soon after this process exits: a
    /// detached reaper watches the process, because a cluster kept in a static is never dropped.
    pub fn throwaway() -> Result<PgCluster, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let mut cluster = PgCluster {
            dir: create_throwaway_dir()?,
            port: 0,
            bin_dir,
            runuser: runuser_if_root()?,
            throwaway: true,
        };
        cluster.spawn_reaper()?;
        cluster.prepare_dir()?;
        // Skipping initdb's final sync is safe: a crash loses the cluster with its tests anyway.
        cluster.initdb(&["--no-sync"])?;
        let mut attempt = 1;
        loop {
            cluster.port = free_port()?;
            match cluster.start(TEST_SETTINGS) {
                Ok(()) => break,
                Err(_)
                    if attempt < PORT_ATTEMPTS
                        && cluster.log_tail().contains("Address already in use") =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// The connection URL of the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!(
            "postgres://{POSTGRES_USER}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: sessions are disconnected, data is flushed). Does nothing
    /// when it is not running.
    pub fn stop(&self) -> Result<(), ClusterError> {
        if self.running_port().is_none() {
            return Ok(());
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60"]);
        self.run("pg_ctl stop", &mut stop)
    }

    /// A handle on the kept cluster in `dir` (absolute), without creating or starting anything.
    fn at(dir: PathBuf, port: u16) -> Result<PgCluster, ClusterError> {
        Ok(PgCluster {
            dir,
            port,
            bin_dir: find_bin_dir()?,
            runuser: runuser_if_root()?,
            throwaway: false,
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Creates the directory and, as root, hands it to `postgres`, which writes the socket and
    /// the log there.
    fn prepare_dir(&self) -> Result<(), ClusterError> {
        fs::create_dir_all(&self.dir).map_err(|source| ClusterError::Io {
            action: "creating",
            path: self.dir.clone(),
            source,
        })?;
        if self.runuser.is_some() {
            let mut chown = Command::new("chown");
            chown.arg(POSTGRES_USER).arg(&self.dir);
            self.run("chown", &mut chown)?;
        }
        Ok(())
    }

    fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// Runs `initdb` with trust authentication for local connections only (the server listens on
    /// loopback alone). `extra` adds options.
    fn initdb(&self, extra: &[&str]) -> Result<(), ClusterError> {
        let data = self.data_dir();
        // A data directory without PG_VERSION is what an interrupted initdb leaves behind, and
        // initdb refuses a non-empty directory.
        if data.exists() {
            fs::remove_dir_all(&data).map_err(|source| ClusterError::Io {
                action: "removing the incomplete",
                path: data.clone(),
                source,
            })?;
        }
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                POSTGRES_USER,
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(extra);
        self.run("initdb", &mut initdb).map_err(|error| match error {
            ClusterError::Command { command, detail } if self.runuser.is_some() => {
                ClusterError::Command {
                    command,
                    detail: format!(
                        "{detail}\n(as root, PostgreSQL runs as `{POSTGRES_USER}`, which must be \
                         able to enter every directory above {})",
                        self.dir.display()
                    ),
                }
            }
            other => other,
        })
    }

    /// Starts the server on `127.0.0.1:self.port` with its socket in the cluster directory, and
    /// waits (`pg_ctl -w`) until it is ready or has failed.
    fn start(&self, settings: &[(&str, &str)]) -> Result<(), ClusterError> {
        // pg_ctl hands these options to a shell, hence the quoting.
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={}",
            self.port,
            shell_quote(&self.dir)
        );
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let mut start = self.command("pg_ctl");
        start
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args([
                "-w",
                "-t",
                &START_TIMEOUT.as_secs().to_string(),
                "-o",
                &options,
            ]);
        // pg_ctl only says "could not start server": the reason is in the log.
        self.run("pg_ctl start", &mut start)
            .map_err(|error| match error {
                ClusterError::Command { command, detail } => ClusterError::Command {
                    command,
                    detail: format!(
                        "{detail}\n{} ends with:\n{}",
                        self.log_file().display(),
                        self.log_tail()
                    ),
                },
                other => other,
            })
    }

    /// The port of the running server, or `None` when no server runs on this cluster.
    fn running_port(&self) -> Option<u16> {
        // `pg_ctl` needs an existing working directory, and without a pid file nothing runs.
        if !self.data_dir().join("postmaster.pid").is_file() {
            return None;
        }
        let mut status = self.command("pg_ctl");
        status.arg("status").arg("-D").arg(self.data_dir());
        let running = status.stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !running.is_ok_and(|s| s.success()) {
            return None;
        }
        self.pid_file().map(|pid| pid.port)
    }

    /// Waits until the postmaster reports "ready" and its port accepts TCP connections.
    fn wait_ready(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            let ready = self.pid_file().is_some_and(|pid| pid.ready);
            if ready && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    dir: self.dir.clone(),
                    port: self.port,
                    detail: self.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The state the postmaster publishes in `postmaster.pid` (see PostgreSQL's `pidfile.h`).
    fn pid_file(&self) -> Option<PidFile> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        Some(PidFile {
            port: lines.get(3)?.trim().parse().ok()?,
            ready: lines.get(7).is_some_and(|status| status.trim() == "ready"),
        })
    }

    /// Starts a detached shell that waits for this process to exit, then stops the server and
    /// deletes the directory. It has its own process group, so a Ctrl-C meant for the tests
    /// does not kill it before it has cleaned up.
    fn spawn_reaper(&self) -> Result<(), ClusterError> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let run_as = match &self.runuser {
            Some(runuser) => format!("{} -u {POSTGRES_USER} -- ", shell_quote(runuser)),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {run_as}{pg_ctl} stop -D {data} -m immediate; rm -rf {dir}",
            pid = process::id(),
            pg_ctl = shell_quote(&pg_ctl),
            data = shell_quote(&self.data_dir()),
            dir = shell_quote(&self.dir),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|source| ClusterError::Io {
                action: "starting",
                path: "sh".into(),
                source,
            })
    }

    /// A command for one of the installation's programs, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        let mut command = match &self.runuser {
            Some(runuser) => {
                let mut command = Command::new(runuser);
                command.args(["-u", POSTGRES_USER, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        // The caller's working directory may be closed to `postgres`.
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }

    /// Runs `command` to completion; on failure the error carries what it printed.
    fn run(&self, name: &'static str, command: &mut Command) -> Result<(), ClusterError> {
        let output = command.output().map_err(|source| ClusterError::Io {
            action: "running",
            path: command.get_program().into(),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        let mut parts = vec![output.status.to_string()];
        for printed in [&output.stderr, &output.stdout] {
            let printed = String::from_utf8_lossy(printed).trim().to_owned();
            if !printed.is_empty() {
                parts.push(printed);
            }
        }
        Err(ClusterError::Command {
            command: name,
            detail: parts.join("\n"),
        })
    }

    /// The last lines of the server log, where PostgreSQL says why it did not start.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.throwaway {
            return;
        }
        // Best effort: the reaper retries both after the process exits.
        if self.running_port().is_some() {
            let mut stop = self.command("pg_ctl");
            stop.arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w"]);
            let _ = stop.output();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What `ensure` needs from `postmaster.pid`.
struct PidFile {
    /// Line 4: the port the server listens on.
    port: u16,
    /// Line 8: the status is "ready" (not "starting" or "stopping").
    ready: bool,
}

/// Ensures `make run`'s cluster in `dir` (created and started as needed) and returns its URL.
pub async fn ensure_dev_cluster(dir: &Path, port: u16) -> Result<String, ClusterError> {
    let dir = dir.to_path_buf();
    blocking(move || PgCluster::ensure(&dir, port).map(|cluster| cluster.url())).await
}

/// Stops `make run`'s cluster in `dir` if it is running, keeping its data for next time.
pub async fn stop_dev_cluster(dir: &Path) -> Result<(), ClusterError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        let dir = std::path::absolute(&dir).map_err(|source| ClusterError::Io {
            action: "resolving",
            path: dir.clone(),
            source,
        })?;
        PgCluster::at(dir, 0)?.stop()
    })
    .await
}

/// Runs blocking cluster work on tokio's blocking threads, passing on a panic.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Finds the directory with all of [`BINARIES`]: on PATH first, then the highest version under
/// [`VERSIONED_ROOT`] (Debian keeps `initdb` and `pg_ctl` off PATH).
fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let mut candidates = path_dirs();
    candidates.extend(versioned_bin_dirs(Path::new(VERSIONED_ROOT)));
    pick_bin_dir(&candidates)
}

/// The first candidate holding all of [`BINARIES`]. Failing that, the error names a program
/// missing from the most complete candidate, which is the one the user has to install.
fn pick_bin_dir(candidates: &[PathBuf]) -> Result<PathBuf, ClusterError> {
    let mut best: Option<(usize, &'static str)> = None;
    for dir in candidates {
        let missing: Vec<&'static str> = BINARIES
            .into_iter()
            .filter(|binary| !is_executable(&dir.join(binary)))
            .collect();
        let Some(&first_missing) = missing.first() else {
            return Ok(dir.clone());
        };
        let found = BINARIES.len() - missing.len();
        if best.is_none_or(|(best_found, _)| found > best_found) {
            best = Some((found, first_missing));
        }
    }
    Err(ClusterError::MissingBinary {
        binary: best.map_or(BINARIES[0], |(_, binary)| binary),
    })
}

/// `<root>/<version>/bin` for each version directory under `root`, highest version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The directories of PATH. Reading it here is the lookup a shell does for a command, not
/// configuration.
fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// `runuser` when this process is root, which PostgreSQL refuses to run as; `None` otherwise.
/// The sbin directories are searched too, as a root PATH may lack them.
fn runuser_if_root() -> Result<Option<PathBuf>, ClusterError> {
    if !is_root() {
        return Ok(None);
    }
    let mut dirs = path_dirs();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join("runuser"))
        .find(|path| is_executable(path))
        .map(Some)
        .ok_or(ClusterError::MissingRunuser)
}

/// True when this process runs as root: Linux gives `/proc/self` the process's effective uid.
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A new, empty directory under the system's temporary directory.
fn create_throwaway_dir() -> Result<PathBuf, ClusterError> {
    loop {
        let n = NEXT_THROWAWAY.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rondo-pg-{}-{n}", process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Left by an earlier process with the same pid: take the next number.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(ClusterError::Io {
                    action: "creating",
                    path: dir,
                    source,
                });
            }
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| ClusterError::Io {
            action: "finding a free port on",
            path: "127.0.0.1".into(),
            source,
        })
}

/// `path` as one single-quoted shell word.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use super::*;

    fn fake_install(dir: &Path, programs: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for program in programs {
            let path = dir.join(program);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn bin_dir_is_the_first_candidate_with_all_programs() {
        let root = tempfile::tempdir().unwrap();
        let partial = root.path().join("partial");
        let full = root.path().join("full");
        let later = root.path().join("later");
        fake_install(&partial, &["initdb", "pg_ctl"]);
        fake_install(&full, &BINARIES);
        fake_install(&later, &BINARIES);
        let found =
            pick_bin_dir(&[root.path().join("absent"), partial, full.clone(), later]).unwrap();
        assert_eq!(found, full);
    }

    #[test]
    fn missing_program_is_named_from_the_most_complete_candidate() {
        let root = tempfile::tempdir().unwrap();
        let only_initdb = root.path().join("a");
        let no_postgres = root.path().join("b");
        fake_install(&only_initdb, &["initdb"]);
        fake_install(&no_postgres, &["initdb", "pg_ctl"]);
        let error = pick_bin_dir(&[only_initdb, no_postgres]).unwrap_err();
        assert!(
            matches!(error, ClusterError::MissingBinary { binary: "postgres" }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("RONDO_DATABASE_URL"), "{message}");
    }

    #[test]
    fn nothing_installed_names_initdb() {
        let error = pick_bin_dir(&[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(
            matches!(error, ClusterError::MissingBinary { binary: "initdb" }),
            "{error:?}"
        );
    }

    #[test]
    fn program_without_execute_permission_does_not_count() {
        let root = tempfile::tempdir().unwrap();
        fake_install(root.path(), &BINARIES);
        fs::set_permissions(root.path().join("pg_ctl"), Permissions::from_mode(0o644)).unwrap();
        let error = pick_bin_dir(&[root.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(error, ClusterError::MissingBinary { binary: "pg_ctl" }),
            "{error:?}"
        );
    }

    #[test]
    fn versioned_dirs_come_highest_version_first() {
        let root = tempfile::tempdir().unwrap();
        for name in ["9.6", "15", "16", "10", "common", "16.1x"] {
            fs::create_dir(root.path().join(name)).unwrap();
        }
        let dirs = versioned_bin_dirs(root.path());
        let expected: Vec<PathBuf> = ["16", "15", "10", "9.6"]
            .iter()
            .map(|v| root.path().join(v).join("bin"))
            .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        let quoted = shell_quote(Path::new("/tmp/it's here"));
        let echoed = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {quoted}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&echoed.stdout), "/tmp/it's here");
    }

    #[tokio::test]
    async fn throwaway_cluster_accepts_queries_and_is_deleted_on_drop() {
        let cluster = tokio::task::spawn_blocking(PgCluster::throwaway)
            .await
            .unwrap()
            .unwrap();
        let dir = cluster.dir.clone();
        let (client, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let row = client
            .query_one("SELECT 1::int4 + 1, current_setting('fsync')", &[])
            .await
            .unwrap();
        assert_eq!(row.try_get::<_, i32>(0).unwrap(), 2);
        assert_eq!(row.try_get::<_, String>(1).unwrap(), "on");
        drop(client);
        connection.await.unwrap().unwrap();
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .unwrap();
        assert!(!dir.exists(), "{} still exists", dir.display());
    }

    /// Stops a kept cluster even when an assertion fails, so no server outlives the test.
    struct StopOnDrop<'a>(&'a Path);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            if let Ok(cluster) = PgCluster::at(self.0.to_path_buf(), 0) {
                let _ = cluster.stop();
            }
        }
    }

    #[test]
    fn ensure_reuses_a_running_cluster_and_stop_keeps_the_data() {
        let root = tempfile::tempdir().unwrap();
        // `postgres` (when we are root) must be able to reach the cluster directory.
        fs::set_permissions(root.path(), Permissions::from_mode(0o755)).unwrap();
        let dir = root.path().join("pg");
        let _stop = StopOnDrop(&dir);
        let port = free_port().unwrap();
        let first = PgCluster::ensure(&dir, port).unwrap();
        assert_eq!(
            first.url(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres")
        );
        // Running already: the second call keeps the running server and its port.
        let second = PgCluster::ensure(&dir, port + 1).unwrap();
        assert_eq!(second.port(), port);
        second.stop().unwrap();
        assert_eq!(second.running_port(), None);
        assert!(
            dir.join("data/PG_VERSION").is_file(),
            "data is kept after stop"
        );
        // Stopped: the next ensure starts it again on the requested port, without initdb.
        let third = PgCluster::ensure(&dir, port).unwrap();
        assert_eq!(third.running_port(), Some(port));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(stop_dev_cluster(&dir)).unwrap();
        assert_eq!(third.running_port(), None);
    }
}
