//! The worker runtime: long-poll for jobs while a slot is free, run each job's handler with
//! heartbeats, answer the server, reconnect when it is away, and shut down gracefully.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::error::{Error, Result};
use crate::job::{HandlerError, Job, Outcome};
use crate::timing::{Backoff, heartbeat_delay};
use crate::transport::{self, Ack, LeasedJob, WorkerTransport};

/// Default number of jobs a worker runs at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default time jobs in hand get to finish once shutdown begins.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default long-poll wait; the server caps it and answers before it runs out.
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(30);

/// Most jobs one poll may ask for (the server's limit).
const MAX_JOBS_PER_POLL: usize = 256;
/// Reconnect backoff: the first retry comes within this...
const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// ...and, doubling per failure, never later than this.
const RECONNECT_CAP: Duration = Duration::from_secs(10);
/// Completion, failure and release are retried on transient errors this many times in all...
const DELIVERY_ATTEMPTS: u32 = 8;
/// ...with backoff from this...
const DELIVERY_BASE: Duration = Duration::from_millis(250);
/// ...up to this, which rides out a server restart of about 15 s.
const DELIVERY_CAP: Duration = Duration::from_secs(5);
/// Shortest pause between heartbeats while they fail, so an unreachable server does not turn
/// a nearly expired lease into a busy loop.
const HEARTBEAT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Time a handler cancelled at the end of the shutdown grace gets to return before it is
/// aborted.
const WIND_DOWN: Duration = Duration::from_secs(1);
/// Lease assumed when the server sends none; heartbeats then come every 10 s.
const FALLBACK_LEASE: Duration = Duration::from_secs(30);

/// The future a handler returns, boxed.
type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send>>;
/// A handler, type-erased so handlers of different closure types share one map.
type Handler = Arc<dyn Fn(Job) -> HandlerFuture + Send + Sync>;

/// Configures a [`Worker`]; start with [`Worker::builder`].
pub struct WorkerBuilder {
    /// Server address, parsed by `build`.
    url: String,
    /// Identity shown on leases and in history; `None` for `hostname-pid`.
    identity: Option<String>,
    /// Jobs run at once; also the most a poll asks for.
    concurrency: usize,
    /// Time jobs in hand get once shutdown begins.
    shutdown_grace: Duration,
    /// Long-poll wait asked of the server.
    poll_wait: Duration,
    /// Handler per operation.
    handlers: BTreeMap<String, Handler>,
    /// Operations given a handler twice: a mistake `build` reports.
    duplicates: Vec<String>,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .field("concurrency", &self.concurrency)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("poll_wait", &self.poll_wait)
            .field("operations", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Sets the identity recorded on leases and in history. Default: `hostname-pid`, or
    /// `worker-pid` when the host name is unknown.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets how many jobs run at once (default 16). The worker never polls without a free
    /// slot, and asks for as many jobs as it has free slots.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets how long jobs in hand may run on once shutdown begins (default 30 s). After it,
    /// their [`Job::cancelled`] tokens fire and they are given back to the server.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the long-poll wait (default 30 s, capped by the server).
    #[must_use]
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait;
        self
    }

