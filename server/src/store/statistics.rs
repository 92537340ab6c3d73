//! Keeps the planner's statistics of the hot tables from falling far behind their size.
//!
//! Every statement runs as a named prepared statement, and after five executions PostgreSQL
//! keeps a generic plan for it on that connection until the table's statistics change. A plan
//! made while a table was small (a hash join over a sequential scan) stays in use as the table
//! grows to thousands of rows: in a new database, whose first autovacuum pass is up to a
//! minute away (`autovacuum_naptime`), every step then scans the whole job and workflow tables.
//! So every few seconds the server analyzes a hot table whose changes since its last analyze
//! outnumber the rows its statistics describe. Analyzing invalidates the cached plans, and the
//! next ones are made for the table's real size. Autovacuum analyzes once changes pass a tenth
//! of the rows, so on a database it keeps up with this never fires.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{GenericClient, Pool, StoreError};

/// The tables every step writes.
const HOT_TABLES: [&str; 3] = ["workflows", "jobs", "events"];

/// Changes since the last analyze below which a table is left alone, however small.
const MIN_CHANGES: i64 = 1000;

/// Longest wait for a table's lock: autovacuum may hold it, and it must not be cancelled.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '100ms'";

/// Hot tables changed more since their last analyze than the rows their statistics describe
/// (`reltuples` is -1 before the first analyze).
const BEHIND: &str = "SELECT s.relname::text FROM pg_stat_user_tables s \
     JOIN pg_class c ON c.oid = s.relid \
     WHERE s.schemaname = current_schema() AND s.relname = ANY($1::text[]) \
       AND s.n_mod_since_analyze >= greatest($2::bigint, c.reltuples::bigint) \
";

/// The hot tables whose statistics are behind.
pub async fn behind(client: &impl GenericClient) -> Result<Vec<&'static str>, StoreError> {
    let stmt = client.prepare_cached(BEHIND).await?;
    let rows = client
        .query(&stmt, &[&HOT_TABLES.as_slice(), &MIN_CHANGES])
        .await?;
    let names = rows
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HOT_TABLES
        .into_iter()
        .filter(|t| names.iter().any(|n| n == t))
        .collect())
}

/// Analyzes one hot table; gives up when its lock is not had within [`LOCK_TIMEOUT`].
pub async fn analyze(pool: &Pool, table: &'static str) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("{LOCK_TIMEOUT}; ANALYZE {table}"))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Checks the hot tables every `interval` and analyzes those behind, until shutdown.
pub async fn run(pool: Pool, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let tables = match pool.get().await {
            Ok(client) => behind(&client).await,
            Err(error) => Err(error.into()),
        };
        let tables = match tables {
            Ok(tables) => tables,
            Err(error) => {
                tracing::warn!(%error, "reading table statistics failed");
                continue;
            }
        };
        for table in tables {
            match analyze(&pool, table).await {
                Ok(()) => tracing::debug!(table, "analyzed a table whose statistics were behind"),
                Err(error) => tracing::debug!(%error, table, "analyze skipped"),
            }
        }
    }
}
