//! Graph use cases: put (a new version only when the canonical hash changes), get, list,
//! validate.

use rondo_engine::{GraphDef, Problem};

use super::Service;
use super::error::ServiceError;
use crate::store::graphs;
use crate::store::graphs::GraphRecord;
use crate::store::listen::Notice;

/// A stored version with its definition.
#[derive(Debug, Clone)]
pub struct StoredGraph {
    /// The row.
    pub record: GraphRecord,
    /// The definition.
    pub def: GraphDef,
}

/// Result of a put.
#[derive(Debug, Clone)]
pub struct PutResult {
    /// The stored version.
    pub graph: StoredGraph,
    /// True when a new version was created.
    pub created: bool,
    /// Warnings of validation.
    pub warnings: Vec<Problem>,
}

impl Service {
    /// Validates and stores a definition.
    pub async fn put_graph(&self, def: GraphDef) -> Result<PutResult, ServiceError> {
        let validated = def
            .validate()
            .map_err(|problems| ServiceError::InvalidGraph { problems })?;
        let definition = serde_json::to_value(&def)
            .map_err(|e| ServiceError::Internal(format!("encoding graph: {e}")))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (record, created) =
            graphs::put(&tx, &def.name, validated.graph.hash(), &definition).await?;
        tx.commit().await?;
        if created {
            let stored = Notice::GraphStored(def.name.clone());
            self.announce(vec![stored], Vec::new(), &[]);
        }
        let def = decode(&record)?;
        Ok(PutResult {
            graph: StoredGraph { record, def },
            created,
            warnings: validated.warnings,
        })
    }

    /// Reads a version (0: the latest).
    pub async fn get_graph(&self, name: &str, version: u32) -> Result<StoredGraph, ServiceError> {
        let client = self.pool().get().await?;
        let record = graphs::get(&client, name, super::to_i32(version))
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(if version == 0 {
                    format!("graph `{name}` not found; `rondo graph list` shows the stored graphs")
                } else {
                    format!("graph `{name}` has no version {version}")
                })
            })?;
        let def = decode(&record)?;
        Ok(StoredGraph { record, def })
    }

    /// Lists the latest version of each graph after `page_token`, by name.
    pub async fn list_graphs(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<GraphRecord>, Option<String>), ServiceError> {
        let limit = super::workflows::page_size(page_size);
        let client = self.pool().get().await?;
        let mut rows = graphs::list_latest(&client, page_token, limit + 1).await?;
        let next = if rows.len() as i64 > limit {
            rows.pop();
            rows.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok((rows, next))
    }
}

fn decode(record: &GraphRecord) -> Result<GraphDef, ServiceError> {
    serde_json::from_value(record.definition.clone()).map_err(|e| {
        ServiceError::Internal(format!(
            "stored graph `{}` v{}: {e}",
            record.name, record.version
        ))
    })
}