    /// Registers the handler of `operation`: an async function from [`Job`] to
    /// `Result<Outcome, HandlerError>`. An `Err` or a panic fails the job, which the engine
    /// then routes by the reserved label `error`.
    #[must_use]
    pub fn handler<F, Fut>(mut self, operation: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
    {
        let operation = operation.into();
        let handler: Handler = Arc::new(move |job| Box::pin(handler(job)));
        if self.handlers.insert(operation.clone(), handler).is_some() {
            self.duplicates.push(operation);
        }
        self
    }

    /// Checks the configuration and builds the worker. Nothing is sent to the server yet.
    pub fn build(self) -> Result<Worker> {
        let endpoint = transport::endpoint(&self.url)?;
        if self.handlers.is_empty() {
            return Err(Error::Config(
                "no handler registered: add one with `.handler(operation, fn)`".to_owned(),
            ));
        }
        if let Some(operation) = self.duplicates.first() {
            return Err(Error::Config(format!(
                "operation `{operation}` has two handlers: register each operation once"
            )));
        }
        if let Some(operation) = self.handlers.keys().find(|op| op.trim().is_empty()) {
            return Err(Error::Config(format!(
                "operation `{operation}` is blank: name it like `payments.charge`"
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".to_owned()));
        }
        if self.poll_wait.is_zero() {
            return Err(Error::Config("poll wait must be above zero".to_owned()));
        }
        let identity = self.identity.unwrap_or_else(default_identity);
        if identity.trim().is_empty() {
            return Err(Error::Config("identity must not be blank".to_owned()));
        }
        Ok(Worker {
            endpoint,
            identity,
            concurrency: self.concurrency,
            shutdown_grace: self.shutdown_grace,
            poll_wait: self.poll_wait,
            handlers: Arc::new(self.handlers),
        })
    }
}

/// A worker: polls the server for the operations it has handlers for and runs them.
pub struct Worker {
    /// Where the server is; connected lazily in `run`.
    endpoint: Endpoint,
    /// Identity on leases and in history.
    identity: String,
    /// Jobs run at once.
    concurrency: usize,
    /// Time jobs in hand get once shutdown begins.
    shutdown_grace: Duration,
    /// Long-poll wait asked of the server.
    poll_wait: Duration,
    /// Handler per operation, shared with every job task.
    handlers: Arc<BTreeMap<String, Handler>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("server", &self.endpoint.uri())
            .field("identity", &self.identity)
            .field("concurrency", &self.concurrency)
            .field("operations", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts configuring a worker for the server at `url`, such as `http://127.0.0.1:7233`.
    pub fn builder(url: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            url: url.into(),
            identity: None,
            concurrency: DEFAULT_CONCURRENCY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            poll_wait: DEFAULT_POLL_WAIT,
            handlers: BTreeMap::new(),
            duplicates: Vec::new(),
        }
    }

    /// The identity recorded on leases and in history.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully and returns.
    ///
    /// The server need not be up yet: while it is away, polling retries with capped
    /// exponential backoff and full jitter (100 ms doubling to 10 s), logging once per outage.
    ///
    /// On shutdown, polling stops at once (a waiting long poll is abandoned) and jobs in hand
    /// get the shutdown grace to finish and be reported. After the grace their
    /// [`Job::cancelled`] tokens fire and they are released to the server, so another worker
    /// takes them with the same attempt number and idempotency key.
    ///
    /// Returns an error only when the server rejects the worker's polls as invalid
    /// (`InvalidArgument`, `Unimplemented`, `Unauthenticated` or `PermissionDenied`), which
    /// retrying cannot fix; jobs in hand are still drained as on shutdown.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let transport = WorkerTransport::new(self.endpoint.connect_lazy());
        let runtime = Arc::new(JobRuntime {
            transport: transport.clone(),
            handlers: Arc::clone(&self.handlers),
            hard_stop: CancellationToken::new(),
            operations: self.handlers.keys().cloned().collect(),
            stopping: shutdown.clone(),
        });
        let tracker = TaskTracker::new();
        let operations: Vec<String> = self.handlers.keys().cloned().collect();
        info!(
            worker = %self.identity,
            server = %self.endpoint.uri(),
            operations = ?operations,
            concurrency = self.concurrency,
            "worker started"
        );
        let poller = Poller {
            transport,
            identity: &self.identity,
            operations: &operations,
            poll_wait: self.poll_wait,
            slots: Arc::new(Semaphore::new(self.concurrency)),
            tracker: &tracker,
            runtime: &runtime,
        };
        let result = poller.poll_until(&shutdown).await;

        tracker.close();
        if !tracker.is_empty() {
            info!(
                jobs = tracker.len(),
                grace = ?self.shutdown_grace,
                "polling stopped; waiting for jobs in hand"
            );
        }
        tokio::select! {
            () = tracker.wait() => {}
            () = tokio::time::sleep(self.shutdown_grace) => {
                warn!(
                    jobs = tracker.len(),
                    "shutdown grace ran out; cancelling and releasing unfinished jobs"
                );
                runtime.hard_stop.cancel();
                tracker.wait().await;
            }
        }
        info!(worker = %self.identity, "worker stopped");
        result
    }
}

/// The poll loop's borrowed state.
struct Poller<'a> {
    /// Calls to the server.
    transport: WorkerTransport,
    /// Identity sent with every poll.
    identity: &'a str,
    /// Operations with a handler.
    operations: &'a [String],
    /// Long-poll wait asked of the server.
    poll_wait: Duration,
    /// One permit per job slot; a job holds its permit until it is reported.
    slots: Arc<Semaphore>,
    /// Job tasks, awaited on shutdown.
    tracker: &'a TaskTracker,
    /// What job tasks share.
    runtime: &'a Arc<JobRuntime>,
}

impl Poller<'_> {
    /// Polls until `shutdown` fires (`Ok`) or the server rejects polling for good (`Err`).
    async fn poll_until(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_CAP);
        let mut outage_since: Option<Instant> = None;
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                permit = Arc::clone(&self.slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => return Ok(()),
                },
            };
            let mut permits = vec![first];
            while permits.len() < MAX_JOBS_PER_POLL {
                match Arc::clone(&self.slots).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let max_jobs = u32::try_from(permits.len()).unwrap_or(u32::MAX);
            let polled = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                polled = self.transport.poll(self.identity, self.operations, max_jobs, self.poll_wait) => polled,
            };
            match polled {
                Ok(jobs) => {
                    if let Some(since) = outage_since.take() {
                        info!(
                            down_for = ?since.elapsed(),
                            failed_polls = backoff.failures(),
                            "server reachable again; polling resumed"
                        );
                    }
                    backoff.reset();
                    debug!(jobs = jobs.len(), max_jobs, "poll answered");
                    for job in jobs {
                        let permit = permits.pop();
                        if permit.is_none() {
                            warn!(
                                job_id = job.data.id,
                                max_jobs, "server sent more jobs than asked for; running it anyway"
                            );
                        }
                        let runtime = Arc::clone(self.runtime);
                        self.tracker.spawn(runtime.run(job, permit));
                    }
                }
                Err(status) if is_permanent(status.code()) => {
                    error!(
                        code = ?status.code(),
                        error = status.message(),
                        "server rejected polling; stopping the worker"
                    );
                    return Err(Error::rpc("PollJobs", &status));
                }
                Err(status) => {
                    drop(permits);
                    if outage_since.is_none() {
                        warn!(
                            code = ?status.code(),
                            error = status.message(),
                            "cannot poll for jobs; retrying with backoff until the server answers"
                        );
                        outage_since = Some(Instant::now());
                    }
                    let delay = backoff.next_delay(&mut rand::rng());
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// Poll errors that retrying cannot fix.
fn is_permanent(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::PermissionDenied
    )
}

/// Errors worth retrying an idempotent call for: the server was away, or the call timed out.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// Why a job's result must not be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Withdrawn {
    /// The server took the lease away (ABORTED): the engine already chose `timeout`.
    LeaseLost(String),
    /// The workflow was cancelled or moved on (FAILED_PRECONDITION).
    Cancelled(String),
}

/// What to tell the server about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Report {
    /// `CompleteJob` with a label and an output (JSON object text).
    Complete {
        /// One of the job's offered labels.
        label: String,
        /// Output as JSON text.
        output: String,
    },
    /// `FailJob`: the engine routes by `error`.
    Fail {
        /// What went wrong.
        message: String,
    },
    /// `ReleaseJob`: give the job back unfinished.
    Release {
        /// Why, for history.
        reason: String,
    },
}

