//! Group commit: requests that arrive together are applied in one transaction. Each caller
//! queues its request and waits for its answer; a few runner tasks take whatever is queued, up
//! to [`MAX_BATCH`], and apply it as one batch. On an idle server a batch holds one request
//! and starts at once; under load batches grow by themselves while the runners are busy, so
//! PostgreSQL's per-statement and per-commit costs are shared by many requests.
//!
//! Two rules keep a batch's callers safe. A batch that failed as a whole is retried one
//! request at a time only when none of it had committed ([`BatchError::committed`]): a start
//! without an idempotency key must not be written twice. And a batch whose applier panics
//! answers its own callers INTERNAL; the runner, and every later batch, go on.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::oneshot;

use super::error::ServiceError;
use crate::store::StoreError;

/// Most requests applied in one transaction.
pub(crate) const MAX_BATCH: usize = 128;

/// Most batches of one kind in flight at once: two, so that one batch is decided while the
/// other commits, and requests arriving meanwhile pile up into large batches. With four,
/// completions in the bench's throughput workload went in batches of under five, and the
/// chain and throughput workloads ran about a quarter slower (docs/performance.md).
const MAX_RUNNERS: usize = 2;

/// A queued request and where its answer goes.
pub(crate) struct Queued<R, A> {
    /// The request.
    pub request: R,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<A, ServiceError>>,
}

/// A request that two of must not share a batch when they have the same key (a repeat must
/// see the first one's effect).
pub(crate) trait Keyed {
    /// The key; None for requests that never conflict.
    type Key: Eq + Hash;
    /// This request's key.
    fn key(&self) -> Option<Self::Key>;
}

/// A batch's answers, one per request in order; None for a request that must wait for the
/// next batch.
pub(crate) type Answers<A> = Vec<Option<Result<A, ServiceError>>>;

/// Why a whole batch failed, and whether part of it had committed by then.
#[derive(Debug)]
pub(crate) struct BatchError {
    /// What failed.
    pub error: ServiceError,
    /// True once any write of the batch has committed: it is then never applied again.
    pub committed: bool,
}

impl BatchError {
    /// A failure after some of the batch's writes committed.
    pub fn after_commit(error: impl Into<ServiceError>) -> Self {
        BatchError {
            error: error.into(),
            committed: true,
        }
    }
}

impl From<ServiceError> for BatchError {
    fn from(error: ServiceError) -> Self {
        BatchError {
            error,
            committed: false,
        }
    }
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for BatchError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        ServiceError::from(e).into()
    }
}

/// What applies a batch of `R` in one transaction.
pub(crate) trait Applies<R, A> {
    /// Applies the requests, answering each in order. An error after a commit must say so.
    fn apply_batch<'a>(
        &'a self,
        requests: &'a [&'a R],
    ) -> impl Future<Output = Result<Answers<A>, BatchError>> + Send + 'a;
}

/// Requests waiting for a batch, and how many runners are taking them.
pub(crate) struct Group<R, A> {
    state: Mutex<State<R, A>>,
}

struct State<R, A> {
    waiting: VecDeque<Queued<R, A>>,
    running: usize,
}

impl<R, A> Default for Group<R, A> {
    fn default() -> Self {
        Group {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                running: 0,
            }),
        }
    }
}

impl<R: Keyed, A> Group<R, A> {
    /// Queues a request; returns where its answer arrives, and true when the caller must start
    /// a runner (fewer than [`MAX_RUNNERS`] run).
    pub fn push(&self, request: R) -> (oneshot::Receiver<Result<A, ServiceError>>, bool) {
        let (reply, answer) = oneshot::channel();
        let mut state = self.state.lock().expect("group lock");
        state.waiting.push_back(Queued { request, reply });
        let start = state.running < MAX_RUNNERS;
        if start {
            state.running += 1;
        }
        (answer, start)
    }

    /// The next batch for a runner: up to [`MAX_BATCH`] requests with distinct keys, oldest
    /// first. None when nothing waits; the runner must stop then.
    pub fn take(&self) -> Option<Vec<Queued<R, A>>> {
        let mut state = self.state.lock().expect("group lock");
        let mut batch = Vec::new();
        let mut keys = HashSet::new();
        let mut left = VecDeque::new();
        while let Some(q) = state.waiting.pop_front() {
            if batch.len() == MAX_BATCH {
                left.push_back(q);
                break;
            }
            let repeated = q.request.key().is_some_and(|key| !keys.insert(key));
            if repeated {
                left.push_back(q);
            } else {
                batch.push(q);
            }
        }
        left.extend(state.waiting.drain(..));
        state.waiting = left;
        if batch.is_empty() {
            state.running -= 1;
            return None;
        }
        Some(batch)
    }

