//! LISTEN/NOTIFY: how a job created through any server wakes pollers waiting on any server,
//! and how a workflow stopping wakes `AwaitWorkflow` calls. Each server keeps one connection
//! that listens and one that notifies. Notifications are sent after the transaction that made
//! the change has committed, batched: a NOTIFY inside that transaction would make PostgreSQL
//! serialize the commit on its global notify lock, one step at a time.
//!
//! A server alone on its database sends none: its own waiters are woken in memory, and every
//! notification is a transaction PostgreSQL must commit and flush. The notifier looks (at most
//! once a second) for listening connections of other servers, which the listener marks with
//! its `application_name`; a server that starts meanwhile hears from the others within that
//! second, and its periodic re-check covers the gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::StoreError;

/// Channel announcing ready jobs; payload `origin<TAB>operation<TAB>available_at_millis<TAB>count`,
/// where `origin` is the sending server's id (a server wakes its own pollers in memory and
/// ignores its own notifications).
pub const JOBS_CHANNEL: &str = "rondo_jobs";
/// Channel announcing workflows that stopped running; payload `origin<TAB>workflow_id`.
pub const WORKFLOWS_CHANNEL: &str = "rondo_workflows";
/// Channel announcing a new version of a graph; payload `origin<TAB>graph_name`.
pub const GRAPHS_CHANNEL: &str = "rondo_graphs";

/// What the listener hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `count` jobs of `operation` are ready at `available_at`.
    JobReady {
        /// Operation of the jobs.
        operation: String,
        /// When they may be handed out.
        available_at: DateTime<Utc>,
        /// How many (notifications of one batch are merged).
        count: u32,
    },
    /// A workflow stopped running (completed, cancelled or stuck).
    WorkflowChanged(Uuid),
    /// A new version of the graph of this name was stored.
    GraphStored(String),
    /// The listening connection was (re-)established; notifications may have been missed.
    Connected,
    /// The listening connection was lost: notifications are missed until it is back.
    Disconnected,
}

const NOTIFY_MANY: &str = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)";

/// `application_name` of every server's listening connection.
pub const LISTENER_APPLICATION: &str = "rondo-listener";

/// Listening connections of other servers on this database: `$2` is this server's own
/// listener's backend pid (0 while it is not connected).
const PEERS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND application_name = $1 AND pid <> $2";

/// How long the notifier trusts its last look for other servers: a server that starts
/// listening may miss other servers' notifications for this long.
pub const PEERS_FRESH: Duration = Duration::from_secs(1);

/// The backend pid of this server's listening connection, 0 while it is not connected; the
/// notifier leaves it out when it looks for other servers.
pub type ListenerPid = Arc<AtomicI32>;

/// Most notices sent in one statement.
const BATCH: usize = 1024;

/// The wire form of a notice from server `origin`: (channel, payload).
fn payload(notice: &Notice, origin: Uuid) -> Option<(&'static str, String)> {
    match notice {
        Notice::JobReady {
            operation,
            available_at,
            count,
        } => Some((
            JOBS_CHANNEL,
            format!(
                "{origin}\t{operation}\t{}\t{count}",
                available_at.timestamp_millis()
            ),
        )),
        Notice::WorkflowChanged(id) => Some((WORKFLOWS_CHANNEL, format!("{origin}\t{id}"))),
        Notice::GraphStored(name) => Some((GRAPHS_CHANNEL, format!("{origin}\t{name}"))),
        Notice::Connected | Notice::Disconnected => None,
    }
}

/// Merges a batch: ready jobs of one operation and instant add up (PostgreSQL would fold
/// identical payloads of one transaction into one and lose the count).
fn merge(batch: Vec<Notice>) -> Vec<Notice> {
    let mut merged: Vec<Notice> = Vec::with_capacity(batch.len());
    for notice in batch {
        let existing = merged.iter_mut().find(|m| match (m, &notice) {
            (
                Notice::JobReady {
                    operation: a,
                    available_at: at_a,
                    ..
                },
                Notice::JobReady {
                    operation: b,
                    available_at: at_b,
                    ..
                },
            ) => a == b && at_a.timestamp_millis() == at_b.timestamp_millis(),
            (Notice::WorkflowChanged(a), Notice::WorkflowChanged(b)) => a == b,
            (Notice::GraphStored(a), Notice::GraphStored(b)) => a == b,
            _ => false,
        });
        match (existing, notice) {
            (Some(Notice::JobReady { count, .. }), Notice::JobReady { count: more, .. }) => {
                *count = count.saturating_add(more);
            }
            (Some(_), _) => {}
            (None, notice) => merged.push(notice),
        }
    }
    merged
}

