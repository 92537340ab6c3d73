//! Server configuration: clap flags with `RONDO_*` environment variables, parsed into typed
//! values here at the edge and passed down. Nothing else reads the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// Settings of `rondo serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// PostgreSQL connection URL. Unset: `make run` provisions a private cluster and sets it.
    #[arg(long, env = "RONDO_DATABASE_URL")]
    pub database_url: String,
    /// Address of the gRPC API.
    #[arg(long, env = "RONDO_LISTEN", default_value = "127.0.0.1:7233")]
    pub listen: SocketAddr,
    /// Address of the HTTP port serving /metrics, /livez and /readyz.
    #[arg(long, env = "RONDO_HTTP_LISTEN", default_value = "127.0.0.1:9233")]
    pub http_listen: SocketAddr,
    /// Lease of a job whose node sets no `timeout` (so no lease is endless).
    #[arg(long, env = "RONDO_DEFAULT_LEASE", default_value = "5m", value_parser = parse_duration)]
    pub default_lease: Duration,
    /// Largest accepted JSON payload (input, vars, output), in bytes.
    #[arg(long, env = "RONDO_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: usize,
    /// Longest a PollJobs or AwaitWorkflow call may wait before answering empty.
    #[arg(long, env = "RONDO_MAX_POLL_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub max_poll_wait: Duration,
    /// How often expired leases, deadlines, delayed starts and schedules are checked.
    #[arg(long, env = "RONDO_SWEEP_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Safety net for lost notifications: how often waiting pollers re-check for ready jobs.
    #[arg(long, env = "RONDO_RECHECK_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub recheck_interval: Duration,
    /// How often the hot tables' planner statistics are checked, and refreshed when far
    /// behind their size (see `store::statistics`).
    #[arg(long, env = "RONDO_STATISTICS_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub statistics_interval: Duration,
    /// Size of the PostgreSQL connection pool.
    #[arg(long, env = "RONDO_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
}

impl ServeConfig {
    /// Defaults for everything but the database, for tests and embedding.
    pub fn new(database_url: impl Into<String>) -> Self {
        ServeConfig {
            database_url: database_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_lease: Duration::from_secs(300),
            max_payload_bytes: 1024 * 1024,
            max_poll_wait: Duration::from_secs(30),
            sweep_interval: Duration::from_millis(200),
            recheck_interval: Duration::from_secs(1),
            statistics_interval: Duration::from_secs(2),
            db_pool_size: 16,
        }
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `1h30m`, `1d` with the graph format's rules.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    rondo_engine::duration::parse(s).map_err(|e| e.to_string())
}
