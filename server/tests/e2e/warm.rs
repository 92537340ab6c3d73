//! Completions decided from memory: a job leased as the server wrote it is completed with one
//! statement that first checks the workflow row is still the version the server wrote. These
//! tests check that such a completion writes exactly what the locking way writes, and that a
//! workflow or a lease changed behind the server's back is completed, or refused, from the
//! stored rows instead.

use std::time::Duration;

use rondo_gen::v1;
use rondo_server::testing::TestServer;
use tonic::Code;

use crate::support::{
    self, Clients, ONE_STEP, clients, complete, get, metric, poll_one, put_yaml, start,
};

const WARM: &str = r#"rondo_completions_total{path="warm"}"#;
const LOCKED: &str = r#"rondo_completions_total{path="locked"}"#;

/// Starts a workflow of `one` while a poll waits, so its job is leased as it is written;
/// returns the workflow id and the job.
async fn start_warm(c: &mut Clients, input: &str) -> (String, v1::Job) {
    let mut poller = c.clone();
    let poll = tokio::spawn(async move { poll_one(&mut poller, "test.work").await });
    // Let the poll reach the server and wait there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = start(c, "one", input).await;
    let job = poll.await.unwrap();
    assert_eq!(job.workflow_id, id);
    (id, job)
}

/// A server with the one-step graph applied, and clients of it.
async fn one_step_server() -> (TestServer, Clients) {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    (server, c)
}

/// Runs SQL against the server's database.
async fn sql(server: &TestServer, statement: &str) {
    let client = rondo_server::store::connect(server.db_url()).await.unwrap();
    client.batch_execute(statement).await.unwrap();
}

/// An event without its ids and times: kind, node, label, actor, message and data.
type Shape = (i32, String, String, String, String, String);

/// The history of a workflow, ids and times left out (the workflow id in job idempotency
/// keys too).
async fn history_shape(c: &mut Clients, id: &str) -> Vec<Shape> {
    support::history(c, id)
        .await
        .into_iter()
        .map(|e| {
            let data = e.data.replace(id, "<id>");
            (e.kind, e.node, e.label, e.actor, e.message, data)
        })
        .collect()
}

#[tokio::test]
async fn a_warm_completion_writes_what_the_locking_way_writes() {
    let (server, mut c) = one_step_server().await;

    let (warm_id, job) = start_warm(&mut c, r#"{"n": 1}"#).await;
    let answer = complete(&mut c, &job, "done", r#"{"paid": true}"#)
        .await
        .unwrap();
    assert_eq!(answer.workflow_status(), v1::WorkflowStatus::Completed);
    assert_eq!(metric(&server, WARM).await, 1.0);
    assert_eq!(metric(&server, LOCKED).await, 0.0);

    // No poll waits at the start, so this job is claimed later and completed the locking way.
    let locked_id = start(&mut c, "one", r#"{"n": 1}"#).await;
    let job = poll_one(&mut c, "test.work").await;
    complete(&mut c, &job, "done", r#"{"paid": true}"#)
        .await
        .unwrap();
    assert_eq!(metric(&server, LOCKED).await, 1.0);
    assert_eq!(metric(&server, WARM).await, 1.0);

    let (warm, locked) = (get(&mut c, &warm_id).await, get(&mut c, &locked_id).await);
    assert_eq!(warm.status(), v1::WorkflowStatus::Completed);
    assert_eq!(warm.vars, locked.vars);
    assert_eq!(warm.outcome, locked.outcome);
    assert_eq!(warm.step_count, locked.step_count);
    assert_eq!(
        warm.current_job.unwrap().state(),
        locked.current_job.unwrap().state()
    );
    let warm_history = history_shape(&mut c, &warm_id).await;
    let mut locked_history = history_shape(&mut c, &locked_id).await;
    // The locked job was claimed, not handed over: only the lease event's message differs.
    let leased = v1::EventKind::JobLeased as i32;
    for (w, l) in warm_history.iter().zip(locked_history.iter_mut()) {
        if w.0 == leased && l.0 == leased {
            l.4.clone_from(&w.4);
        }
    }
    assert_eq!(warm_history, locked_history);
}

#[tokio::test]
async fn a_workflow_changed_behind_a_warm_job_is_completed_from_the_stored_row() {
    let (server, mut c) = one_step_server().await;
    let (id, job) = start_warm(&mut c, "{}").await;

    // Another server (or an operator) writes the workflow row: the version this server
    // remembers is no longer the stored one.
    sql(
        &server,
        &format!(
            "UPDATE workflows SET vars = vars || '{{\"set_elsewhere\": 1}}' WHERE id = '{id}'"
        ),
    )
    .await;
    complete(&mut c, &job, "done", r#"{"x": 2}"#).await.unwrap();

    let workflow = get(&mut c, &id).await;
    assert_eq!(workflow.status(), v1::WorkflowStatus::Completed);
    let vars: serde_json::Value = serde_json::from_str(&workflow.vars).unwrap();
    assert_eq!(vars["set_elsewhere"], 1, "the other write is kept: {vars}");
    assert_eq!(vars["x"], 2, "the output is merged: {vars}");
    assert_eq!(metric(&server, WARM).await, 0.0);
    assert_eq!(metric(&server, LOCKED).await, 1.0);
    let counted = r#"rondo_jobs_completed_total{operation="test.work",label="done"}"#;
    assert_eq!(
        metric(&server, counted).await,
        1.0,
        "decided twice (warm, then locked), written and counted once"
    );
    let completions = support::history(&mut c, &id)
        .await
        .iter()
        .filter(|e| e.kind() == v1::EventKind::JobCompleted)
        .count();
    assert_eq!(completions, 1, "the refused warm write left no history");
}

#[tokio::test]
async fn a_warm_job_whose_lease_ran_out_in_the_database_is_refused_and_nothing_is_written() {
    let (server, mut c) = one_step_server().await;
    let (id, job) = start_warm(&mut c, "{}").await;
    let before = get(&mut c, &id).await;

    // Only the job row changes: the workflow row is still the version the server wrote.
    sql(
        &server,
        &format!(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = {}",
            job.id
        ),
    )
    .await;
    let refused = complete(&mut c, &job, "done", "{}").await.unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(refused.message().contains("lease"), "{}", refused.message());

    let after = get(&mut c, &id).await;
    assert_eq!(after.status(), v1::WorkflowStatus::Running);
    assert_eq!(after.step_count, before.step_count);
    assert_eq!(after.vars, before.vars);
    assert_eq!(
        after.updated_at, before.updated_at,
        "the row was not written"
    );
    assert_eq!(
        after.current_job.unwrap().state(),
        v1::JobState::Active,
        "the job was not ended"
    );
    assert_eq!(metric(&server, WARM).await, 0.0);
}
