//! Wake-ups for waiting long polls and `AwaitWorkflow` calls. Waiters live in memory and hold
//! no database connection. A job created on this server while a poller of its operation waits
//! here is leased to that poller inside the creating transaction and handed over in memory
//! after the commit: no wake-up, no claim query. Other ready jobs are announced by
//! notifications (from any server); one wakes ONE poller of its operation, and a poller that
//! leases a full batch passes the wake-up on. Operations whose last claim found nothing are
//! remembered as empty until a notification says otherwise, so idle pollers run no queries.
//! A periodic re-check covers notifications lost while the listener reconnected.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::types::{LeasedJob, WorkflowView};
use crate::store::listen::{self, Notice};
use crate::store::{Pool, jobs};

/// One waiting caller.
#[derive(Debug, Default)]
struct Slot {
    /// Set by the first wake-up, so a slot queued under several operations is woken once.
    woken: AtomicBool,
    /// Wakes the waiting task (keeps a permit if it is not waiting yet).
    notify: Notify,
    /// A poller ready to take a job in memory: its worker identity, its operations (sorted)
    /// and where to send the job.
    handoff: Mutex<Option<Handoff>>,
    /// Set when the poller was taken for a job being created.
    reserved: AtomicBool,
    /// For a workflow watcher: the workflow as it finished on this server, when it did.
    finished: Mutex<Option<Arc<WorkflowView>>>,
}

/// A registered waiter; dropping it unregisters.
pub struct Waiter {
    slot: Arc<Slot>,
    keys: Vec<Key>,
    dispatcher: Arc<Dispatcher>,
    /// Where a job handed over in memory arrives, once armed.
    job: Option<oneshot::Receiver<LeasedJob>>,
    /// The dispatcher's epoch of emptiness when this waiter registered.
    epoch: u64,
}

/// Where a job for an armed poller goes.
#[derive(Debug)]
struct Handoff {
    worker: String,
    operations: Vec<String>,
    sender: oneshot::Sender<LeasedJob>,
}

/// How a poller's wait ended.
#[derive(Debug)]
pub enum Wake {
    /// A job was leased to it and handed over.
    Job(Box<LeasedJob>),
    /// Jobs may be ready: look.
    Woken,
    /// It was taken for a job that did not come to it after all (the creating transaction
    /// failed, or a claim made for it found too few jobs): look unless known empty.
    Dropped,
    /// Nothing came before the deadline (or the server is stopping).
    TimedOut,
}

/// A waiting poller taken for a job being created: the job is leased to its worker inside the
/// creating transaction and delivered after the commit. Dropping it (the transaction failed)
/// sends the poller back to look for jobs itself.
#[derive(Debug)]
pub struct Reservation {
    worker: String,
    sender: oneshot::Sender<LeasedJob>,
}

impl Reservation {
    /// The worker the job is leased to.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Hands the job over; gives it back when the poller has gone meanwhile.
    pub fn deliver(self, job: LeasedJob) -> Result<(), Box<LeasedJob>> {
        self.sender.send(job).map_err(Box::new)
    }
}

/// Operations believed to have no ready job, and a counter bumped by every notification that
/// may contradict that, so that a claim begun before the notification cannot mark its
/// operation empty after it.
#[derive(Debug, Default)]
struct Emptiness {
    operations: HashSet<String>,
    epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Operation(String),
    Workflow(Uuid),
}

/// How long a graph's latest version number is trusted without a notification: a safety net
/// for a notification that never came.
const LATEST_GRAPH_FRESH: Duration = Duration::from_secs(10);

/// The latest version number of graphs, as last read, and a counter bumped by every
/// notification that may make one stale, so that a read begun before it is not remembered.
#[derive(Debug, Default)]
struct LatestGraphs {
    versions: HashMap<String, (i32, Instant)>,
    epoch: u64,
}