/// The notifier's connection, with its statements prepared, and its last look for other
/// servers.
struct Notifier {
    client: Client,
    notify: Statement,
    peers: Statement,
    /// When it last looked, and whether other servers were listening then.
    looked: Option<(Instant, bool)>,
}

impl Notifier {
    async fn connect(database_url: &str) -> Result<Notifier, StoreError> {
        let client = super::connect(database_url).await?;
        let (notify, peers) = tokio::try_join!(client.prepare(NOTIFY_MANY), client.prepare(PEERS))?;
        Ok(Notifier {
            client,
            notify,
            peers,
            looked: None,
        })
    }

    /// Whether another server listens on this database, looked up at most once per
    /// [`PEERS_FRESH`] unless `fresh`; true when it cannot be told.
    async fn others_listen(&mut self, own: i32, fresh: bool) -> bool {
        if let Some((at, others)) = self.looked
            && at.elapsed() < PEERS_FRESH
            && !fresh
        {
            return others;
        }
        let others = match self
            .client
            .query_one(&self.peers, &[&LISTENER_APPLICATION, &own])
            .await
        {
            Ok(row) => row.try_get::<_, i64>(0).map_or(true, |n| n > 0),
            Err(error) => {
                tracing::debug!(%error, "looking for other servers failed; notifying anyway");
                true
            }
        };
        self.looked = Some((Instant::now(), others));
        others
    }
}

/// Sends notices from server `origin` until shutdown, as many per statement as have queued up
/// meanwhile, on a connection of its own (reconnecting when it drops), when other servers
/// listen (`listener` is this server's own listening connection). A batch that cannot be sent
/// is logged and dropped: the dispatcher's periodic re-check finds those jobs anyway.
pub async fn run_notifier(
    database_url: String,
    origin: Uuid,
    listener: ListenerPid,
    mut rx: mpsc::UnboundedReceiver<Notice>,
    shutdown: CancellationToken,
) {
    let mut notifier: Option<Notifier> = None;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            notice = rx.recv() => match notice {
                Some(n) => n,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(n) => batch.push(n),
                Err(_) => break,
            }
        }
        if notifier.as_ref().is_none_or(|n| n.client.is_closed()) {
            notifier = match Notifier::connect(&database_url).await {
                Ok(n) => Some(n),
                Err(error) => {
                    tracing::warn!(%error, "notifier cannot connect; wake-ups wait for the re-check");
                    None
                }
            };
        }
        let Some(n) = notifier.as_mut() else {
            continue;
        };
        // A server that started within the last look may have cached the graph already, and
        // no re-check would correct it: look again.
        let fresh = batch.iter().any(|n| matches!(n, Notice::GraphStored(_)));
        if !n
            .others_listen(listener.load(Ordering::Acquire), fresh)
            .await
        {
            continue;
        }
        let (channels, payloads): (Vec<&str>, Vec<String>) = merge(batch)
            .iter()
            .filter_map(|notice| payload(notice, origin))
            .unzip();
        if let Err(error) = n.client.execute(&n.notify, &[&channels, &payloads]).await {
            tracing::warn!(%error, "sending notifications failed; wake-ups wait for the re-check");
        }
    }
}

