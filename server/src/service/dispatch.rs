//! Wake-ups for waiting long polls and `AwaitWorkflow` calls. Waiters live in memory and hold
//! no database connection; PostgreSQL notifications (from any server) wake them. One ready job
//! wakes ONE poller of its operation; a poller that leases a full batch passes the wake-up on.
//! A periodic re-check covers notifications lost while the listener reconnected.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::listen::Notice;
use crate::store::{Pool, jobs};

/// One waiting caller.
#[derive(Debug, Default)]
struct Slot {
    /// Set by the first wake-up, so a slot queued under several operations is woken once.
    woken: AtomicBool,
    /// Wakes the waiting task (keeps a permit if it is not waiting yet).
    notify: Notify,
}

/// A registered waiter; dropping it unregisters.
pub struct Waiter {
    slot: Arc<Slot>,
    keys: Vec<Key>,
    dispatcher: Arc<Dispatcher>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Operation(String),
    Workflow(Uuid),
}

/// In-memory registry of waiters, fed by notifications.
#[derive(Debug, Default)]
pub struct Dispatcher {
    /// Waiters by what they wait for, oldest first. Never held across an await.
    queues: Mutex<HashMap<Key, VecDeque<Arc<Slot>>>>,
    /// Server shutdown: every waiting call answers at once.
    shutdown: CancellationToken,
}

impl Waiter {
    /// Waits for a wake-up until `deadline` or server shutdown; true when woken.
    pub async fn wait_until(&self, deadline: Instant) -> bool {
        let woken = tokio::select! {
            result = tokio::time::timeout_at(deadline, self.slot.notify.notified()) => result.is_ok(),
            () = self.dispatcher.shutdown.cancelled() => false,
        };
        if !woken && self.slot.woken.swap(true, Ordering::AcqRel) {
            // Woken just as the wait ran out: hand the wake-up to another waiter, or the job
            // would wait for the periodic re-check.
            for key in &self.keys {
                self.dispatcher.wake(key);
            }
        }
        woken
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
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
        Dispatcher {
            queues: Mutex::default(),
            shutdown,
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

    /// Registers a waiter for a workflow to stop running.
    pub fn watch_workflow(self: &Arc<Self>, id: Uuid) -> Waiter {
        self.enqueue(vec![Key::Workflow(id)])
    }

    fn enqueue(self: &Arc<Self>, keys: Vec<Key>) -> Waiter {
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
        }
    }

    /// Wakes one poller of each operation.
    pub fn wake_ops(&self, operations: &[String]) {
        for op in operations {
            self.wake(&Key::Operation(op.clone()));
        }
    }

    /// Number of pollers waiting on this server, for metrics.
    pub fn waiting_pollers(&self) -> usize {
        let queues = self.queues.lock().expect("dispatcher lock");
        queues
            .iter()
            .filter(|(k, _)| matches!(k, Key::Operation(_)))
            .map(|(_, q)| q.len())
            .sum()
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
                let key = Key::Operation(operation);
                if delay.is_zero() {
                    self.wake_many(&key, count);
                } else {
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        me.wake_many(&key, count);
                    });
                }
            }
            Notice::WorkflowChanged(id) => self.wake(&Key::Workflow(id)),
            Notice::Connected => self.wake_everyone(),
        }
    }

    fn wake_many(&self, key: &Key, count: u32) {
        for _ in 0..count {
            self.wake(key);
        }
    }

    fn wake_everyone(&self) {
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
            Ok(ready) => self.wake_ops(&ready),
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
    async fn dropping_a_waiter_unregisters_it() {
        let d = Arc::new(Dispatcher::default());
        let w = d.register(&ops(&["a"]));
        assert_eq!(d.waiting_pollers(), 1);
        drop(w);
        assert_eq!(d.waiting_pollers(), 0);
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
