//! The worker runtime against an in-process fake `WorkerService`: polling with free slots,
//! answers, failures, heartbeats, cancellation, reconnects and graceful shutdown. The real
//! server with PostgreSQL is exercised by the workspace's end-to-end tests.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rondo_gen::v1;
use rondo_gen::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use rondo_worker::{CancellationToken, HandlerError, Job, Outcome, Worker};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

/// Longest a fake poll waits, whatever the worker asks, so tests stay quick.
const FAKE_POLL_CAP: Duration = Duration::from_millis(200);
/// Upper bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    /// Jobs waiting to be leased.
    ready: VecDeque<v1::Job>,
    /// `max_jobs` of every poll, in order.
    poll_sizes: Vec<u32>,
    /// Error to answer every poll with.
    poll_error: Option<(Code, &'static str)>,
    /// Heartbeats received: job id and progress.
    heartbeats: Vec<(i64, Option<v1::Progress>)>,
    /// Error to answer heartbeats of a job with.
    heartbeat_errors: HashMap<i64, (Code, &'static str)>,
    /// Completions received (every call, repeats included): job id, label, output.
    completions: Vec<(i64, String, String)>,
    /// Completion calls to refuse with UNAVAILABLE before accepting.
    completions_unavailable: u32,
    /// Failures received: job id and message.
    failures: Vec<(i64, String)>,
    /// Releases received: job id and reason.
    releases: Vec<(i64, String)>,
}

/// An in-memory stand-in for the server's worker service.
#[derive(Default)]
struct Fake {
    state: Mutex<State>,
    /// Wakes waiting polls when jobs are added, and waiting tests when anything arrives.
    changed: Notify,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    fn add_job(&self, job: v1::Job) {
        self.state().ready.push_back(job);
        self.changed.notify_waiters();
    }

    /// Waits until `check` holds, failing the test after [`PATIENCE`].
    async fn until(&self, what: &str, check: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.changed.notified();
            if check(&self.state()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() && !check(&self.state()) {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

#[tonic::async_trait]
impl WorkerService for Fake {
    async fn poll_jobs(
        &self,
        request: Request<v1::PollJobsRequest>,
    ) -> Result<Response<v1::PollJobsResponse>, Status> {
        let request = request.into_inner();
        assert!(!request.operations.is_empty(), "poll without operations");
        assert!(!request.worker.is_empty(), "poll without identity");
        {
            let mut state = self.state();
            state.poll_sizes.push(request.max_jobs);
            if let Some((code, message)) = state.poll_error {
                return Err(Status::new(code, message));
            }
        }
        let deadline = tokio::time::Instant::now() + FAKE_POLL_CAP;
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state();
                if !state.ready.is_empty() {
                    let n = (request.max_jobs.max(1) as usize).min(state.ready.len());
                    let jobs = state.ready.drain(..n).collect();
                    return Ok(Response::new(v1::PollJobsResponse { jobs }));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Response::new(v1::PollJobsResponse { jobs: vec![] }));
            }
        }
    }

    async fn heartbeat_job(
        &self,
        request: Request<v1::HeartbeatJobRequest>,
    ) -> Result<Response<v1::HeartbeatJobResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state();
        state.heartbeats.push((request.job_id, request.progress));
        self.changed.notify_waiters();
        if let Some((code, message)) = state.heartbeat_errors.get(&request.job_id) {
            return Err(Status::new(*code, *message));
        }
        Ok(Response::new(v1::HeartbeatJobResponse {
            lease_expires_at: Some(lease_in(Duration::from_millis(300))),
        }))
    }

    async fn complete_job(
        &self,
        request: Request<v1::CompleteJobRequest>,
    ) -> Result<Response<v1::CompleteJobResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state();
        state
            .completions
            .push((request.job_id, request.label, request.output));
        self.changed.notify_waiters();
        if state.completions_unavailable > 0 {
            state.completions_unavailable -= 1;
            return Err(Status::unavailable("database restarting"));
        }
        Ok(Response::new(v1::CompleteJobResponse::default()))
    }

    async fn fail_job(
        &self,
        request: Request<v1::FailJobRequest>,
    ) -> Result<Response<v1::FailJobResponse>, Status> {
        let request = request.into_inner();
        self.state()
            .failures
            .push((request.job_id, request.message));
        self.changed.notify_waiters();
        Ok(Response::new(v1::FailJobResponse::default()))
    }

    async fn release_job(
        &self,
        request: Request<v1::ReleaseJobRequest>,
    ) -> Result<Response<v1::ReleaseJobResponse>, Status> {
        let request = request.into_inner();
        self.state().releases.push((request.job_id, request.reason));
        self.changed.notify_waiters();
        Ok(Response::new(v1::ReleaseJobResponse {}))
    }
}

fn lease_in(duration: Duration) -> prost_types::Timestamp {
    (SystemTime::now() + duration).into()
}

/// A job of `operation` offering `charged` and `declined`, leased for 300 ms (so heartbeats
/// come every 100 ms).
fn job(id: i64, operation: &str) -> v1::Job {
    v1::Job {
        id,
        workflow_id: format!("wf-{id}"),
        graph: "order".into(),
        graph_version: 1,
        node: "charge".into(),
        operation: operation.into(),
        params: r#"{"currency": "EUR"}"#.into(),
        vars: r#"{"amount": 42}"#.into(),
        input: String::new(),
        labels: vec!["charged".into(), "declined".into()],
        attempt: 1,
        idempotency_key: format!("key-{id}"),
        lease_token: format!("lease-{id}"),
        lease_expires_at: Some(lease_in(Duration::from_millis(300))),
        heartbeat_interval: None,
        created_at: None,
    }
}

struct Server {
    fake: Arc<Fake>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let fake = Arc::new(Fake::default());
        let stop = CancellationToken::new();
        let service = WorkerServiceServer::from_arc(Arc::clone(&fake));
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
                .expect("fake server");
        });
        Self {
            fake,
            addr,
            stop,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and hands back what it recorded.
    async fn stop(self) -> Arc<Fake> {
        self.stop.cancel();
        self.task.await.expect("fake server task");
        self.fake
    }
}