/// In-memory registry of waiters, fed by notifications; and the latest graph versions, which
/// notifications invalidate.
#[derive(Debug)]
pub struct Dispatcher {
    /// Waiters by what they wait for, oldest first. Never held across an await.
    queues: Mutex<HashMap<Key, VecDeque<Arc<Slot>>>>,
    /// Server shutdown: every waiting call answers at once.
    shutdown: CancellationToken,
    /// What the last claims found empty.
    empty: Mutex<Emptiness>,
    /// Jobs leased to pollers that left before taking them; released by the service.
    orphans: mpsc::UnboundedSender<LeasedJob>,
    /// The receiving end of `orphans`, taken once by [`Dispatcher::take_orphans`].
    orphans_rx: Mutex<Option<mpsc::UnboundedReceiver<LeasedJob>>>,
    /// Latest graph versions, so that a start of "the latest" needs no read.
    latest_graphs: Mutex<LatestGraphs>,
    /// Workflows this server last wrote as RUNNING, with no notice since that they changed:
    /// every way out of RUNNING sends one (here, or from another server). An
    /// `AwaitWorkflow` for one of them waits without reading it first.
    running: Mutex<HashSet<Uuid>>,
    /// Since when this server's listener has been connected; None while it is not. The
    /// caches that notices invalidate (latest graphs, empty operations, running workflows)
    /// are trusted only once it has been up for longer than another server's notifier may
    /// go on believing that no one listens ([`listen::PEERS_FRESH`]).
    listening: Mutex<Option<Instant>>,
}

/// Most workflows remembered as running; past it the set starts again empty (forgetting is
/// always safe: an await then reads first).
const MAX_RUNNING: usize = 10_000;

impl Default for Dispatcher {
    fn default() -> Self {
        Dispatcher::new(CancellationToken::new())
    }
}

impl Waiter {
    /// Waits for a wake-up until `deadline` or server shutdown; true when woken.
    pub async fn wait_until(&self, deadline: Instant) -> bool {
        wait_slot(&self.slot, &self.keys, &self.dispatcher, deadline).await
    }

    /// The workflow as it completed or was cancelled on this server, once it has (it never
    /// changes after that); None when it was not, or when another server finished it.
    pub fn finished(&self) -> Option<Arc<WorkflowView>> {
        self.slot.finished.lock().expect("slot lock").clone()
    }

    /// The dispatcher's epoch of emptiness when this waiter registered.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Lets a job be handed to this poller in memory, leased to `worker`. Call it once the
    /// poller has found nothing itself, so jobs go to pollers that are really waiting.
    pub fn arm(&mut self, worker: &str) {
        let (sender, receiver) = oneshot::channel();
        let mut operations: Vec<String> = self
            .keys
            .iter()
            .filter_map(|k| match k {
                Key::Operation(op) => Some(op.clone()),
                Key::Workflow(_) => None,
            })
            .collect();
        operations.sort();
        *self.slot.handoff.lock().expect("slot lock") = Some(Handoff {
            worker: worker.to_owned(),
            operations,
            sender,
        });
        self.job = Some(receiver);
    }

    /// Waits for a job handed over, a wake-up, the deadline or server shutdown. A poller taken
    /// for a job keeps waiting past the deadline until the job's transaction has ended.
    pub async fn wait_for_job(&mut self, deadline: Instant) -> Wake {
        let Waiter {
            slot,
            keys,
            dispatcher,
            job,
            ..
        } = self;
        let Some(receiver) = job.as_mut() else {
            return match wait_slot(slot, keys, dispatcher, deadline).await {
                true => Wake::Woken,
                false => Wake::TimedOut,
            };
        };
        let woken = tokio::select! {
            handed = &mut *receiver => return handed_over(job, handed),
            woken = wait_slot(slot, keys, dispatcher, deadline) => woken,
        };
        if slot.reserved.load(Ordering::Acquire) {
            let handed = (&mut *receiver).await;
            return handed_over(job, handed);
        }
        if woken { Wake::Woken } else { Wake::TimedOut }
    }
}

/// What a handed-over job's channel said: the job, or (its transaction failed) look again.
fn handed_over(
    job: &mut Option<oneshot::Receiver<LeasedJob>>,
    handed: Result<LeasedJob, oneshot::error::RecvError>,
) -> Wake {
    *job = None;
    match handed {
        Ok(leased) => Wake::Job(Box::new(leased)),
        Err(_) => Wake::Dropped,
    }
}

