//! Shared helpers: servers, raw gRPC clients, graphs from YAML.

use std::future::Future;
use std::time::Duration;

use rondo_gen::v1;
use rondo_gen::v1::graph_service_client::GraphServiceClient;
use rondo_gen::v1::inbox_service_client::InboxServiceClient;
use rondo_gen::v1::schedule_service_client::ScheduleServiceClient;
use rondo_gen::v1::worker_service_client::WorkerServiceClient;
use rondo_gen::v1::workflow_service_client::WorkflowServiceClient;
use rondo_server::testing::TestServer;
use rondo_worker::{CancellationToken, Worker, WorkerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// A one-step graph: operation `test.work`, terminal labels `done` and `other`, and `error`.
pub const ONE_STEP: &str = "
name: one
start: work
nodes:
  work:
    operation: test.work
    timeout: 30s
    on: { done: ~, other: ~, error: ~ }
";

/// GETs a path of the server's HTTP port; returns the status and the whole response.
pub async fn http_get(server: &TestServer, path: &str) -> (u16, String) {
    let addr = server.http_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The value of one Prometheus sample without labels (0 when absent).
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    let (_, text) = http_get(server, "/metrics").await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Raw gRPC clients of one server.
#[derive(Clone)]
pub struct Clients {
    pub graphs: GraphServiceClient<Channel>,
    pub workflows: WorkflowServiceClient<Channel>,
    pub workers: WorkerServiceClient<Channel>,
    pub inbox: InboxServiceClient<Channel>,
    pub schedules: ScheduleServiceClient<Channel>,
}

pub async fn clients(server: &TestServer) -> Clients {
    let channel = Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients {
        graphs: GraphServiceClient::new(channel.clone()),
        workflows: WorkflowServiceClient::new(channel.clone()),
        workers: WorkerServiceClient::new(channel.clone()),
        inbox: InboxServiceClient::new(channel.clone()),
        schedules: ScheduleServiceClient::new(channel),
    }
}

/// Path of an example graph.
pub fn example_graph(name: &str) -> String {
    format!(
        "{}/../example-worker/graphs/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Puts a graph given as YAML; returns its version.
pub async fn put_yaml(c: &mut Clients, yaml: &str) -> u32 {
    let def = rondo_engine::parse_yaml(yaml).expect("test graph parses");
    let graph = rondo_gen::convert::graph_to_proto(&def);
    let put = c
        .graphs
        .put_graph(v1::PutGraphRequest { graph: Some(graph) })
        .await
        .expect("graph put");
    put.into_inner().graph.unwrap().version
}

/// Starts a workflow; returns its id.
pub async fn start(c: &mut Clients, graph: &str, input: &str) -> String {
    let req = v1::StartWorkflowRequest {
        graph: graph.into(),
        input: input.into(),
        ..Default::default()
    };
    c.workflows
        .start_workflow(req)
        .await
        .expect("workflow starts")
        .into_inner()
        .workflow
        .unwrap()
        .id
}

/// Waits until the workflow stops running (at most `wait`) and returns it.
pub async fn await_done(c: &mut Clients, id: &str, wait: Duration) -> v1::Workflow {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let req = v1::AwaitWorkflowRequest {
            id: id.into(),
            wait: Some(left.try_into().unwrap()),
        };
        let resp = c
            .workflows
            .await_workflow(req)
            .await
            .expect("await")
            .into_inner();
        if resp.done || left.is_zero() {
            return resp.workflow.unwrap();
        }
    }
}

/// The event kinds of a workflow's history, in order, with their nodes.
pub async fn history(c: &mut Clients, id: &str) -> Vec<v1::Event> {
    let req = v1::GetHistoryRequest {
        id: id.into(),
        ..Default::default()
    };
    c.workflows
        .get_history(req)
        .await
        .expect("history")
        .into_inner()
        .events
}

/// Nodes entered, in order.
pub async fn path(c: &mut Clients, id: &str) -> Vec<String> {
    history(c, id)
        .await
        .into_iter()
        .filter(|e| e.kind() == v1::EventKind::NodeEntered)
        .map(|e| e.node)
        .collect()
}

/// Polls once for `operation` and returns the job.
pub async fn poll_one(c: &mut Clients, operation: &str) -> v1::Job {
    let req = v1::PollJobsRequest {
        worker: "test-worker".into(),
        operations: vec![operation.into()],
        max_jobs: 1,
        wait: Some(Duration::from_secs(10).try_into().unwrap()),
    };
    let mut jobs = c
        .workers
        .poll_jobs(req)
        .await
        .expect("poll")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1, "one job of `{operation}` arrives");
    jobs.remove(0)
}

/// Completes a job with a label and output.
pub async fn complete(
    c: &mut Clients,
    job: &v1::Job,
    label: &str,
    output: &str,
) -> Result<v1::CompleteJobResponse, tonic::Status> {
    let req = v1::CompleteJobRequest {
        job_id: job.id,
        lease_token: job.lease_token.clone(),
        label: label.into(),
        output: output.into(),
        next_operations: Vec::new(),
    };
    c.workers
        .complete_job(req)
        .await
        .map(tonic::Response::into_inner)
}

/// A running SDK worker, stopped on drop.
pub struct RunningWorker {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningWorker {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("worker task ends cleanly");
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs a worker built by `f` on the server.
pub fn run_worker(
    server: &TestServer,
    f: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> RunningWorker {
    let builder = Worker::builder(server.grpc_url())
        .identity("e2e-worker")
        .concurrency(8);
    let worker = f(builder).build().expect("worker builds");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        worker.run(token).await.expect("worker runs");
    });
    RunningWorker {
        shutdown,
        task: Some(task),
    }
}

/// Polls `check` until it returns `Some`, for at most `wait`.
pub async fn eventually<T, F, Fut>(wait: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server with quick sweeps, on its own fresh database (dropped after the server).
pub struct QuickServer {
    pub server: TestServer,
    _db: rondo_server::testing::TestDb,
}

/// Starts a server that checks leases, deadlines and starts every 25 ms.
pub async fn quick_server() -> QuickServer {
    let db = rondo_server::testing::TestDb::new().await;
    let server = TestServer::start_with(&db.url, |cfg| {
        cfg.sweep_interval = Duration::from_millis(25)
    })
    .await;
    QuickServer { server, _db: db }
}

/// Runs the `rondo` CLI in-process against `server`; returns exit code, stdout and stderr.
pub async fn rondo(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    rondo_at(&server.grpc_url(), args).await
}

/// Runs the `rondo` CLI in-process with `--server url`.
pub async fn rondo_at(url: &str, args: &[&str]) -> (i32, String, String) {
    use clap::Parser;
    let mut argv = vec!["rondo", "--server", url];
    argv.extend_from_slice(args);
    let cli = rondo_server::cli::Cli::try_parse_from(argv).expect("cli arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = rondo_server::cli::run(cli, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Reads a workflow.
pub async fn get(c: &mut Clients, id: &str) -> v1::Workflow {
    let req = v1::GetWorkflowRequest { id: id.into() };
    c.workflows
        .get_workflow(req)
        .await
        .expect("workflow")
        .into_inner()
        .workflow
        .unwrap()
}

/// Waits for the open inbox task of a workflow.
pub async fn task_of(c: &mut Clients, id: &str) -> v1::Task {
    let id = id.to_owned();
    let c2 = c.clone();
    eventually(Duration::from_secs(10), move || {
        let (id, mut c) = (id.clone(), c2.clone());
        async move {
            let tasks = c
                .inbox
                .list_tasks(v1::ListTasksRequest::default())
                .await
                .ok()?
                .into_inner()
                .tasks;
            tasks.into_iter().find(|t| t.workflow_id == id)
        }
    })
    .await
}