/// Runs `worker` in the background; cancel the token to stop it.
fn spawn(worker: Worker) -> (CancellationToken, JoinHandle<rondo_worker::Result<()>>) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    (shutdown, task)
}

async fn stop(shutdown: CancellationToken, task: JoinHandle<rondo_worker::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("worker stops")
        .expect("worker task")
        .expect("worker result");
}

async fn charge(job: Job) -> Result<Outcome, HandlerError> {
    let amount = job.vars()["amount"]
        .as_i64()
        .ok_or_else(|| HandlerError::new("no amount"))?;
    Ok(Outcome::new("charged").with_output(json!({
        "charged": amount,
        "currency": job.params()["currency"],
        "key": job.idempotency_key(),
    })))
}

#[tokio::test]
async fn handler_outcome_completes_the_job_with_its_output() {
    let server = Server::start().await;
    let worker = Worker::builder(server.url())
        .identity("test-worker")
        .handler("payments.charge", charge)
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "payments.charge"));
    server
        .fake
        .until("a completion", |s| !s.completions.is_empty())
        .await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    let (id, label, output) = &state.completions[0];
    assert_eq!((*id, label.as_str()), (1, "charged"));
    let output: serde_json::Value = serde_json::from_str(output).expect("output is JSON");
    assert_eq!(
        output,
        json!({"charged": 42, "currency": "EUR", "key": "key-1"})
    );
    assert!(state.failures.is_empty());
}