/// Waits on a slot for a wake-up until `deadline` or server shutdown; true when woken.
async fn wait_slot(slot: &Slot, keys: &[Key], dispatcher: &Dispatcher, deadline: Instant) -> bool {
    let woken = tokio::select! {
        result = tokio::time::timeout_at(deadline, slot.notify.notified()) => result.is_ok(),
        () = dispatcher.shutdown.cancelled() => false,
    };
    if !woken && !slot.reserved.load(Ordering::Acquire) && slot.woken.swap(true, Ordering::AcqRel) {
        // Woken just as the wait ran out: hand the wake-up to another waiter, or the job
        // would wait for the periodic re-check.
        for key in keys {
            dispatcher.wake(key);
        }
    }
    woken
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.job.take() {
            // A job handed over to a poller that stopped waiting (its caller went away) must
            // go back to the queue.
            receiver.close();
            if let Ok(job) = receiver.try_recv() {
                let _ = self.dispatcher.orphans.send(job);
            }
        }
        let mut queues = self.dispatcher.queues.lock().expect("dispatcher lock");
        for key in &self.keys {
            if let Some(queue) = queues.get_mut(key) {
                queue.retain(|s| !Arc::ptr_eq(s, &self.slot));
                if queue.is_empty() {
                    queues.remove(key);
                }
            }
        }
    }
}