/// Parses a notification into its origin and notice; `None` for payloads this version does
/// not understand.
pub fn parse(channel: &str, payload: &str) -> Option<(Uuid, Notice)> {
    let (origin, rest) = payload.split_once('\t')?;
    let origin = origin.parse().ok()?;
    let notice = match channel {
        JOBS_CHANNEL => {
            let mut parts = rest.split('\t');
            let operation = parts.next()?.to_owned();
            let available_at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
            let count = parts.next().map_or(Some(1), |c| c.parse().ok())?;
            Notice::JobReady {
                operation,
                available_at,
                count,
            }
        }
        WORKFLOWS_CHANNEL => Notice::WorkflowChanged(rest.parse().ok()?),
        GRAPHS_CHANNEL => Notice::GraphStored(rest.to_owned()),
        _ => return None,
    };
    Some((origin, notice))
}

/// Listens until `shutdown`, forwarding notices from other servers than `origin` to `tx`; reconnects with capped backoff when
/// the connection drops and sends [`Notice::Connected`] after each (re)connect, so waiters
/// re-check for anything missed meanwhile.
pub async fn run(
    database_url: String,
    origin: Uuid,
    listener: ListenerPid,
    tx: mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = listen_once(&database_url, origin, &listener, &tx, &shutdown);
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            result = session => result,
        };
        let _ = tx.send(Notice::Disconnected);
        match ended {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => tracing::warn!(%error, "notification listener lost its connection"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    database_url: &str,
    origin: Uuid,
    listener: &ListenerPid,
    tx: &mpsc::UnboundedSender<Notice>,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let mut config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::BadUrl(e.to_string()))?;
    config.application_name(LISTENER_APPLICATION);
    let (client, mut connection) = config.connect(NoTls).await?;
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if msg_tx
                        .send((n.channel().to_owned(), n.payload().to_owned()))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!(
            "LISTEN {JOBS_CHANNEL}; LISTEN {WORKFLOWS_CHANNEL}; LISTEN {GRAPHS_CHANNEL}"
        ))
        .await?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .try_get(0)?;
    listener.store(pid, Ordering::Release);
    let _ = tx.send(Notice::Connected);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = msg_rx.recv() => match message {
                Some((channel, payload)) => {
                    match parse(&channel, &payload) {
                        Some((from, notice)) if from != origin => {
                            let _ = tx.send(notice);
                        }
                        _ => {}
                    }
                }
                None => break,
            },
        }
    }
    listener.store(0, Ordering::Release);
    drop(client);
    match driver.await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_payload_round_trips_operation_with_dots() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let notice = Notice::JobReady {
            operation: "payments.charge".into(),
            available_at: at,
            count: 3,
        };
        let origin = Uuid::now_v7();
        let (channel, text) = payload(&notice, origin).unwrap();
        assert_eq!(parse(channel, &text), Some((origin, notice)));
        assert_eq!(parse(JOBS_CHANNEL, "no-tab"), None);
        assert_eq!(
            parse(JOBS_CHANNEL, &format!("{}\top\t12\tmany", Uuid::nil())),
            None
        );
        assert_eq!(parse("other", "x"), None);
    }

    #[test]
    fn graph_payload_round_trips_and_repeats_merge() {
        let origin = Uuid::now_v7();
        let stored = Notice::GraphStored("payments.refund".into());
        let (channel, text) = payload(&stored, origin).unwrap();
        assert_eq!(channel, GRAPHS_CHANNEL);
        assert_eq!(parse(channel, &text), Some((origin, stored.clone())));
        let other = Notice::GraphStored("orders".into());
        assert_eq!(
            merge(vec![stored.clone(), other.clone(), stored.clone()]),
            [stored, other]
        );
    }

    #[test]
    fn a_batch_adds_up_ready_jobs_of_one_operation_and_instant() {
        let at = DateTime::from_timestamp_millis(1_000).unwrap();
        let ready = |op: &str, count| Notice::JobReady {
            operation: op.into(),
            available_at: at,
            count,
        };
        let id = Uuid::now_v7();
        let merged = merge(vec![
            ready("a", 1),
            ready("b", 1),
            ready("a", 2),
            Notice::WorkflowChanged(id),
            Notice::WorkflowChanged(id),
        ]);
        assert_eq!(
            merged,
            vec![ready("a", 3), ready("b", 1), Notice::WorkflowChanged(id)]
        );
    }
}