#[tokio::test]
async fn handler_errors_panics_and_bad_answers_fail_the_job() {
    let server = Server::start().await;
    let worker = Worker::builder(server.url())
        .handler("fails", |_job: Job| async {
            Err::<Outcome, _>(HandlerError::new("card expired"))
        })
        .handler("panics", |job: Job| async move {
            if job.attempt() > 0 {
                panic!("bug in handler");
            }
            Ok(Outcome::new("charged"))
        })
        .handler("answers_badly", |_job: Job| async {
            Ok(Outcome::new("refunded"))
        })
        .handler("panics_before_its_future", |job: Job| {
            assert_eq!(job.attempt(), 0, "bug before the first await");
            async { Ok(Outcome::new("charged")) }
        })
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "fails"));
    server.fake.add_job(job(2, "panics"));
    server.fake.add_job(job(3, "answers_badly"));
    let mut bad_payload = job(4, "fails");
    bad_payload.vars = "[1]".into();
    server.fake.add_job(bad_payload);
    server.fake.add_job(job(5, "panics_before_its_future"));
    server
        .fake
        .until("five failures", |s| s.failures.len() == 5)
        .await;
    stop(shutdown, task).await;

    let mut failures = server.fake.state().failures.clone();
    failures.sort();
    assert_eq!(failures[0], (1, "card expired".to_owned()));
    assert_eq!(
        failures[1],
        (2, "handler panicked: bug in handler".to_owned())
    );
    assert!(failures[2].1.contains("label `refunded`"), "{failures:?}");
    assert_eq!(
        failures[3],
        (4, "vars must be a JSON object, not an array".to_owned())
    );
    assert!(
        failures[4]
            .1
            .starts_with("handler panicked: assertion `left == right` failed: bug before"),
        "{failures:?}"
    );
    assert!(server.fake.state().completions.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn concurrency_bounds_jobs_in_flight_and_polls_ask_only_for_free_slots() {
    let server = Server::start().await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let worker = Worker::builder(server.url())
        .concurrency(2)
        .handler("slow", move |_job: Job| {
            let (running, most) = (Arc::clone(&r), Arc::clone(&m));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome::new("charged"))
            }
        })
        .build()
        .expect("worker");
    for id in 1..=6 {
        server.fake.add_job(job(id, "slow"));
    }
    let (shutdown, task) = spawn(worker);
    server
        .fake
        .until("six completions", |s| s.completions.len() == 6)
        .await;
    stop(shutdown, task).await;

    assert_eq!(most.load(Ordering::SeqCst), 2);
    let sizes = server.fake.state().poll_sizes.clone();
    assert_eq!(sizes[0], 2, "first poll asks for every slot: {sizes:?}");
    assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_carry_the_latest_progress() {
    let server = Server::start().await;
    let worker = Worker::builder(server.url())
        .handler("reports", |job: Job| async move {
            job.progress(40, "halfway there");
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(Outcome::new("charged"))
        })
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "reports"));
    server
        .fake
        .until("a completion", |s| !s.completions.is_empty())
        .await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    assert!(state.heartbeats.len() >= 2, "{:?}", state.heartbeats);
    let (id, progress) = &state.heartbeats[0];
    assert_eq!(*id, 1);
    let progress = progress.as_ref().expect("first heartbeat carries progress");
    assert_eq!(
        (progress.percent, progress.message.as_str()),
        (40, "halfway there")
    );
    assert!(
        state.heartbeats[1].1.is_none(),
        "progress is sent once, not with every heartbeat"
    );
}

/// A handler that waits for cancellation, records it, and then answers anyway.
fn waits_for_cancel(
    seen: &Arc<AtomicUsize>,
) -> impl Fn(Job) -> std::pin::Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send>>
+ Send
+ Sync
+ 'static {
    let seen = Arc::clone(seen);
    move |job: Job| {
        let seen = Arc::clone(&seen);
        Box::pin(async move {
            job.cancelled().cancelled().await;
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(Outcome::new("charged"))
        })
    }
}

