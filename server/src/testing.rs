//! Test support (crate feature `testing`): a fresh, migrated PostgreSQL database per test, and
//! the real server started in-process on port 0.
//!
//! Tests use the PostgreSQL server in `RONDO_DATABASE_URL` (or `DATABASE_URL`) when one is set,
//! and otherwise a throwaway cluster that the first test of the process starts (see
//! [`crate::pgcluster`]). Every database is cloned from a template migrated once per set of
//! migrations, so a test pays one `CREATE DATABASE`, not a migration run. Reading the
//! environment here is allowed: this is test support, not the server.

use std::net::SocketAddr;
use std::panic;
use std::process;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::pgcluster::PgCluster;
use crate::store::{self, StoreError};
use crate::{Listeners, ServeConfig, ServeError};

/// Key of the advisory lock held while a template is made, so that test processes sharing a
/// server (nextest runs each test in its own process) make it once.
const TEMPLATE_LOCK_KEY: i64 = 0x726f_6e64_6f54_706c; // "rondoTpl"

/// Longest a test waits for a template in use to be free, or for a server to serve.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL server of this process's tests; set up by the first test that needs it.
static BASE: OnceLock<Result<BaseServer, String>> = OnceLock::new();

/// Name of the migrated template database, made (or found) once per process.
static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Numbers this process's test databases.
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

/// The PostgreSQL server tests create their databases on.
struct BaseServer {
    /// URL of a database to connect to for creating and dropping the test databases.
    admin_url: String,
    /// The throwaway cluster when no URL was given, owned for the life of the process (a static
    /// is never dropped: the cluster's reaper stops it after the process exits).
    cluster: Option<PgCluster>,
}

impl BaseServer {
    fn discover() -> Result<BaseServer, String> {
        let configured = ["RONDO_DATABASE_URL", "DATABASE_URL"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()));
        match configured {
            Some(admin_url) => Ok(BaseServer {
                admin_url,
                cluster: None,
            }),
            None => {
                let cluster = PgCluster::throwaway().map_err(|e| e.to_string())?;
                Ok(BaseServer {
                    admin_url: cluster.url(),
                    cluster: Some(cluster),
                })
            }
        }
    }
}

/// A fresh, migrated database for one test; dropped in the background when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of the database.
    pub url: String,
    /// Name of the database.
    pub name: String,
    /// Where to connect to drop the database.
    admin_url: String,
    /// True when the server outlives the tests (a URL was given): dropping then waits for the
    /// database to be gone, or databases would pile up there.
    external: bool,
}

impl TestDb {
    /// Creates a fresh, migrated database. Panics with the reason when none can be had (no
    /// PostgreSQL installed and no URL given, a failing migration, ...).
    pub async fn new() -> TestDb {
        // The first call may run initdb and start a cluster, which blocks for about a second.
        let base = tokio::task::spawn_blocking(|| BASE.get_or_init(BaseServer::discover))
            .await
            .unwrap_or_else(|e| panic::resume_unwind(e.into_panic()));
        let base = base
            .as_ref()
            .unwrap_or_else(|e| panic!("no PostgreSQL for tests: {e}"));
        let template = TEMPLATE
            .get_or_try_init(|| ensure_template(&base.admin_url))
            .await
            .unwrap_or_else(|e| panic!("preparing the migrated template database: {e}"));
        let name = create_database(&base.admin_url, template)
            .await
            .unwrap_or_else(|e| panic!("creating a test database: {e}"));
        TestDb {
            url: with_dbname(&base.admin_url, &name),
            name,
            admin_url: base.admin_url.clone(),
            external: base.cluster.is_none(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await and the test's runtime may be single-threaded: a helper thread with
        // its own runtime drops the database. In a throwaway cluster nobody waits for it (a
        // DROP DATABASE checkpoints, and the whole cluster goes when the process exits).
        // Failing to drop leaves an unused database behind and nothing else, so errors are
        // ignored.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(drop_database(&admin_url, &name));
            }
        });
        if self.external {
            let _ = dropper.join();
        }
    }
}

