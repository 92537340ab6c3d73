//! Racing calls and items that cannot be applied: identical completions arriving together,
//! completions with different labels, and a sweep item that fails.

use std::time::Duration;

use rondo_gen::v1;
use rondo_server::testing::{TestDb, TestServer};
use tonic::Code;

use crate::support::{
    Clients, clients, complete, eventually, get, history, metric, poll_one, put_yaml, start,
};

/// Two steps whose labels differ: a completion of `first` judged against the workflow after
/// its own transition would find `done` not offered at `second`.
const TWO_STEPS: &str = "
name: two
start: first
nodes:
  first:
    operation: race.first
    timeout: 30s
    on: { done: second, other: ~ }
  second:
    operation: race.second
    timeout: 30s
    on: { finished: ~ }
";

/// Sends `labels` as completions of `job`, all at once, each on its own connection.
async fn race(
    server: &TestServer,
    job: &v1::Job,
    labels: &[&str],
) -> Vec<Result<(), tonic::Status>> {
    let mut calls = Vec::new();
    for &label in labels {
        let mut c = clients(server).await;
        let (job, label) = (job.clone(), label.to_owned());
        calls.push(tokio::spawn(async move {
            complete(&mut c, &job, &label, "{}").await.map(drop)
        }));
    }
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    answers
}

/// Completions of the workflow's history.
async fn completions(c: &mut Clients, id: &str) -> usize {
    history(c, id)
        .await
        .iter()
        .filter(|e| e.kind() == v1::EventKind::JobCompleted)
        .count()
}

#[tokio::test]
async fn identical_completions_arriving_together_all_succeed_with_one_transition() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, TWO_STEPS).await;
    for _ in 0..12 {
        let id = start(&mut c, "two", "").await;
        let job = poll_one(&mut c, "race.first").await;
        let answers = race(&server, &job, &["done"; 4]).await;
        for answer in &answers {
            assert!(
                answer.is_ok(),
                "every identical completion succeeds: {answer:?}"
            );
        }
        assert_eq!(completions(&mut c, &id).await, 1, "one transition");
        let workflow = get(&mut c, &id).await;
        assert_eq!(workflow.current_node, "second");
        assert_eq!(workflow.step_count, 1, "one step taken");
    }
}

#[tokio::test]
async fn of_completions_racing_with_different_labels_one_wins_and_the_others_are_refused() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, TWO_STEPS).await;
    for _ in 0..12 {
        let id = start(&mut c, "two", "").await;
        let job = poll_one(&mut c, "race.first").await;
        let answers = race(&server, &job, &["done", "other", "done", "other"]).await;
        let won = answers.iter().filter(|a| a.is_ok()).count();
        assert!(won >= 1, "{answers:?}");
        for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "a losing label is a precondition failure: {refused:?}"
            );
            assert!(
                refused.message().contains("already completed"),
                "{}",
                refused.message()
            );
        }
        assert_eq!(completions(&mut c, &id).await, 1, "one transition");
    }
}

/// A job that times out into a clean-up step.
fn timing_out(name: &str) -> String {
    format!(
        "
name: {name}
start: work
nodes:
  work:
    operation: sweep.work
    timeout: 30s
    on: {{ done: ~, timeout: cleanup }}
  cleanup:
    operation: sweep.cleanup
    timeout: 30s
    on: {{ cleaned: ~ }}
"
    )
}

#[tokio::test]
async fn a_sweep_item_that_cannot_be_applied_is_made_stuck_and_the_sweep_goes_on() {
    let db = TestDb::new().await;
    // This server only sets the scene: its sweeper waits an hour between passes.
    let setup = TestServer::start_with(&db.url, |cfg| {
        cfg.sweep_interval = Duration::from_secs(3600)
    })
    .await;
    let mut c = clients(&setup).await;
    put_yaml(&mut c, &timing_out("brittle")).await;
    put_yaml(&mut c, &timing_out("sturdy")).await;
    let brittle = start(&mut c, "brittle", "").await;
    let brittle_job = poll_one(&mut c, "sweep.work").await;
    let sturdy = start(&mut c, "sturdy", "").await;
    let sturdy_job = poll_one(&mut c, "sweep.work").await;
    assert_eq!(brittle_job.workflow_id, brittle);
    // The brittle lease ran out first, so a sweep reads it first; its stored graph no longer
    // loads (as if a later version of Rondo rejected it).
    let sql = rondo_server::store::connect(&db.url).await.unwrap();
    sql.batch_execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '10 seconds' WHERE id = {};
         UPDATE jobs SET lease_expires_at = now() - interval '5 seconds' WHERE id = {};
         UPDATE graphs SET definition = '{{}}' WHERE name = 'brittle';",
        brittle_job.id, sturdy_job.id
    ))
    .await
    .unwrap();

    // A server that has not cached the brittle graph sweeps.
    let sweeper = TestServer::start_with(&db.url, |cfg| {
        cfg.sweep_interval = Duration::from_millis(25)
    })
    .await;
    let mut s = clients(&sweeper).await;
    let moved = eventually(Duration::from_secs(10), || {
        let (mut s, sturdy) = (s.clone(), sturdy.clone());
        async move {
            let w = get(&mut s, &sturdy).await;
            (w.current_node == "cleanup").then_some(w)
        }
    })
    .await;
    assert_eq!(
        moved.status(),
        v1::WorkflowStatus::Running,
        "later items are swept"
    );

    let stuck = get(&mut s, &brittle).await;
    assert_eq!(stuck.status(), v1::WorkflowStatus::Stuck);
    let incident = stuck.incident.expect("an incident says why");
    assert_eq!(incident.reason(), v1::IncidentReason::EngineError);
    assert_eq!(incident.node, "work");
    assert!(
        incident.message.contains("stored graph"),
        "{}",
        incident.message
    );
    assert_eq!(
        stuck.current_job.expect("its last job").state(),
        v1::JobState::Cancelled,
        "the job that could not be timed out is not picked again"
    );
    let failures = r#"rondo_sweep_failures_total{kind="timeout"}"#;
    assert_eq!(metric(&sweeper, failures).await, 1.0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metric(&sweeper, failures).await,
        1.0,
        "isolated once, not at every sweep"
    );
    sweeper.shutdown().await.unwrap();
    setup.shutdown().await.unwrap();
}
