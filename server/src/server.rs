//! `serve`: wires the store, the service, the background loops and the gRPC and HTTP
//! endpoints together, and stops them all when the shutdown token is cancelled.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::api;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::service::{Dispatcher, Limits, Service};
use crate::store::{self, StoreError, jobs, listen, workflows};

/// The sockets `serve` answers on, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// gRPC API.
    pub grpc: TcpListener,
    /// HTTP: /metrics, /livez, /readyz.
    pub http: TcpListener,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be prepared.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// Server reflection could not be set up.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Runs the server until `shutdown` is cancelled: migrates, then serves gRPC and HTTP and runs
/// the notification listener, the dispatcher and the sweeper.
pub async fn serve(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let applied = store::migrate(&config.database_url).await?;
    tracing::info!(applied, "database migrated");
    let pool = store::pool(&config.database_url, config.db_pool_size)?;
    let metrics = Arc::new(Metrics::default());
    let dispatch = Arc::new(Dispatcher::new(shutdown.clone()));
    let limits = Limits {
        default_lease: config.default_lease,
        max_payload_bytes: config.max_payload_bytes,
        max_poll_wait: config.max_poll_wait,
    };
    let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
    let service = Service::new(pool.clone(), limits, dispatch.clone(), metrics, outbox_tx);

    let (notice_tx, notice_rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    // Tells this server's notifications apart from the others', which it has acted on already.
    let origin = uuid::Uuid::new_v4();
    let listener = listen::ListenerPid::default();
    tasks.spawn(listen::run_notifier(
        config.database_url.clone(),
        origin,
        listener.clone(),
        outbox_rx,
        shutdown.clone(),
    ));
    tasks.spawn(listen::run(
        config.database_url.clone(),
        origin,
        listener,
        notice_tx,
        shutdown.clone(),
    ));
    tasks.spawn(dispatch.run(notice_rx, pool.clone(), config.recheck_interval));
    tasks.spawn(
        service
            .clone()
            .run_sweeper(config.sweep_interval, shutdown.clone()),
    );
    tasks.spawn(service.clone().release_orphans(shutdown.clone()));
    tasks.spawn(store::statistics::run(
        pool.clone(),
        config.statistics_interval,
        shutdown.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rondo_gen::v1::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    health.set_serving::<rondo_gen::v1::worker_service_server::WorkerServiceServer<api::worker::WorkerApi>>().await;
    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    tracing::info!(%grpc_addr, %http_addr, "rondo serving");

    let grpc = tonic::transport::Server::builder()
        .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
        .add_routes(api::routes(&service))
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            // Small gRPC frames must not wait for delayed ACKs (Nagle): that costs 40 ms.
            TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let http = axum::serve(listeners.http, http_router(service.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let (grpc, http) = tokio::join!(grpc, async { http.await });
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    pool.close();
    grpc?;
    http?;
    tracing::info!("rondo stopped");
    Ok(())
}

fn http_router(service: Service) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(service)
}

async fn readyz(State(service): State<Service>) -> (StatusCode, &'static str) {
    match service.pool().get().await {
        Ok(client) => match client.simple_query("SELECT 1").await {
            Ok(_) => (StatusCode::OK, "ready"),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database not answering"),
        },
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

async fn metrics(State(service): State<Service>) -> (StatusCode, String) {
    let client = match service.pool().get().await {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("database unreachable: {e}"),
            );
        }
    };
    let depth = jobs::queue_depth(&client).await.unwrap_or_default();
    let by_status = workflows::count_by_status(&client)
        .await
        .unwrap_or_default();
    let metrics = service.metrics();
    metrics.set_waiting_pollers(service.dispatch().waiting_pollers());
    (StatusCode::OK, metrics.encode(&depth, &by_status))
}
