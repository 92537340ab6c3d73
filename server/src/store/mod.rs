//! All SQL lives here: connection pool, migrations, rows to domain records, LISTEN/NOTIFY.
//! Rule: queries are named constants with `$n` parameters and run through `prepare_cached`;
//! functions take `&impl GenericClient` so they work inside or outside a transaction. No
//! domain decisions are made here.

pub mod batch;
pub mod events;
pub mod graphs;
pub mod jobs;
pub mod listen;
pub mod rows;
pub mod schedules;
pub mod statistics;
pub mod workflows;

use std::time::Duration;

pub use deadpool_postgres::{GenericClient, Pool, Transaction};
use deadpool_postgres::{ManagerConfig, QueueMode, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../schema");
}

/// Key of the advisory lock held while migrating, so servers starting together take turns.
const MIGRATION_LOCK_KEY: i64 = 0x726f_6e64_6f4d_6967; // "rondoMig"

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL could not be parsed.
    #[error("invalid database url: {0}")]
    BadUrl(String),
    /// PostgreSQL reported an error or the connection failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A row held a value the code cannot interpret (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Planner settings of the pool's sessions, before any `options` the URL gives (which win).
///
/// Every hot statement is a point lookup or a short index scan, run thousands of times a
/// second with new parameters. With the default `plan_cache_mode = auto`, PostgreSQL plans
/// such a statement again at every execution whenever its generic plan is estimated dearer
/// than the custom ones, which is always the case for array parameters of one element: on
/// an idle server, planning was most of PostgreSQL's time. A generic plan is made once per
/// connection and statement, and made again when the table's statistics change (see
/// `statistics`). `random_page_cost = 1.1` prices index probes for data in memory or on SSD,
/// not on a spinning disk, so that a generic plan made while a table holds a few thousand
/// rows still looks rows up by index instead of scanning the table.
/// `list_workflows`, whose optional filters need the parameters to pick an index, asks for a
/// custom plan ([`custom_plans`]).
const SESSION_OPTIONS: &str = "-c plan_cache_mode=force_generic_plan -c random_page_cost=1.1";

/// Creates the connection pool. Connections are handed out most recently used first: on a
/// quiet server the same one or two backends serve every request, their caches warm, where
/// first-in-first-out rotates through the whole pool and wakes a backend that has been idle
/// longest (latency workload: about 0.3-0.7 ms less per round, docs/performance.md).
pub fn pool(database_url: &str, size: usize) -> Result<Pool, StoreError> {
    let mut pg: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::BadUrl(e.to_string()))?;
    let options = match pg.get_options() {
        Some(given) => format!("{SESSION_OPTIONS} {given}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    pg.options(&options);
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| StoreError::BadUrl(e.to_string()))
}

/// Makes the rest of transaction `tx` plan each statement for its parameters (see
/// [`SESSION_OPTIONS`]).
pub async fn custom_plans(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await?;
    Ok(())
}

/// Opens one dedicated connection (not pooled), driving it on a background task.
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection closed");
        }
    });
    Ok(client)
}

/// Applies pending migrations under an advisory lock, so several servers starting together
/// are safe. Returns how many migrations were applied.
pub async fn migrate(database_url: &str) -> Result<usize, StoreError> {
    let mut client = connect(database_url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    Ok(result?.applied_migrations().len())
}

/// Names and contents of the embedded migrations, so test support can key a migrated
/// template database on them.
pub fn migration_fingerprint() -> String {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| format!("{}:{}", m.name(), m.checksum()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A transaction whose BEGIN and COMMIT travel in the same round trip as the statements next
/// to them: tokio-postgres sends requests in the order their futures are first polled, and
/// PostgreSQL runs them in that order. Dropped before it commits, it takes its connection out
/// of the pool, which closes it, so PostgreSQL rolls the transaction back and nothing
/// half-done goes back to the pool.
pub struct PipelinedTx {
    client: Option<deadpool_postgres::Object>,
    committed: std::sync::atomic::AtomicBool,
}

impl PipelinedTx {
    /// A transaction on `client`; BEGIN goes out with [`PipelinedTx::begin_with`].
    pub fn new(client: deadpool_postgres::Object) -> Self {
        PipelinedTx {
            client: Some(client),
            committed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The connection, for statements inside the transaction.
    pub fn client(&self) -> &deadpool_postgres::Object {
        self.client
            .as_ref()
            .expect("a transaction holds its connection until dropped")
    }

    /// Sends BEGIN, then `first` (a statement on [`PipelinedTx::client`]), in one round trip.
    pub async fn begin_with<T>(
        &self,
        first: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let (begin, first) = tokio::join!(self.client().batch_execute("BEGIN"), first);
        begin?;
        first
    }

    /// Sends `last`, then COMMIT, in one round trip, and commits when `last` succeeded (a
    /// COMMIT after a failed statement rolls back). Every statement `last` runs must be
    /// prepared already, or its execution would follow the COMMIT.
    pub async fn commit_with<T>(
        &self,
        last: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let (last, commit) = tokio::join!(last, self.client().batch_execute("COMMIT"));
        let value = last?;
        commit?;
        self.committed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(value)
    }
}

impl Drop for PipelinedTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !self.committed.load(std::sync::atomic::Ordering::Acquire)
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
