//! LISTEN/NOTIFY: how a job created through any server wakes pollers waiting on any server,
//! and how a workflow ending wakes `AwaitWorkflow` calls. One dedicated connection per server
//! listens; notifications are sent inside the transaction that made the change, so PostgreSQL
//! delivers them only when it commits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::StoreError;

/// Channel announcing ready jobs; payload `operation<TAB>available_at_millis`.
pub const JOBS_CHANNEL: &str = "rondo_jobs";
/// Channel announcing workflows that stopped running; payload the workflow id.
pub const WORKFLOWS_CHANNEL: &str = "rondo_workflows";

/// What the listener hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A job of `operation` is ready at `available_at`.
    JobReady {
        /// Operation of the job.
        operation: String,
        /// When it may be handed out.
        available_at: DateTime<Utc>,
    },
    /// A workflow stopped running (completed, cancelled or stuck).
    WorkflowChanged(Uuid),
    /// The listening connection was (re-)established; notifications may have been missed.
    Connected,
}

const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Announces a ready job (delivered when the surrounding transaction commits).
pub async fn notify_job(
    client: &impl GenericClient,
    operation: &str,
    available_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let payload = format!("{operation}\t{}", available_at.timestamp_millis());
    let stmt = client.prepare_cached(NOTIFY).await?;
    client.execute(&stmt, &[&JOBS_CHANNEL, &payload]).await?;
    Ok(())
}

/// Announces that a workflow stopped running.
pub async fn notify_workflow(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(NOTIFY).await?;
    client
        .execute(&stmt, &[&WORKFLOWS_CHANNEL, &id.to_string()])
        .await?;
    Ok(())
}

/// Parses a notification; `None` for payloads this version does not understand.
pub fn parse(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        JOBS_CHANNEL => {
            let (operation, millis) = payload.rsplit_once('\t')?;
            let available_at = DateTime::from_timestamp_millis(millis.parse().ok()?)?;
            Some(Notice::JobReady {
                operation: operation.to_owned(),
                available_at,
            })
        }
        WORKFLOWS_CHANNEL => payload.parse().ok().map(Notice::WorkflowChanged),
        _ => None,
    }
}

/// Listens until `shutdown`, forwarding notices to `tx`; reconnects with capped backoff when
/// the connection drops and sends [`Notice::Connected`] after each (re)connect, so waiters
/// re-check for anything missed meanwhile.
pub async fn run(
    database_url: String,
    tx: mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = listen_once(&database_url, &tx, &shutdown);
        match tokio::select! {
            () = shutdown.cancelled() => return,
            result = session => result,
        } {
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
    tx: &mpsc::UnboundedSender<Notice>,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let (client, mut connection) = tokio_postgres::connect(database_url, NoTls).await?;
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
            "LISTEN {JOBS_CHANNEL}; LISTEN {WORKFLOWS_CHANNEL}"
        ))
        .await?;
    let _ = tx.send(Notice::Connected);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = msg_rx.recv() => match message {
                Some((channel, payload)) => {
                    if let Some(notice) = parse(&channel, &payload) {
                        let _ = tx.send(notice);
                    }
                }
                None => break,
            },
        }
    }
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
        let payload = format!("payments.charge\t{}", at.timestamp_millis());
        assert_eq!(
            parse(JOBS_CHANNEL, &payload),
            Some(Notice::JobReady {
                operation: "payments.charge".into(),
                available_at: at
            })
        );
        assert_eq!(parse(JOBS_CHANNEL, "no-tab"), None);
        assert_eq!(parse("other", "x"), None);
    }
}