#[tokio::test]
async fn cancelled_workflow_or_lost_lease_cancels_the_handler_and_drops_its_result() {
    let server = Server::start().await;
    let seen = Arc::new(AtomicUsize::new(0));
    {
        let mut state = server.fake.state();
        state
            .heartbeat_errors
            .insert(1, (Code::FailedPrecondition, "workflow cancelled"));
        state
            .heartbeat_errors
            .insert(2, (Code::Aborted, "lease lost"));
    }
    let worker = Worker::builder(server.url())
        .handler("waits", waits_for_cancel(&seen))
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "waits"));
    server.fake.add_job(job(2, "waits"));
    tokio::time::timeout(PATIENCE, async {
        while seen.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both handlers see cancellation");
    // Leave time for a (wrong) completion to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    assert!(state.completions.is_empty(), "{:?}", state.completions);
    assert!(state.failures.is_empty(), "{:?}", state.failures);
    assert!(state.releases.is_empty(), "{:?}", state.releases);
}

#[tokio::test]
async fn shutdown_lets_jobs_in_hand_finish_and_report() {
    let server = Server::start().await;
    let worker = Worker::builder(server.url())
        .shutdown_grace(Duration::from_secs(5))
        .handler("slow", |_job: Job| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Outcome::new("charged"))
        })
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "slow"));
    server
        .fake
        .until("the job leased", |s| s.ready.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    assert_eq!(state.completions.len(), 1);
    assert!(state.releases.is_empty());
}

#[tokio::test]
async fn shutdown_grace_running_out_cancels_and_releases_unfinished_jobs() {
    let server = Server::start().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let worker = Worker::builder(server.url())
        .shutdown_grace(Duration::from_millis(200))
        .handler("waits", waits_for_cancel(&seen))
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(7, "waits"));
    server
        .fake
        .until("the job leased", |s| s.ready.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    assert_eq!(state.releases, [(7, "worker shutting down".to_owned())]);
    assert!(state.completions.is_empty());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the handler saw cancellation"
    );
}

#[tokio::test]
async fn completion_is_retried_while_the_server_is_unavailable() {
    let server = Server::start().await;
    server.fake.state().completions_unavailable = 2;
    let worker = Worker::builder(server.url())
        .handler("payments.charge", charge)
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    server.fake.add_job(job(1, "payments.charge"));
    server
        .fake
        .until("three completion calls", |s| s.completions.len() == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(shutdown, task).await;

    let fake = server.stop().await;
    let state = fake.state();
    assert_eq!(state.completions.len(), 3, "no call after the accepted one");
    assert!(
        state
            .completions
            .iter()
            .all(|c| c.0 == 1 && c.1 == "charged")
    );
}

#[tokio::test]
async fn worker_started_before_the_server_connects_once_it_is_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let worker = Worker::builder(format!("http://{addr}"))
        .handler("payments.charge", charge)
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = Server::serve(TcpListener::bind(addr).await.expect("rebind the port"));
    server.fake.add_job(job(1, "payments.charge"));
    server
        .fake
        .until("a completion", |s| !s.completions.is_empty())
        .await;
    stop(shutdown, task).await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_while_the_server_is_away_returns_promptly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let worker = Worker::builder(format!("http://{addr}"))
        .handler("payments.charge", charge)
        .build()
        .expect("worker");
    let (shutdown, task) = spawn(worker);
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("run returns at once")
        .expect("worker task")
        .expect("worker result");
}

#[tokio::test]
async fn run_returns_an_error_when_the_server_rejects_polling() {
    let server = Server::start().await;
    server.fake.state().poll_error = Some((Code::InvalidArgument, "unknown operation"));
    let worker = Worker::builder(server.url())
        .handler("payments.charge", charge)
        .build()
        .expect("worker");
    let result = tokio::time::timeout(PATIENCE, worker.run(CancellationToken::new()))
        .await
        .expect("run returns by itself");
    let error = result.expect_err("polling was rejected");
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert_eq!(server.stop().await.state().poll_sizes.len(), 1, "no retry");
}
