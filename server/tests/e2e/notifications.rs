//! Notifications between servers on one database: a job or a finished workflow on one server
//! wakes the waiters of another, and a server alone sends none.

use std::time::Duration;

use futures::StreamExt;
use rondo_gen::v1;
use rondo_server::store::listen::{JOBS_CHANNEL, LISTENER_APPLICATION, WORKFLOWS_CHANNEL};
use rondo_server::testing::{TestDb, TestServer};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::{
    Clients, ONE_STEP, await_done, clients, complete, eventually, get, metric, poll_one, put_yaml,
    start,
};

/// A server whose re-check is too slow to matter: only a notification wakes its pollers.
async fn deaf_server(db_url: &str) -> TestServer {
    TestServer::start_with(db_url, |cfg| {
        cfg.recheck_interval = Duration::from_secs(600)
    })
    .await
}

/// Two deaf servers on one new database, with their clients, once both listen.
async fn two_listening_servers() -> (TestDb, [TestServer; 2], [Clients; 2]) {
    let db = TestDb::new().await;
    let a = deaf_server(&db.url).await;
    let b = deaf_server(&db.url).await;
    let on = [clients(&a).await, clients(&b).await];
    eventually(Duration::from_secs(10), || async {
        (listeners(&db.url).await == 2).then_some(())
    })
    .await;
    (db, [a, b], on)
}

/// Listening connections of servers (or of the test posing as one) on the database.
async fn listeners(db_url: &str) -> i64 {
    let client = rondo_server::store::connect(db_url).await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&LISTENER_APPLICATION],
        )
        .await
        .unwrap()
        .get(0)
}

/// A connection that listens on Rondo's channels and forwards each payload; its
/// `application_name` is `name`.
async fn listen_as(
    db_url: &str,
    name: &str,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let mut config: tokio_postgres::Config = db_url.parse().unwrap();
    config.application_name(name);
    let (client, mut connection) = config.connect(NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {JOBS_CHANNEL}; LISTEN {WORKFLOWS_CHANNEL}"
        ))
        .await
        .unwrap();
    (client, rx)
}

#[tokio::test]
async fn a_job_and_a_finished_workflow_on_one_server_wake_the_waiters_of_another() {
    let (_db, [_a, b], [mut on_a, mut on_b]) = two_listening_servers().await;
    put_yaml(&mut on_a, ONE_STEP).await;

    // A poller waiting on B, with no job anywhere yet.
    let mut poller = on_b.clone();
    let polling = tokio::spawn(async move { poll_one(&mut poller, "test.work").await });
    eventually(Duration::from_secs(5), || async {
        (metric(&b, "rondo_waiting_pollers").await == 1.0).then_some(())
    })
    .await;
    let id = start(&mut on_a, "one", "{}").await;
    let job = tokio::time::timeout(Duration::from_secs(5), polling)
        .await
        .expect("the job started on A reaches the poller on B long before any re-check")
        .unwrap();
    assert_eq!(job.workflow_id, id);

    // An AwaitWorkflow waiting on A for a workflow completed through B.
    let mut awaiting = on_a.clone();
    let awaited = {
        let id = id.clone();
        tokio::spawn(async move { await_done(&mut awaiting, &id, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    complete(&mut on_b, &job, "done", "{}").await.unwrap();
    let workflow = tokio::time::timeout(Duration::from_secs(5), awaited)
        .await
        .expect("the workflow completed on B wakes the AwaitWorkflow on A")
        .unwrap();
    assert_eq!(workflow.status(), v1::WorkflowStatus::Completed);
}

#[tokio::test]
async fn a_server_alone_sends_no_notifications_until_another_listens() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let (observer, mut heard) = listen_as(server.db_url(), "test-observer").await;

    let id = start(&mut c, "one", "{}").await;
    let job = poll_one(&mut c, "test.work").await;
    complete(&mut c, &job, "done", "{}").await.unwrap();
    await_done(&mut c, &id, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        heard.try_recv().ok(),
        None,
        "a server alone notifies nobody"
    );

    // Posing as another server's listener, the observer hears the next start.
    observer
        .batch_execute(&format!("SET application_name = '{LISTENER_APPLICATION}'"))
        .await
        .unwrap();
    // The server looks for other servers at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    start(&mut c, "one", "{}").await;
    let payload = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("a notification once another server listens")
        .unwrap();
    assert!(payload.contains("test.work"), "{payload}");
}

/// A start of "the latest version" on one server uses the version another server has just
/// stored, although the first had it cached.
#[tokio::test]
async fn a_graph_stored_on_one_server_is_the_latest_on_another() {
    let (_db, _servers, [mut on_a, mut on_b]) = two_listening_servers().await;
    assert_eq!(put_yaml(&mut on_a, ONE_STEP).await, 1);
    let first = start(&mut on_b, "one", "{}").await;
    assert_eq!(get(&mut on_b, &first).await.graph_version, 1);

    let second_version = ONE_STEP.replace("timeout: 30s", "timeout: 45s");
    let cached_on_a = start(&mut on_a, "one", "{}").await;
    assert_eq!(get(&mut on_a, &cached_on_a).await.graph_version, 1);
    assert_eq!(put_yaml(&mut on_a, &second_version).await, 2);
    // The server that stored it knows at once.
    let on_a_now = start(&mut on_a, "one", "{}").await;
    assert_eq!(get(&mut on_a, &on_a_now).await.graph_version, 2);
    let started = eventually(Duration::from_secs(5), || {
        let mut on_b = on_b.clone();
        async move {
            let id = start(&mut on_b, "one", "{}").await;
            let version = get(&mut on_b, &id).await.graph_version;
            (version == 2).then_some(version)
        }
    })
    .await;
    assert_eq!(started, 2);
}

/// A server that started a workflow knows it runs, and awaits it without reading it; once
/// another server has completed it, the notification tells the first, whose next await
/// answers at once rather than at its deadline.
#[tokio::test]
async fn a_workflow_completed_on_another_server_is_not_awaited_as_running() {
    let (_db, _servers, [mut on_a, mut on_b]) = two_listening_servers().await;
    put_yaml(&mut on_a, ONE_STEP).await;
    let id = start(&mut on_a, "one", "{}").await;
    let job = poll_one(&mut on_b, "test.work").await;
    complete(&mut on_b, &job, "done", "{}").await.unwrap();
    // Give the notification time to reach A (no await is waiting there to be woken).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let workflow = tokio::time::timeout(
        Duration::from_secs(5),
        await_done(&mut on_a, &id, Duration::from_secs(20)),
    )
    .await
    .expect("A knows from the notification that the workflow no longer runs");
    assert_eq!(workflow.status(), v1::WorkflowStatus::Completed);
}
