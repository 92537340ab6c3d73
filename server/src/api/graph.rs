//! GraphService.

use rondo_gen::convert::{graph_from_proto, graph_to_proto, problem_to_proto};
use rondo_gen::v1::{self, graph_service_server::GraphService};
use tonic::{Request, Response, Status};

use super::ApiResult;
use super::convert::timestamp;
use crate::service::graphs::StoredGraph;
use crate::service::{Service, ServiceError};

/// GraphService over the use cases.
#[derive(Clone)]
pub struct GraphApi(pub Service);

fn definition(req: Option<v1::Graph>) -> Result<rondo_engine::GraphDef, Status> {
    let graph =
        req.ok_or_else(|| Status::invalid_argument("`graph` is required: send the definition"))?;
    graph_from_proto(&graph).map_err(|problems| ServiceError::InvalidGraph { problems }.into())
}

fn version(g: &StoredGraph) -> v1::GraphVersion {
    v1::GraphVersion {
        graph: Some(graph_to_proto(&g.def)),
        version: u32::try_from(g.record.version).unwrap_or(0),
        hash: g.record.hash.clone(),
        created_at: Some(timestamp(g.record.created_at)),
    }
}

#[tonic::async_trait]
impl GraphService for GraphApi {
    async fn put_graph(
        &self,
        req: Request<v1::PutGraphRequest>,
    ) -> ApiResult<v1::PutGraphResponse> {
        let def = definition(req.into_inner().graph)?;
        let put = self.0.put_graph(def).await?;
        tracing::info!(graph = %put.graph.record.name, version = put.graph.record.version, created = put.created, "graph put");
        Ok(Response::new(v1::PutGraphResponse {
            graph: Some(version(&put.graph)),
            created: put.created,
            warnings: put.warnings.iter().map(problem_to_proto).collect(),
        }))
    }

    async fn get_graph(
        &self,
        req: Request<v1::GetGraphRequest>,
    ) -> ApiResult<v1::GetGraphResponse> {
        let req = req.into_inner();
        let g = self.0.get_graph(&req.name, req.version).await?;
        Ok(Response::new(v1::GetGraphResponse {
            graph: Some(version(&g)),
        }))
    }

    async fn list_graphs(
        &self,
        req: Request<v1::ListGraphsRequest>,
    ) -> ApiResult<v1::ListGraphsResponse> {
        let req = req.into_inner();
        let (rows, next) = self.0.list_graphs(req.page_size, &req.page_token).await?;
        Ok(Response::new(v1::ListGraphsResponse {
            graphs: rows
                .iter()
                .map(|r| v1::GraphSummary {
                    name: r.name.clone(),
                    latest_version: u32::try_from(r.version).unwrap_or(0),
                    latest_hash: r.hash.clone(),
                    updated_at: Some(timestamp(r.created_at)),
                })
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn validate_graph(
        &self,
        req: Request<v1::ValidateGraphRequest>,
    ) -> ApiResult<v1::ValidateGraphResponse> {
        let graph = req.into_inner().graph.unwrap_or_default();
        let response = match graph_from_proto(&graph).and_then(|def| def.validate()) {
            Ok(validated) => v1::ValidateGraphResponse {
                valid: true,
                errors: Vec::new(),
                warnings: validated.warnings.iter().map(problem_to_proto).collect(),
                hash: validated.graph.hash().to_owned(),
            },
            Err(problems) => v1::ValidateGraphResponse {
                valid: false,
                errors: problems.iter().map(problem_to_proto).collect(),
                warnings: Vec::new(),
                hash: String::new(),
            },
        };
        Ok(Response::new(response))
    }
}