impl Report {
    /// The report for what a handler task ended with.
    fn from_handler(job: &Job, joined: Result<Result<Outcome, HandlerError>, JoinError>) -> Self {
        match joined {
            Ok(Ok(outcome)) => {
                if !job.labels().iter().any(|l| l == outcome.label()) {
                    return Report::Fail {
                        message: format!(
                            "handler answered label `{}`, which node `{}` does not offer \
                             (offered: {})",
                            outcome.label(),
                            job.node(),
                            job.labels().join(", ")
                        ),
                    };
                }
                match outcome.output_json() {
                    Ok(output) => Report::Complete {
                        label: outcome.label().to_owned(),
                        output,
                    },
                    Err(message) => Report::Fail { message },
                }
            }
            Ok(Err(error)) => Report::Fail {
                message: error.message().to_owned(),
            },
            Err(join) => Report::Fail {
                message: match join.try_into_panic() {
                    Ok(panic) => format!("handler panicked: {}", panic_message(panic.as_ref())),
                    Err(_) => "handler task was aborted".to_owned(),
                },
            },
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Report::Complete { .. } => "CompleteJob",
            Report::Fail { .. } => "FailJob",
            Report::Release { .. } => "ReleaseJob",
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

/// What every job task shares.
struct JobRuntime {
    /// Calls to the server.
    transport: WorkerTransport,
    /// Handler per operation.
    handlers: Arc<BTreeMap<String, Handler>>,
    /// Fires when the shutdown grace runs out: unfinished jobs are cancelled and released.
    hard_stop: CancellationToken,
    /// Operations with a handler, offered with each completion for eager dispatch.
    operations: Vec<String>,
    /// The worker's shutdown: once it fires, completions take no next job.
    stopping: CancellationToken,
}

impl JobRuntime {
    /// Runs one leased job to its end, holding its slot `permit` until then; when the
    /// server hands back the workflow's next job with the completion (eager dispatch), runs
    /// that one too in the same slot.
    async fn run(self: Arc<Self>, leased: LeasedJob, permit: Option<OwnedSemaphorePermit>) {
        let mut next = Some(leased);
        while let Some(leased) = next.take() {
            let span = info_span!(
                "job",
                workflow_id = %leased.data.workflow_id,
                job_id = leased.data.id,
                node = %leased.data.node,
                operation = %leased.data.operation,
                attempt = leased.data.attempt,
            );
            next = self.run_in_span(leased).instrument(span).await;
        }
        drop(permit);
    }

    async fn run_in_span(&self, leased: LeasedJob) -> Option<LeasedJob> {
        let LeasedJob {
            data,
            lease_token,
            payload_error,
        } = leased;
        let job_id = data.id;
        if let Some(message) = payload_error {
            error!(error = %message, "job payload unreadable; failing the job");
            self.deliver(job_id, &lease_token, Report::Fail { message })
                .await;
            return None;
        }
        let Some(handler) = self.handlers.get(&data.operation).cloned() else {
            let message = format!("worker has no handler for operation `{}`", data.operation);
            error!(error = %message, "failing the job");
            self.deliver(job_id, &lease_token, Report::Fail { message })
                .await;
            return None;
        };

        let cancel = CancellationToken::new();
        let job = Job::new(data, cancel.clone());
        debug!("job started");
        let started = Instant::now();
        // The handler is called inside the task, so that a panic before its first await is
        // caught like any other.
        let handler_job = job.clone();
        let mut task = tokio::spawn(async move { handler(handler_job).await }.in_current_span());
        let heartbeats = heartbeat_until_withdrawn(&self.transport, &job, &lease_token);
        tokio::pin!(heartbeats);
        let mut withdrawn: Option<Withdrawn> = None;

        let joined = loop {
            tokio::select! {
                joined = &mut task => break Some(joined),
                reason = &mut heartbeats, if withdrawn.is_none() => {
                    match &reason {
                        Withdrawn::LeaseLost(message) => warn!(
                            error = %message,
                            "lease lost; cancelling the handler, its result will be dropped"
                        ),
                        Withdrawn::Cancelled(message) => info!(
                            reason = %message,
                            "workflow cancelled or moved on; cancelling the handler"
                        ),
                    }
                    cancel.cancel();
                    withdrawn = Some(reason);
                }
                () = self.hard_stop.cancelled() => break None,
            }
        };

        let Some(joined) = joined else {
            cancel.cancel();
            if withdrawn.is_none() {
                info!("shutdown grace ran out; releasing the unfinished job");
                let reason = "worker shutting down".to_owned();
                self.deliver(job_id, &lease_token, Report::Release { reason })
                    .await;
            }
            // The result is moot now, but a handler that honours its token may want to clean up.
            if tokio::time::timeout(WIND_DOWN, &mut task).await.is_err() {
                warn!("handler ignored cancellation; aborting it");
                task.abort();
            }
            return None;
        };
        let took = started.elapsed();
        if let Some(reason) = withdrawn {
            info!(took = ?took, reason = ?reason, "handler finished; result dropped");
            return None;
        }
        let report = Report::from_handler(&job, joined);
        match &report {
            Report::Complete { label, .. } => {
                debug!(took = ?took, label = %label, "handler answered")
            }
            Report::Fail { message } => warn!(took = ?took, error = %message, "job failed"),
            Report::Release { .. } => {}
        }
        self.deliver(job_id, &lease_token, report).await
    }

    /// Operations to ask the next job for with a completion: none once shutting down.
    fn eager_operations(&self) -> &[String] {
        if self.stopping.is_cancelled() {
            &[]
        } else {
            &self.operations
        }
    }

    /// Sends `report`, retrying transient errors with backoff (the server treats a repeat as
    /// a no-op). A completion the server rejects as invalid (an output too large, say) is
    /// turned into a failure, so the workflow moves on by `error` rather than by `timeout`.
    async fn deliver(&self, job_id: i64, lease_token: &str, report: Report) -> Option<LeasedJob> {
        let mut report = report;
        let mut backoff = Backoff::new(DELIVERY_BASE, DELIVERY_CAP);
        let mut attempt = 1;
        loop {
            let sent = match &report {
                Report::Complete { label, output } => {
                    self.transport
                        .complete(job_id, lease_token, label, output, self.eager_operations())
                        .await
                }
                Report::Fail { message } => self
                    .transport
                    .fail(job_id, lease_token, message)
                    .await
                    .map(|ack| (ack, None)),
                Report::Release { reason } => self
                    .transport
                    .release(job_id, lease_token, reason)
                    .await
                    .map(|ack| (ack, None)),
            };
            match sent {
                Ok((ack, next)) => {
                    log_delivered(&report, &ack);
                    return next;
                }
                Err(status) if is_transient(status.code()) && attempt < DELIVERY_ATTEMPTS => {
                    debug!(
                        method = report.method(),
                        attempt,
                        code = ?status.code(),
                        error = status.message(),
                        "report failed; retrying"
                    );
                    attempt += 1;
                    let delay = backoff.next_delay(&mut rand::rng());
                    tokio::time::sleep(delay).await;
                }
                Err(status)
                    if status.code() == Code::InvalidArgument
                        && matches!(report, Report::Complete { .. }) =>
                {
                    warn!(
                        error = status.message(),
                        "server rejected the completion; failing the job instead"
                    );
                    report = Report::Fail {
                        message: format!("completion rejected: {}", status.message()),
                    };
                }
                Err(status) => {
                    log_undelivered(&report, &status);
                    return None;
                }
            }
        }
    }
}

fn log_delivered(report: &Report, ack: &Ack) {
    match report {
        Report::Complete { label, .. } => info!(
            label = %label,
            next_node = %ack.next_node,
            duplicate = ack.duplicate,
            "job completed"
        ),
        Report::Fail { .. } => debug!(
            next_node = %ack.next_node,
            duplicate = ack.duplicate,
            "job failure reported"
        ),
        Report::Release { .. } => info!("job released"),
    }
}

fn log_undelivered(report: &Report, status: &Status) {
    let method = report.method();
    match status.code() {
        Code::Aborted => warn!(
            method,
            error = status.message(),
            "lease lost before the result arrived; the engine already timed the job out"
        ),
        Code::FailedPrecondition => warn!(
            method,
            error = status.message(),
            "server refused the result: workflow cancelled or moved on, or a different result \
             was already given"
        ),
        code if is_transient(code) => error!(
            method,
            code = ?code,
            error = status.message(),
            "server unreachable; result not delivered, the lease will time out"
        ),
        code => error!(
            method,
            code = ?code,
            error = status.message(),
            "server rejected the result; the lease will time out"
        ),
    }
}

/// Heartbeats for `job` until the server withdraws it; never returns otherwise, so the caller
/// drops it once the handler ends.
async fn heartbeat_until_withdrawn(
    transport: &WorkerTransport,
    job: &Job,
    lease_token: &str,
) -> Withdrawn {
    let interval = job.data().heartbeat_interval;
    let mut lease_expires_at = job.lease_expires_at();
    let mut failing = false;
    loop {
        let left = time_left(lease_expires_at, SystemTime::now());
        let mut delay = heartbeat_delay(interval, left);
        if failing {
            delay = delay.max(HEARTBEAT_RETRY_DELAY);
        }
        tokio::time::sleep(delay).await;
        let progress = job.take_progress();
        match transport
            .heartbeat(job.id(), lease_token, progress.as_ref())
            .await
        {
            Ok(expires) => {
                if failing {
                    info!("heartbeats reach the server again");
                    failing = false;
                }
                lease_expires_at = expires.or(lease_expires_at);
            }
            Err(status) => {
                if let Some(progress) = progress {
                    job.restore_progress(progress);
                }
                match status.code() {
                    Code::Aborted => return Withdrawn::LeaseLost(status.message().to_owned()),
                    Code::FailedPrecondition => {
                        return Withdrawn::Cancelled(status.message().to_owned());
                    }
                    code => {
                        if !failing {
                            warn!(
                                code = ?code,
                                error = status.message(),
                                "heartbeat failed; retrying while the handler runs"
                            );
                            failing = true;
                        }
                    }
                }
            }
        }
    }
}

/// Time left on a lease ending at `expires_at` as of `now`; zero once past, and
/// [`FALLBACK_LEASE`] when the server sent no end.
fn time_left(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    expires_at.map_or(FALLBACK_LEASE, |at| {
        at.duration_since(now).unwrap_or(Duration::ZERO)
    })
}

/// `hostname-pid`, or `worker-pid` when the host name cannot be read.
fn default_identity() -> String {
    let pid = std::process::id();
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .map_or_else(|| format!("worker-{pid}"), |host| format!("{host}-{pid}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::JobData;

    fn job_offering(labels: &[&str]) -> Job {
        let data = JobData {
            node: "charge".into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            ..JobData::default()
        };
        Job::new(data, CancellationToken::new())
    }

    #[test]
    fn time_left_is_zero_once_past_and_falls_back_without_a_lease() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let secs = Duration::from_secs;
        assert_eq!(time_left(Some(now + secs(30)), now), secs(30));
        assert_eq!(time_left(Some(now - secs(5)), now), Duration::ZERO);
        assert_eq!(time_left(None, now), FALLBACK_LEASE);
    }

    #[test]
    fn offered_label_completes_with_its_output() {
        let job = job_offering(&["charged", "declined"]);
        let outcome = Outcome::new("charged").with_output(json!({"charge_id": "c1"}));
        assert_eq!(
            Report::from_handler(&job, Ok(Ok(outcome))),
            Report::Complete {
                label: "charged".into(),
                output: r#"{"charge_id":"c1"}"#.into()
            }
        );
    }

    #[test]
    fn label_not_offered_fails_the_job_naming_the_offered_ones() {
        let job = job_offering(&["charged", "declined"]);
        for label in ["refunded", "error", "timeout"] {
            let report = Report::from_handler(&job, Ok(Ok(Outcome::new(label))));
            let Report::Fail { message } = report else {
                panic!("label `{label}` was not refused");
            };
            assert_eq!(
                message,
                format!(
                    "handler answered label `{label}`, which node `charge` does not offer \
                     (offered: charged, declined)"
                )
            );
        }
    }

    #[test]
    fn handler_error_fails_the_job_with_its_message() {
        let job = job_offering(&["charged"]);
        assert_eq!(
            Report::from_handler(&job, Ok(Err(HandlerError::new("card expired")))),
            Report::Fail {
                message: "card expired".into()
            }
        );
    }

    async fn charge_without_amount() -> Result<Outcome, HandlerError> {
        panic!("no amount for order {}", 7)
    }

    #[tokio::test]
    async fn handler_panic_fails_the_job_with_the_panic_message() {
        let job = job_offering(&["charged"]);
        let joined = tokio::spawn(charge_without_amount()).await;
        assert_eq!(
            Report::from_handler(&job, joined),
            Report::Fail {
                message: "handler panicked: no amount for order 7".into()
            }
        );
    }

    #[test]
    fn builder_refuses_configurations_that_cannot_work() {
        let ok = |_job: Job| async { Ok(Outcome::new("done")) };
        let cases = [
            (Worker::builder("http://127.0.0.1:7233"), "no handler"),
            (
                Worker::builder("http://127.0.0.1:7233")
                    .handler("a", ok)
                    .handler("a", ok),
                "two handlers",
            ),
            (
                Worker::builder("http://127.0.0.1:7233")
                    .handler("a", ok)
                    .concurrency(0),
                "concurrency",
            ),
            (
                Worker::builder("http://127.0.0.1:7233")
                    .handler("a", ok)
                    .identity(" "),
                "identity",
            ),
            (
                Worker::builder("no url").handler("a", ok),
                "invalid server url",
            ),
        ];
        for (builder, expected) in cases {
            let error = builder.build().expect_err(expected).to_string();
            assert!(error.contains(expected), "`{error}` lacks `{expected}`");
        }
    }

    #[test]
    fn default_identity_ends_with_the_pid() {
        let identity = default_identity();
        assert!(
            identity.ends_with(&format!("-{}", std::process::id())),
            "{identity}"
        );
    }
}
