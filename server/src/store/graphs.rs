//! Graph versions: immutable, one row per (name, version), unique per canonical hash.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::StoreError;

/// One stored graph version.
#[derive(Debug, Clone)]
pub struct GraphRecord {
    /// Name.
    pub name: String,
    /// Version, from 1.
    pub version: i32,
    /// Canonical hash.
    pub hash: String,
    /// The definition (engine serde form).
    pub definition: Value,
    /// When stored.
    pub created_at: DateTime<Utc>,
}

fn from_row(r: &tokio_postgres::Row) -> Result<GraphRecord, StoreError> {
    Ok(GraphRecord {
        name: r.try_get(0)?,
        version: r.try_get(1)?,
        hash: r.try_get(2)?,
        definition: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

const LOCK_NAME: &str = "SELECT pg_advisory_xact_lock(hashtext('rondo.graph:' || $1))";
const BY_HASH: &str =
    "SELECT name, version, hash, definition, created_at FROM graphs WHERE name = $1 AND hash = $2";
const INSERT_NEXT: &str = "INSERT INTO graphs (name, version, hash, definition) \
     SELECT $1, coalesce(max(version), 0) + 1, $2, $3 FROM graphs WHERE name = $1 \
     RETURNING name, version, hash, definition, created_at";

/// Stores a definition as the next version of its name unless a version with the same hash
/// exists. Returns the version and whether it was created. Must run in a transaction: the
/// per-name advisory lock it takes serializes concurrent puts of one name.
pub async fn put(
    client: &impl GenericClient,
    name: &str,
    hash: &str,
    definition: &Value,
) -> Result<(GraphRecord, bool), StoreError> {
    let lock = client.prepare_cached(LOCK_NAME).await?;
    client.execute(&lock, &[&name]).await?;
    let by_hash = client.prepare_cached(BY_HASH).await?;
    if let Some(row) = client.query_opt(&by_hash, &[&name, &hash]).await? {
        return Ok((from_row(&row)?, false));
    }
    let insert = client.prepare_cached(INSERT_NEXT).await?;
    let row = client
        .query_one(&insert, &[&name, &hash, definition])
        .await?;
    Ok((from_row(&row)?, true))
}

const LATEST_VERSION: &str = "SELECT max(version) FROM graphs WHERE name = $1";

/// The latest version of a graph, if it has any.
pub async fn latest_version(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<i32>, StoreError> {
    let stmt = client.prepare_cached(LATEST_VERSION).await?;
    Ok(client.query_one(&stmt, &[&name]).await?.try_get(0)?)
}

const GET: &str = "SELECT name, version, hash, definition, created_at FROM graphs \
     WHERE name = $1 AND ($2 = 0 OR version = $2) ORDER BY version DESC LIMIT 1";

/// Reads one version; `version` 0 means the latest.
pub async fn get(
    client: &impl GenericClient,
    name: &str,
    version: i32,
) -> Result<Option<GraphRecord>, StoreError> {
    let stmt = client.prepare_cached(GET).await?;
    client
        .query_opt(&stmt, &[&name, &version])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

const LIST_LATEST: &str = "SELECT DISTINCT ON (name) name, version, hash, definition, created_at \
     FROM graphs WHERE name > $1 ORDER BY name, version DESC LIMIT $2";

/// The latest version of each graph name after `after_name`, by name.
pub async fn list_latest(
    client: &impl GenericClient,
    after_name: &str,
    limit: i64,
) -> Result<Vec<GraphRecord>, StoreError> {
    let stmt = client.prepare_cached(LIST_LATEST).await?;
    let rows = client.query(&stmt, &[&after_name, &limit]).await?;
    rows.iter().map(from_row).collect()
}