    /// Applies `batch` with `apply` and answers its callers. When the batch fails as a whole
    /// before anything committed (a database error), each request is applied alone, so one
    /// bad request fails alone; requests answered None go back to the queue.
    pub async fn apply(&self, what: &str, batch: Vec<Queued<R, A>>, applier: &impl Applies<R, A>) {
        let requests: Vec<&R> = batch.iter().map(|q| &q.request).collect();
        let answers = match guarded(what, applier, &requests).await {
            Ok(answers) => answers,
            Err(BatchError {
                error,
                committed: false,
            }) if batch.len() > 1 => {
                tracing::warn!(%error, size = batch.len(), "{what} batch failed; applying one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for request in &requests {
                    answers.push(match guarded(what, applier, &[*request]).await {
                        Ok(mut alone) => alone.pop().unwrap_or_else(|| {
                            Some(Err(ServiceError::Internal(format!(
                                "{what} was not applied"
                            ))))
                        }),
                        Err(failed) => Some(Err(failed.error)),
                    });
                }
                answers
            }
            Err(failed) => requests
                .iter()
                .map(|_| Some(Err(clone_error(&failed.error))))
                .collect(),
        };
        drop(requests);
        let mut again = Vec::new();
        for (q, answer) in batch.into_iter().zip(answers) {
            match answer {
                Some(answer) => {
                    let _ = q.reply.send(answer);
                }
                None => again.push(q),
            }
        }
        if !again.is_empty() {
            self.requeue(again);
        }
    }

    /// Puts requests back at the head of the queue, for the next batch.
    fn requeue(&self, again: Vec<Queued<R, A>>) {
        let mut state = self.state.lock().expect("group lock");
        for q in again.into_iter().rev() {
            state.waiting.push_front(q);
        }
    }
}

/// Queues `request` in `group` and waits for its answer; starts a runner, which applies
/// batches with `applier` until the queue is empty, when fewer than [`MAX_RUNNERS`] run.
/// `what` names a request in logs and errors ("completion").
pub(crate) async fn submit<R, A, S>(
    group: &Arc<Group<R, A>>,
    applier: &S,
    request: R,
    what: &'static str,
) -> Result<A, ServiceError>
where
    R: Keyed + Send + Sync + 'static,
    A: Send + 'static,
    S: Applies<R, A> + Clone + Send + Sync + 'static,
{
    let (reply, start_runner) = group.push(request);
    if start_runner {
        let group = group.clone();
        let applier = applier.clone();
        tokio::spawn(async move {
            let mut runner = Runner {
                group: &group,
                running: true,
            };
            while let Some(batch) = runner.next() {
                group.apply(what, batch, &applier).await;
            }
        });
    }
    answer(reply, what).await
}

/// A runner's place among the [`MAX_RUNNERS`]; given back when the queue is empty, or when
/// the runner ends any other way (its task is cancelled), so the places never run out.
struct Runner<'a, R, A> {
    group: &'a Group<R, A>,
    /// True until [`Group::take`] has given the place back.
    running: bool,
}

impl<R: Keyed, A> Runner<'_, R, A> {
    /// The next batch; None once the queue is empty (the place is given back then).
    fn next(&mut self) -> Option<Vec<Queued<R, A>>> {
        let batch = self.group.take();
        self.running = batch.is_some();
        batch
    }
}

impl<R, A> Drop for Runner<'_, R, A> {
    fn drop(&mut self) {
        if self.running
            && let Ok(mut state) = self.group.state.lock()
        {
            state.running -= 1;
        }
    }
}

/// Applies a batch, turning a panic of the applier into INTERNAL for this batch alone.
async fn guarded<R, A>(
    what: &str,
    applier: &impl Applies<R, A>,
    requests: &[&R],
) -> Result<Answers<A>, BatchError> {
    match AssertUnwindSafe(applier.apply_batch(requests))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                size = requests.len(),
                "{what} batch panicked; its callers get INTERNAL"
            );
            Err(BatchError::after_commit(ServiceError::Internal(format!(
                "applying a {what} panicked"
            ))))
        }
    }
}

/// The answer a caller waits for, or Unavailable when the server stopped first.
async fn answer<A>(
    answer: oneshot::Receiver<Result<A, ServiceError>>,
    what: &str,
) -> Result<A, ServiceError> {
    answer.await.map_err(|_| {
        ServiceError::Unavailable(format!(
            "the server stopped before the {what} was done; send it again"
        ))
    })?
}