impl Dispatcher {
    /// A dispatcher whose waiters all answer when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        let (orphans, orphans_rx) = mpsc::unbounded_channel();
        Dispatcher {
            queues: Mutex::default(),
            shutdown,
            empty: Mutex::default(),
            orphans,
            orphans_rx: Mutex::new(Some(orphans_rx)),
            latest_graphs: Mutex::default(),
            running: Mutex::default(),
            listening: Mutex::default(),
        }
    }

    /// True when every notice another server sends reaches this one: the listener is
    /// connected, and has been for longer than the other notifiers' look for listeners.
    fn hears_everything(&self) -> bool {
        self.listening
            .lock()
            .expect("dispatcher lock")
            .is_some_and(|since| since.elapsed() > listen::PEERS_FRESH)
    }

    /// Records whether this server just wrote workflow `id` as RUNNING.
    pub fn wrote_workflow(&self, id: Uuid, running: bool) {
        let mut known = self.running.lock().expect("dispatcher lock");
        if !running {
            known.remove(&id);
            return;
        }
        if known.len() >= MAX_RUNNING {
            known.clear();
        }
        known.insert(id);
    }

    /// True when this server last wrote workflow `id` as RUNNING and no notice has said it
    /// changed since.
    pub fn known_running(&self, id: Uuid) -> bool {
        self.hears_everything() && self.running.lock().expect("dispatcher lock").contains(&id)
    }

    /// The latest version of graph `name`, when known and fresh; otherwise the epoch to hand
    /// to [`Dispatcher::remember_latest_graph`] with the version read.
    pub fn latest_graph(&self, name: &str) -> Result<i32, u64> {
        let hears_everything = self.hears_everything();
        let latest = self.latest_graphs.lock().expect("dispatcher lock");
        match latest.versions.get(name) {
            Some(&(version, at)) if hears_everything && at.elapsed() < LATEST_GRAPH_FRESH => {
                Ok(version)
            }
            _ => Err(latest.epoch),
        }
    }

    /// Remembers the latest version of graph `name`, read at `epoch`, unless a notification
    /// has come since.
    pub fn remember_latest_graph(&self, name: &str, version: i32, epoch: u64) {
        let mut latest = self.latest_graphs.lock().expect("dispatcher lock");
        if latest.epoch == epoch {
            latest
                .versions
                .insert(name.to_owned(), (version, Instant::now()));
        }
    }

    /// Forgets the latest version of `name`, or of every graph.
    fn forget_latest_graph(&self, name: Option<&str>) {
        let mut latest = self.latest_graphs.lock().expect("dispatcher lock");
        latest.epoch += 1;
        match name {
            Some(name) => {
                latest.versions.remove(name);
            }
            None => latest.versions.clear(),
        }
    }

    /// Registers a poller for `operations`. Register BEFORE checking for jobs, so a job
    /// created in between still wakes it.
    pub fn register(self: &Arc<Self>, operations: &[String]) -> Waiter {
        self.enqueue(
            operations
                .iter()
                .map(|o| Key::Operation(o.clone()))
                .collect(),
        )
    }

    /// Takes the oldest armed poller of `operation` waiting here, for a job about to be
    /// created; None when none waits.
    pub fn reserve(&self, operation: &str) -> Option<Reservation> {
        self.take_armed(&Key::Operation(operation.to_owned()), 1, |_| true)
            .pop()
    }

    /// Takes up to `n` armed pollers waiting here for exactly `operations`, oldest first, so
    /// that one claim query can lease jobs for them too.
    pub fn reserve_peers(&self, operations: &[String], n: usize) -> Vec<Reservation> {
        let mut wanted = operations.to_vec();
        wanted.sort();
        let Some(first) = wanted.first() else {
            return Vec::new();
        };
        self.take_armed(&Key::Operation(first.clone()), n, |h| {
            h.operations == wanted
        })
    }

    /// Takes up to `n` pollers queued under `key` that are armed with a hand-over `accept`
    /// agrees to and not woken yet, oldest first; each is marked reserved.
    fn take_armed(
        &self,
        key: &Key,
        n: usize,
        accept: impl Fn(&Handoff) -> bool,
    ) -> Vec<Reservation> {
        let mut queues = self.queues.lock().expect("dispatcher lock");
        let Some(queue) = queues.get_mut(key) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut i = 0;
        while i < queue.len() && taken.len() < n {
            let wanted = queue[i]
                .handoff
                .lock()
                .expect("slot lock")
                .as_ref()
                .is_some_and(&accept);
            if !wanted {
                i += 1;
                continue;
            }
            let Some(slot) = queue.remove(i) else {
                break;
            };
            if slot.woken.swap(true, Ordering::AcqRel) {
                continue;
            }
            slot.reserved.store(true, Ordering::Release);
            if let Some(h) = slot.handoff.lock().expect("slot lock").take() {
                taken.push(Reservation {
                    worker: h.worker,
                    sender: h.sender,
                });
            }
        }
        if queue.is_empty() {
            queues.remove(key);
        }
        taken
    }

    /// True when the last claims found every one of `operations` empty and nothing said
    /// otherwise since: a new poll need not look.
    pub fn known_empty(&self, operations: &[String]) -> bool {
        if !self.hears_everything() {
            return false;
        }
        let empty = self.empty.lock().expect("dispatcher lock");
        operations.iter().all(|o| empty.operations.contains(o))
    }

    /// Remembers that a claim begun at `epoch` found nothing more for `operations`, unless a
    /// notification came since.
    pub fn mark_empty(&self, operations: &[String], epoch: u64) {
        let mut empty = self.empty.lock().expect("dispatcher lock");
        if empty.epoch == epoch {
            empty.operations.extend(operations.iter().cloned());
        }
    }

    /// `operation` may have ready jobs again.
    fn not_empty(&self, operation: &str) {
        let mut empty = self.empty.lock().expect("dispatcher lock");
        empty.epoch += 1;
        empty.operations.remove(operation);
    }

    /// Jobs leased to pollers that left before taking them, for the service to release; the
    /// first caller gets them.
    pub fn take_orphans(&self) -> Option<mpsc::UnboundedReceiver<LeasedJob>> {
        self.orphans_rx.lock().expect("dispatcher lock").take()
    }

    /// Sends a job whose poller has gone back to be released.
    pub fn orphan(&self, job: LeasedJob) {
        let _ = self.orphans.send(job);
    }

    /// Registers a waiter for a workflow to stop running.
    pub fn watch_workflow(self: &Arc<Self>, id: Uuid) -> Waiter {
        self.enqueue(vec![Key::Workflow(id)])
    }

    fn enqueue(self: &Arc<Self>, keys: Vec<Key>) -> Waiter {
        let epoch = self.empty.lock().expect("dispatcher lock").epoch;
        let slot = Arc::new(Slot::default());
        let mut queues = self.queues.lock().expect("dispatcher lock");
        for key in &keys {
            queues
                .entry(key.clone())
                .or_default()
                .push_back(slot.clone());
        }
        drop(queues);
        Waiter {
            slot,
            keys,
            dispatcher: self.clone(),
            job: None,
            epoch,
        }
    }

    /// A workflow completed or was cancelled on this server: wakes its watchers with it.
    pub fn workflow_finished(&self, view: Arc<WorkflowView>) {
        self.wrote_workflow(view.workflow.id, false);
        let key = Key::Workflow(view.workflow.id);
        let mut queues = self.queues.lock().expect("dispatcher lock");
        for slot in queues.remove(&key).unwrap_or_default() {
            *slot.finished.lock().expect("slot lock") = Some(view.clone());
            if !slot.woken.swap(true, Ordering::AcqRel) {
                slot.notify.notify_one();
            }
        }
    }

    /// Wakes one poller of each operation.
    pub fn wake_ops(&self, operations: &[String]) {
        for op in operations {
            self.wake(&Key::Operation(op.clone()));
        }
    }

    /// Number of pollers waiting on this server, for metrics.
    /// Counts armed pollers only: one still looking for jobs itself is not waiting yet.
    pub fn waiting_pollers(&self) -> usize {
        let queues = self.queues.lock().expect("dispatcher lock");
        let mut waiting: Vec<&Arc<Slot>> = queues
            .iter()
            .filter(|(k, _)| matches!(k, Key::Operation(_)))
            .flat_map(|(_, q)| q.iter())
            .filter(|s| s.handoff.lock().expect("slot lock").is_some())
            .collect();
        // A poller of several operations waits in several queues.
        waiting.sort_by_key(|s| Arc::as_ptr(s));
        waiting.dedup_by_key(|s| Arc::as_ptr(*s));
        waiting.len()
    }

    /// Wakes the oldest not-yet-woken waiter for `key`; for a workflow, every waiter.
    fn wake(&self, key: &Key) {
        let mut queues = self.queues.lock().expect("dispatcher lock");
        let Some(queue) = queues.get_mut(key) else {
            return;
        };
        let all = matches!(key, Key::Workflow(_));
        while let Some(slot) = queue.pop_front() {
            if !slot.woken.swap(true, Ordering::AcqRel) {
                slot.notify.notify_one();
                if !all {
                    break;
                }
            }
        }
        if queue.is_empty() {
            queues.remove(key);
        }
    }

    /// Acts on a notice: wakes pollers (at once, or when a delayed job becomes available),
    /// workflow watchers, or everyone after a reconnect.
    pub fn deliver(self: &Arc<Self>, notice: Notice) {
        match notice {
            Notice::JobReady {
                operation,
                available_at,
                count,
            } => {
                let delay = (available_at - Utc::now()).to_std().unwrap_or_default();
                if delay.is_zero() {
                    self.ready(&operation, count);
                } else {
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        me.ready(&operation, count);
                    });
                }
            }
            Notice::WorkflowChanged(id) => {
                self.wrote_workflow(id, false);
                self.wake(&Key::Workflow(id));
            }
            Notice::GraphStored(name) => self.forget_latest_graph(Some(&name)),
            Notice::Connected => {
                *self.listening.lock().expect("dispatcher lock") = Some(Instant::now());
                // Notifications may have been lost meanwhile.
                self.forget_latest_graph(None);
                self.running.lock().expect("dispatcher lock").clear();
                self.wake_everyone();
            }
            Notice::Disconnected => {
                *self.listening.lock().expect("dispatcher lock") = None;
            }
        }
    }

    /// `count` jobs of `operation` are ready: wake as many pollers.
    fn ready(&self, operation: &str, count: u32) {
        self.not_empty(operation);
        let key = Key::Operation(operation.to_owned());
        for _ in 0..count {
            self.wake(&key);
        }
    }

    fn wake_everyone(&self) {
        {
            let mut empty = self.empty.lock().expect("dispatcher lock");
            empty.epoch += 1;
            empty.operations.clear();
        }
        let keys: Vec<Key> = self
            .queues
            .lock()
            .expect("dispatcher lock")
            .keys()
            .cloned()
            .collect();
        for key in keys {
            while self
                .queues
                .lock()
                .expect("dispatcher lock")
                .contains_key(&key)
            {
                self.wake(&key);
            }
        }
    }

    fn waiting_operations(&self) -> Vec<String> {
        let queues = self.queues.lock().expect("dispatcher lock");
        queues
            .keys()
            .filter_map(|k| match k {
                Key::Operation(op) => Some(op.clone()),
                Key::Workflow(_) => None,
            })
            .collect()
    }

    /// Consumes notifications until shutdown: wakes pollers (at once, or when a delayed job
    /// becomes available) and workflow watchers; every `recheck` asks the database whether
    /// waited-for operations have ready jobs, in case a notification was lost.
    pub async fn run(
        self: Arc<Self>,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        pool: Pool,
        recheck: Duration,
    ) {
        let shutdown = self.shutdown.clone();
        let mut ticker = tokio::time::interval(recheck);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(notice) => self.deliver(notice),
                    None => return,
                },
                _ = ticker.tick() => self.recheck(&pool).await,
            }
        }
    }

    async fn recheck(&self, pool: &Pool) {
        let operations = self.waiting_operations();
        if operations.is_empty() {
            return;
        }
        let ready = match pool.get().await {
            Ok(client) => jobs::ready_operations(&client, &operations).await,
            Err(e) => Err(e.into()),
        };
        match ready {
            Ok(ready) => {
                for operation in ready {
                    self.ready(&operation, 1);
                }
            }
            Err(error) => tracing::warn!(%error, "re-check for ready jobs failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn one_ready_job_wakes_exactly_one_poller() {
        let d = Arc::new(Dispatcher::default());
        let waiters: Vec<Waiter> = (0..5).map(|_| d.register(&ops(&["a"]))).collect();
        d.wake(&Key::Operation("a".into()));
        let deadline = Instant::now() + Duration::from_millis(20);
        let mut woken = 0;
        for w in &waiters {
            if w.wait_until(deadline).await {
                woken += 1;
            }
        }
        assert_eq!(woken, 1);
    }

    #[tokio::test]
    async fn a_poller_of_two_operations_is_woken_once() {
        let d = Arc::new(Dispatcher::default());
        let both = d.register(&ops(&["a", "b"]));
        let other = d.register(&ops(&["b"]));
        d.wake(&Key::Operation("a".into()));
        d.wake(&Key::Operation("b".into()));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(both.wait_until(deadline).await);
        assert!(
            other.wait_until(deadline).await,
            "the second wake-up goes to the other poller"
        );
    }

    #[tokio::test]
    async fn only_armed_pollers_count_as_waiting_and_dropping_unregisters() {
        let d = Arc::new(Dispatcher::default());
        let mut w = d.register(&ops(&["a", "b"]));
        assert_eq!(d.waiting_pollers(), 0, "still looking for jobs itself");
        w.arm("w");
        assert_eq!(d.waiting_pollers(), 1, "counted once across its operations");
        drop(w);
        assert_eq!(d.waiting_pollers(), 0);
    }

    fn job(id: i64) -> LeasedJob {
        use crate::store::jobs::{JobRecord, JobWithWorkflow};
        LeasedJob {
            claimed: JobWithWorkflow {
                job: JobRecord::leased_for_test(id, Uuid::now_v7(), Uuid::new_v4(), Utc::now()),
                graph_name: "g".into(),
                graph_version: 1,
                vars: serde_json::json!({}),
                input: serde_json::json!({}),
            },
            params: serde_json::Map::new(),
            labels: vec!["done".into()],
            heartbeat_interval: None,
        }
    }

    #[tokio::test]
    async fn a_job_goes_to_the_oldest_armed_poller_only() {
        let d = Arc::new(Dispatcher::default());
        let unarmed = d.register(&ops(&["a"]));
        let mut first = d.register(&ops(&["a"]));
        first.arm("w1");
        let mut second = d.register(&ops(&["a"]));
        second.arm("w2");
        let reservation = d.reserve("a").expect("an armed poller waits");
        assert_eq!(reservation.worker(), "w1");
        reservation.deliver(job(7)).expect("the poller is there");
        let deadline = Instant::now() + Duration::from_millis(20);
        match first.wait_for_job(deadline).await {
            Wake::Job(job) => assert_eq!(job.claimed.job.id, 7),
            other => panic!("expected the job, got {other:?}"),
        }
        assert!(matches!(
            second.wait_for_job(deadline).await,
            Wake::TimedOut
        ));
        assert!(
            !unarmed.wait_until(deadline).await,
            "unarmed pollers are not taken"
        );
        assert!(d.reserve("b").is_none());
    }

    #[tokio::test]
    async fn peers_are_armed_pollers_of_exactly_the_same_operations_oldest_first() {
        let d = Arc::new(Dispatcher::default());
        let mut other = d.register(&ops(&["a", "b"]));
        other.arm("other");
        let _unarmed = d.register(&ops(&["a"]));
        let mut peers = Vec::new();
        for i in 0..3 {
            let mut w = d.register(&ops(&["a"]));
            w.arm(&format!("p{i}"));
            peers.push(w);
        }
        let taken = d.reserve_peers(&ops(&["a"]), 2);
        let workers: Vec<&str> = taken.iter().map(Reservation::worker).collect();
        assert_eq!(workers, ["p0", "p1"]);
        let rest = d.reserve_peers(&ops(&["a"]), 10);
        assert_eq!(
            rest.len(),
            1,
            "one peer left; `other` polls for more operations"
        );
        assert_eq!(d.reserve_peers(&ops(&["b", "a"]), 10)[0].worker(), "other");
        drop(taken);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(
            matches!(peers[0].wait_for_job(deadline).await, Wake::Dropped),
            "a peer whose claim found nothing looks again"
        );
    }

    #[tokio::test]
    async fn a_reserved_poller_waits_past_its_deadline_for_the_job() {
        let d = Arc::new(Dispatcher::default());
        let mut waiter = d.register(&ops(&["a"]));
        waiter.arm("w");
        let reservation = d.reserve("a").expect("armed");
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reservation.deliver(job(3)).expect("still waiting");
        });
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(matches!(waiter.wait_for_job(deadline).await, Wake::Job(_)));
        late.await.expect("delivered");
    }

    #[tokio::test]
    async fn a_dropped_reservation_sends_the_poller_to_look() {
        let d = Arc::new(Dispatcher::default());
        let mut waiter = d.register(&ops(&["a"]));
        waiter.arm("w");
        drop(d.reserve("a").expect("armed"));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(waiter.wait_for_job(deadline).await, Wake::Dropped));
    }

    #[tokio::test]
    async fn a_job_handed_to_a_poller_that_left_is_orphaned() {
        let d = Arc::new(Dispatcher::default());
        let mut orphans = d.take_orphans().expect("first taker");
        let mut waiter = d.register(&ops(&["a"]));
        waiter.arm("w");
        let reservation = d.reserve("a").expect("armed");
        reservation.deliver(job(9)).expect("not dropped yet");
        drop(waiter);
        let orphan = orphans.try_recv().expect("the job comes back");
        assert_eq!(orphan.claimed.job.id, 9);

        let mut gone = d.register(&ops(&["a"]));
        gone.arm("w");
        let reservation = d.reserve("a").expect("armed");
        drop(gone);
        assert!(
            reservation.deliver(job(10)).is_err(),
            "delivery to a gone poller fails"
        );
    }

    /// A dispatcher whose listener has been connected for longer than a look interval, so
    /// it trusts its caches (time is paused).
    async fn listening() -> Arc<Dispatcher> {
        tokio::time::pause();
        let d = Arc::new(Dispatcher::default());
        d.deliver(Notice::Connected);
        tokio::time::advance(listen::PEERS_FRESH + Duration::from_millis(1)).await;
        d
    }

    #[tokio::test]
    async fn caches_fed_by_notices_are_not_trusted_until_the_listener_has_been_up_a_look_interval()
    {
        tokio::time::pause();
        let d = Arc::new(Dispatcher::default());
        let (a, id) = (ops(&["a"]), Uuid::now_v7());
        let fill = |d: &Dispatcher| {
            d.wrote_workflow(id, true);
            let epoch = d.empty.lock().unwrap().epoch;
            d.mark_empty(&a, epoch);
            let epoch = d.latest_graph("g").unwrap_err();
            d.remember_latest_graph("g", 3, epoch);
        };
        let trusted = |d: &Dispatcher| {
            [
                d.known_running(id),
                d.known_empty(&a),
                d.latest_graph("g").is_ok(),
            ]
        };
        fill(&d);
        assert_eq!(trusted(&d), [false; 3], "no listener yet");
        d.deliver(Notice::Connected);
        fill(&d);
        tokio::time::advance(listen::PEERS_FRESH / 2).await;
        assert_eq!(
            trusted(&d),
            [false; 3],
            "another server's notifier may still believe no one listens"
        );
        tokio::time::advance(listen::PEERS_FRESH).await;
        assert_eq!(
            trusted(&d),
            [true; 3],
            "every notice reaches this server now"
        );
        d.deliver(Notice::Disconnected);
        assert_eq!(
            trusted(&d),
            [false; 3],
            "notices are lost while disconnected"
        );
    }

    #[tokio::test]
    async fn emptiness_holds_until_a_notification_and_ignores_stale_claims() {
        let d = listening().await;
        let a = ops(&["a"]);
        assert!(!d.known_empty(&a), "nothing is known at first");
        let waiter = d.register(&a);
        d.mark_empty(&a, waiter.epoch());
        assert!(d.known_empty(&a));
        assert!(
            !d.known_empty(&ops(&["a", "b"])),
            "every operation must be known empty"
        );
        d.deliver(Notice::JobReady {
            operation: "a".into(),
            available_at: Utc::now(),
            count: 1,
        });
        assert!(!d.known_empty(&a), "a ready job makes it non-empty");
        // A claim that began before that notification must not mark it empty again.
        d.mark_empty(&a, waiter.epoch());
        assert!(!d.known_empty(&a));
        let fresh = d.register(&a);
        d.mark_empty(&a, fresh.epoch());
        assert!(d.known_empty(&a));
        d.deliver(Notice::Connected);
        tokio::time::advance(listen::PEERS_FRESH * 2).await;
        assert!(!d.known_empty(&a), "a reconnect forgets everything");
    }

    #[tokio::test]
    async fn a_workflow_is_known_running_until_a_notice_says_otherwise() {
        let d = listening().await;
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for id in [a, b, c] {
            d.wrote_workflow(id, true);
        }
        assert!(d.known_running(a) && d.known_running(b) && d.known_running(c));
        d.wrote_workflow(a, false);
        assert!(!d.known_running(a), "written as no longer running");
        d.deliver(Notice::WorkflowChanged(b));
        assert!(!d.known_running(b), "changed, here or on another server");
        assert!(d.known_running(c));
        d.deliver(Notice::Connected);
        tokio::time::advance(listen::PEERS_FRESH * 2).await;
        assert!(
            !d.known_running(c),
            "notices may have been lost while reconnecting"
        );
    }

    #[tokio::test]
    async fn workflow_change_wakes_every_watcher() {
        let d = Arc::new(Dispatcher::default());
        let id = Uuid::now_v7();
        let a = d.watch_workflow(id);
        let b = d.watch_workflow(id);
        d.wake(&Key::Workflow(id));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(a.wait_until(deadline).await);
        assert!(b.wait_until(deadline).await);
    }
}
