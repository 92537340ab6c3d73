//! Prometheus metrics: every metric name lives here. Counters are updated on the hot path;
//! gauges that need the database (queue depth, workflows by status) are read when scraped.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    jobs_created: Family<Labels, Counter>,
    jobs_completed: Family<Labels, Counter>,
    jobs_timed_out: Family<Labels, Counter>,
    jobs_leased: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    poll_wait: Histogram,
    transition: Histogram,
    queue_depth: Family<Labels, Gauge>,
    workflows: Family<Labels, Gauge>,
    waiting_pollers: Gauge,
    claim_queries: Counter,
    poller_wakeups: Counter,
    completion_batch: Histogram,
    completions: Family<Labels, Counter>,
    sweep_failures: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rondo");
        let jobs_created = Family::<Labels, Counter>::default();
        let jobs_completed = Family::<Labels, Counter>::default();
        let jobs_timed_out = Family::<Labels, Counter>::default();
        let jobs_leased = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let poll_wait = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let transition = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let queue_depth = Family::<Labels, Gauge>::default();
        let workflows = Family::<Labels, Gauge>::default();
        let waiting_pollers = Gauge::default();
        let claim_queries = Counter::default();
        let poller_wakeups = Counter::default();
        let completion_batch = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let completions = Family::<Labels, Counter>::default();
        let sweep_failures = Family::<Labels, Counter>::default();
        registry.register(
            "sweep_failures",
            "Sweep items that failed and were isolated (their workflow made STUCK), by kind",
            sweep_failures.clone(),
        );
        registry.register(
            "jobs_created",
            "Jobs created, by operation",
            jobs_created.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs ended with a label (retries show as the retry edge's label), by operation and label",
            jobs_completed.clone(),
        );
        registry.register(
            "jobs_timed_out",
            "Leases that ran out, by operation",
            jobs_timed_out.clone(),
        );
        registry.register(
            "jobs_leased",
            "Jobs handed to workers (started), by operation",
            jobs_leased.clone(),
        );
        registry.register(
            "retries",
            "Retry edges taken within their budget, by node",
            retries.clone(),
        );
        registry.register(
            "poll_wait_seconds",
            "Time a long poll waited before answering",
            poll_wait.clone(),
        );
        registry.register(
            "transition_seconds",
            "Time to decide and write one step inside its transaction",
            transition.clone(),
        );
        registry.register(
            "queue_depth",
            "Ready jobs by operation",
            queue_depth.clone(),
        );
        registry.register("workflows", "Workflows by status", workflows.clone());
        registry.register(
            "waiting_pollers",
            "Long polls waiting on this server (they hold no database connection)",
            waiting_pollers.clone(),
        );
        registry.register(
            "claim_queries",
            "Claim queries run for long polls (an idle poller should run none)",
            claim_queries.clone(),
        );
        registry.register(
            "poller_wakeups",
            "Waiting long polls woken, by a new job or the safety re-check",
            poller_wakeups.clone(),
        );
        registry.register(
            "completion_batch_size",
            "Completions applied per transaction (group commit)",
            completion_batch.clone(),
        );
        registry.register(
            "completions",
            "Completions written, by path: `warm` (decided from memory, one statement) or \
             `locked` (rows read and locked first)",
            completions.clone(),
        );
        Metrics {
            registry,
            jobs_created,
            jobs_completed,
            jobs_timed_out,
            jobs_leased,
            retries,
            poll_wait,
            transition,
            queue_depth,
            workflows,
            waiting_pollers,
            claim_queries,
            poller_wakeups,
            completion_batch,
            completions,
            sweep_failures,
        }
    }
}

impl Metrics {
    /// A job of `operation` was created.
    pub fn job_created(&self, operation: &str) {
        self.jobs_created
            .get_or_create(&vec![("operation", operation.to_owned())])
            .inc();
    }

    /// A job of `operation` ended with `label`.
    pub fn job_completed(&self, operation: &str, label: &str) {
        let labels = vec![
            ("operation", operation.to_owned()),
            ("label", label.to_owned()),
        ];
        self.jobs_completed.get_or_create(&labels).inc();
    }

    /// A lease of `operation` ran out.
    pub fn job_timed_out(&self, operation: &str) {
        self.jobs_timed_out
            .get_or_create(&vec![("operation", operation.to_owned())])
            .inc();
    }

    /// A job of `operation` was leased to a worker.
    pub fn job_leased(&self, operation: &str) {
        self.jobs_leased
            .get_or_create(&vec![("operation", operation.to_owned())])
            .inc();
    }

    /// A retry edge was taken from `node`.
    pub fn retried(&self, node: &str) {
        self.retries
            .get_or_create(&vec![("node", node.to_owned())])
            .inc();
    }

    /// A long poll answered after `waited`.
    pub fn poll_wait(&self, waited: Duration) {
        self.poll_wait.observe(waited.as_secs_f64());
    }

    /// A step took `took` inside its transaction.
    pub fn transition(&self, took: Duration) {
        self.transition.observe(took.as_secs_f64());
    }

    /// Records how many long polls wait on this server now.
    pub fn set_waiting_pollers(&self, n: usize) {
        self.waiting_pollers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A long poll ran a claim query.
    pub fn claim_query(&self) {
        self.claim_queries.inc();
    }

    /// A waiting long poll was woken.
    pub fn poller_woken(&self) {
        self.poller_wakeups.inc();
    }

    /// A transaction applied `size` completions, `written` of them successfully, by `path`
    /// (`warm` or `locked`).
    pub fn completion_batch(&self, size: usize, path: &'static str, written: usize) {
        self.completion_batch.observe(size as f64);
        self.completions
            .get_or_create(&vec![("path", path.to_owned())])
            .inc_by(written as u64);
    }

    /// A sweep item of `kind` failed and was isolated.
    pub fn sweep_failed(&self, kind: &'static str) {
        self.sweep_failures
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Encodes everything in the Prometheus text format, with fresh database gauges.
    pub fn encode(&self, queue_depth: &[(String, i64)], workflows: &[(String, i64)]) -> String {
        self.queue_depth.clear();
        for (op, n) in queue_depth {
            self.queue_depth
                .get_or_create(&vec![("operation", op.clone())])
                .set(*n);
        }
        self.workflows.clear();
        for (status, n) in workflows {
            self.workflows
                .get_or_create(&vec![("status", status.clone())])
                .set(*n);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