/// Makes the migrated template for the current migrations unless it exists, and returns its
/// name.
async fn ensure_template(admin_url: &str) -> Result<String, StoreError> {
    let name = format!(
        "rondo_template_{:016x}",
        fnv1a(store::migration_fingerprint().as_bytes())
    );
    let admin = store::connect(admin_url).await?;
    // A session lock: released when the connection closes, even if this process dies.
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await?;
    let existing = admin
        .query_opt(
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?;
    let finished = existing.map(|row| row.try_get::<_, bool>(0)).transpose()?;
    // Names in DDL cannot be parameters; ours are made of [a-z0-9_] only.
    match finished {
        Some(true) => return Ok(name),
        // Left half-made by a process that died while migrating it.
        Some(false) => {
            admin
                .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .await?
        }
        None => {}
    }
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    store::migrate(&with_dbname(admin_url, &name)).await?;
    // No connections allowed: a session on a template blocks every CREATE DATABASE from it.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        ))
        .await?;
    Ok(name)
}

/// Creates a database from `template` under a name of this process, and returns the name.
async fn create_database(admin_url: &str, template: &str) -> Result<String, StoreError> {
    let admin = store::connect(admin_url).await?;
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let name = format!(
            "rondo_test_{}_{}",
            process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        match admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
        {
            Ok(()) => return Ok(name),
            // Left by an earlier process with the same pid: take the next number.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
            // "source database is being accessed by other users": the migrating session is
            // still closing.
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let admin = store::connect(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    Ok(())
}

/// `url` with its database replaced by `dbname`; `url` is a URL or a `key=value` string.
fn with_dbname(url: &str, dbname: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // In key=value strings the last `dbname` wins.
        return format!("{url} dbname={dbname}");
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let authority = location
        .split_once('/')
        .map_or(location, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{dbname}?{query}"),
        None => format!("{scheme}://{authority}/{dbname}"),
    }
}

/// 64-bit FNV-1a: stable across Rust releases (std's hasher is not), so a template made by one
/// toolchain is found by the next.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The real server running in-process on loopback ports; stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    /// Address of the gRPC API.
    grpc_addr: SocketAddr,
    /// Address of the HTTP port (`/metrics`, `/livez`, `/readyz`).
    http_addr: SocketAddr,
    /// Database the server runs on.
    db_url: String,
    /// Cancelled to stop the server.
    shutdown: CancellationToken,
    /// The task running `serve`; `None` once `shutdown` has taken it.
    task: Option<JoinHandle<Result<(), ServeError>>>,
    /// The database `start` made for this server. Declared last so it is dropped after the
    /// server has been told to stop.
    _db: Option<TestDb>,
}

impl TestServer {
    /// Starts a server on a fresh database, with default settings.
    pub async fn start() -> TestServer {
        let db = TestDb::new().await;
        let db_url = db.url.clone();
        TestServer::launch(&db_url, Some(db), |_| {}).await
    }

    /// Starts a server on the database at `db_url` (which the caller keeps alive), after `tweak`
    /// has adjusted its configuration: a second server on the same database, shorter sweep
    /// intervals. The listen addresses default to port 0 on loopback. Returns once the server
    /// answers gRPC health checks with SERVING; panics if it fails to start.
    pub async fn start_with(db_url: &str, tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        TestServer::launch(db_url, None, tweak).await
    }

    /// Starts the server; `db` is the database made for it, if any, to drop after it.
    async fn launch(
        db_url: &str,
        db: Option<TestDb>,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        let mut config = ServeConfig::new(db_url);
        tweak(&mut config);
        let grpc = bind(config.listen).await;
        let http = bind(config.http_listen).await;
        let grpc_addr = grpc.local_addr().expect("bound listener has an address");
        let http_addr = http.local_addr().expect("bound listener has an address");
        config.listen = grpc_addr;
        config.http_listen = http_addr;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::serve(
            config,
            Listeners { grpc, http },
            shutdown.clone(),
        ));
        let mut server = TestServer {
            grpc_addr,
            http_addr,
            db_url: db_url.to_owned(),
            shutdown,
            task: Some(task),
            _db: db,
        };
        server.wait_until_serving().await;
        server
    }

    /// `http://127.0.0.1:PORT` of the gRPC API, for clients and workers.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the HTTP port.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// URL of the server's database, e.g. to start a second server on it.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// Stops the server and waits until `serve` has returned, with its result.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        let task = self
            .task
            .take()
            .expect("the task is taken only here, which consumes self");
        task.await
            .unwrap_or_else(|e| panic::resume_unwind(e.into_panic()))
    }

    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let task = self.task.take().expect("checked just above");
                match task.await {
                    Ok(Ok(())) => panic!("server stopped while starting"),
                    Ok(Err(e)) => panic!("server failed to start: {e}"),
                    Err(e) => panic::resume_unwind(e.into_panic()),
                }
            }
            if is_serving(&self.grpc_url()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server at {} not serving after {}s",
                self.grpc_url(),
                WAIT_TIMEOUT.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn bind(address: SocketAddr) -> TcpListener {
    TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("binding {address}: {e}"))
}

/// True when the gRPC health service reports the server as SERVING.
async fn is_serving(grpc_url: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(grpc_url.to_owned()) else {
        return false;
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1));
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|response| response.into_inner().status() == ServingStatus::Serving)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_dbname_replaces_only_the_database() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/t",
            ),
            (
                "postgresql://u:p%2F@h/db?sslmode=disable",
                "postgresql://u:p%2F@h/t?sslmode=disable",
            ),
            ("postgres://h:5432", "postgres://h:5432/t"),
            (
                "postgres://h?host=/run/postgresql",
                "postgres://h/t?host=/run/postgresql",
            ),
            (
                "host=localhost dbname=x",
                "host=localhost dbname=x dbname=t",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_dbname(url, "t"), expected, "{url}");
        }
    }

    #[test]
    fn with_dbname_key_value_form_connects_to_the_new_database() {
        let config: tokio_postgres::Config =
            with_dbname("host=localhost dbname=x", "t").parse().unwrap();
        assert_eq!(config.get_dbname(), Some("t"));
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// The status line of `GET path` on an HTTP/1 server at `http://ADDRESS`.
    async fn http_status_line(url: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = url.strip_prefix("http://").unwrap();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn test_server_serves_until_shut_down() {
        let server = TestServer::start().await;
        assert_eq!(
            http_status_line(&server.http_url(), "/readyz").await,
            "HTTP/1.1 200 OK"
        );
        let second = TestServer::start_with(server.db_url(), |config| {
            config.sweep_interval = Duration::from_millis(50);
        })
        .await;
        assert_ne!(second.grpc_url(), server.grpc_url());
        assert!(is_serving(&second.grpc_url()).await);
        let url = server.grpc_url();
        server.shutdown().await.unwrap();
        assert!(!is_serving(&url).await, "a shut down server stops serving");
        assert!(
            is_serving(&second.grpc_url()).await,
            "the other server is unaffected"
        );
    }

    #[tokio::test]
    async fn test_databases_are_fresh_migrated_and_dropped() {
        let first = TestDb::new().await;
        let second = TestDb::new().await;
        assert_ne!(first.name, second.name);
        let client = store::connect(&first.url).await.unwrap();
        let applied: i64 = client
            .query_one("SELECT count(*) FROM refinery_schema_history", &[])
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert!(applied > 0, "the template is migrated");
        client
            .batch_execute("CREATE TABLE only_in_first (x int)")
            .await
            .unwrap();
        let other = store::connect(&second.url).await.unwrap();
        let leaked = other
            .query_opt(
                "SELECT 1 FROM pg_class WHERE relname = 'only_in_first'",
                &[],
            )
            .await
            .unwrap();
        assert!(leaked.is_none(), "databases are independent");
        let (name, admin_url) = (first.name.clone(), first.admin_url.clone());
        drop(client);
        drop(first);
        let admin = store::connect(&admin_url).await.unwrap();
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap()
            .is_some()
        {
            assert!(
                Instant::now() < deadline,
                "{name} is still there long after its TestDb was dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