/// The same error again, for every request a failure concerned.
pub(crate) fn clone_error(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Unavailable(m) => ServiceError::Unavailable(m.clone()),
        ServiceError::Internal(m) => ServiceError::Internal(m.clone()),
        other => ServiceError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req(Option<u32>);

    impl Keyed for Req {
        type Key = u32;
        fn key(&self) -> Option<u32> {
            self.0
        }
    }

    #[test]
    fn runners_start_up_to_the_limit_and_stop_when_the_queue_is_empty() {
        let group: Group<Req, ()> = Group::default();
        let mut answers = Vec::new();
        let started: Vec<bool> = (0..6)
            .map(|_| {
                let (answer, start) = group.push(Req(None));
                answers.push(answer);
                start
            })
            .collect();
        let expected: Vec<bool> = (0..6).map(|i| i < MAX_RUNNERS).collect();
        assert_eq!(started, expected);
        assert_eq!(group.take().map(|b| b.len()), Some(6));
        for _ in 0..MAX_RUNNERS {
            assert!(group.take().is_none());
        }
        let (_answer, start) = group.push(Req(None));
        assert!(
            start,
            "with every runner stopped, the next request starts one"
        );
    }

    #[test]
    fn a_repeated_key_waits_for_the_next_batch_and_order_is_kept() {
        let group: Group<Req, ()> = Group::default();
        let _answers: Vec<_> = [Some(1), Some(2), Some(1), None, None]
            .into_iter()
            .map(|k| group.push(Req(k)).0)
            .collect();
        let first: Vec<_> = group
            .take()
            .unwrap()
            .into_iter()
            .map(|q| q.request.0)
            .collect();
        assert_eq!(first, [Some(1), Some(2), None, None]);
        let second = group.take().unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].request.0, Some(1));
        group.requeue(second);
        assert_eq!(group.take().unwrap()[0].request.0, Some(1));
    }

    /// Applies batches by the requests' keys: 1 panics, 2 fails after its commit, 3 fails
    /// before it; counts the batches it was given.
    #[derive(Clone, Default)]
    struct Faulty {
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Applies<Req, u32> for Faulty {
        async fn apply_batch<'a>(
            &'a self,
            requests: &'a [&'a Req],
        ) -> Result<Answers<u32>, BatchError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let keys: Vec<Option<u32>> = requests.iter().map(|r| r.0).collect();
            if keys.contains(&Some(1)) {
                panic!("injected panic");
            }
            if keys.contains(&Some(2)) {
                return Err(BatchError::after_commit(ServiceError::Unavailable(
                    "read-back failed".into(),
                )));
            }
            if keys.contains(&Some(3)) && requests.len() > 1 {
                return Err(ServiceError::Unavailable("connection lost".into()).into());
            }
            Ok(requests
                .iter()
                .map(|r| Some(Ok(r.0.unwrap_or(0))))
                .collect())
        }
    }

    #[tokio::test]
    async fn a_panicking_batch_answers_internal_and_later_batches_still_run() {
        let group: Arc<Group<Req, u32>> = Arc::default();
        let applier = Faulty::default();
        for _ in 0..MAX_RUNNERS + 1 {
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                submit(&group, &applier, Req(Some(1)), "completion"),
            )
            .await
            .expect("a panic never hangs its caller");
            assert!(
                matches!(answer, Err(ServiceError::Internal(_))),
                "{answer:?}"
            );
        }
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            submit(&group, &applier, Req(Some(7)), "completion"),
        )
        .await
        .expect("runners are still there after the panics");
        assert_eq!(answer.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_batch_that_failed_after_its_commit_is_not_applied_again() {
        let group: Group<Req, u32> = Group::default();
        let applier = Faulty::default();
        let (first, _) = group.push(Req(Some(2)));
        let (second, _) = group.push(Req(None));
        group.apply("start", group.take().unwrap(), &applier).await;
        assert_eq!(applier.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        for answer in [first, second] {
            assert!(matches!(
                answer.await.unwrap(),
                Err(ServiceError::Unavailable(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_batch_that_failed_before_any_commit_is_applied_one_by_one() {
        let group: Group<Req, u32> = Group::default();
        let applier = Faulty::default();
        let (first, _) = group.push(Req(Some(3)));
        let (second, _) = group.push(Req(Some(4)));
        group.apply("start", group.take().unwrap(), &applier).await;
        assert_eq!(applier.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(first.await.unwrap().unwrap(), 3);
        assert_eq!(second.await.unwrap().unwrap(), 4);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch() {
        let group: Group<Req, ()> = Group::default();
        let _answers: Vec<_> = (0..MAX_BATCH + 3)
            .map(|_| group.push(Req(None)).0)
            .collect();
        assert_eq!(group.take().unwrap().len(), MAX_BATCH);
        assert_eq!(group.take().unwrap().len(), 3);
    }
}
