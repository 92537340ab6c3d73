//! Failure handling end to end: leases and late results, heartbeats, retry backoff, exhausted
//! routes into human escalation, re-requests, deadlines, incidents and operator actions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rondo_gen::v1;
use rondo_worker::{HandlerError, Job, Outcome};
use tonic::Code;

use crate::support::{
    await_done, clients, complete, get, history, path, poll_one, put_yaml, quick_server, rondo,
    run_worker, start, task_of,
};

#[tokio::test]
async fn a_late_completion_is_rejected_and_recorded() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(
        &mut c,
        "
name: slow
start: work
nodes:
  work:
    operation: test.work
    timeout: 300ms
    on: { done: ~, timeout: { to: work, retry: { max: 1 }, exhausted: gave_up } }
  gave_up:
    operation: test.cleanup
    timeout: 5s
    on: { cleaned: ~ }
",
    )
    .await;
    let id = start(&mut c, "slow", "").await;
    let job = poll_one(&mut c, "test.work").await;
    // Outlive the lease: the engine times the job out and retries it.
    let retried = poll_one(&mut c, "test.work").await;
    assert_eq!(retried.attempt, 2, "the timeout route retried the node");
    assert_eq!(
        retried.idempotency_key, job.idempotency_key,
        "a retry streak keeps its idempotency key"
    );

    let late = complete(&mut c, &job, "done", r#"{"from": "late"}"#)
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::Aborted);
    assert!(late.message().contains("lease lost"), "{}", late.message());

    let events = history(&mut c, &id).await;
    let timed_out = events
        .iter()
        .filter(|e| e.kind() == v1::EventKind::JobTimedOut)
        .count();
    assert_eq!(timed_out, 1);
    let recorded = events
        .iter()
        .find(|e| e.kind() == v1::EventKind::LateResult)
        .expect("late result recorded");
    assert_eq!(recorded.label, "done");
    assert!(
        recorded.data.contains("late") && recorded.data.contains("test-worker"),
        "{}",
        recorded.data
    );
    let wf = get(&mut c, &id).await;
    assert_eq!(
        wf.status(),
        v1::WorkflowStatus::Running,
        "the late result changed nothing"
    );
    assert_eq!(wf.current_job.unwrap().id, retried.id);
}

#[tokio::test]
async fn a_missed_heartbeat_expires_the_lease_early() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(
        &mut c,
        "
name: beat
start: work
nodes:
  work:
    operation: test.work
    timeout: 30s
    heartbeat: 300ms
    on: { done: ~, timeout: ~ }
",
    )
    .await;
    let id = start(&mut c, "beat", "").await;
    let job = poll_one(&mut c, "test.work").await;
    let leased = Instant::now();
    let hb = v1::HeartbeatJobRequest {
        job_id: job.id,
        lease_token: job.lease_token.clone(),
        progress: Some(v1::Progress {
            percent: 40,
            message: "halfway".into(),
        }),
    };
    c.workers
        .heartbeat_job(hb.clone())
        .await
        .expect("a heartbeat in time extends the lease");
    let wf = await_done(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(wf.outcome, "timeout", "{wf:?}");
    assert!(
        leased.elapsed() < Duration::from_secs(5),
        "expired by the heartbeat clock, not the 30 s timeout"
    );
    let err = c.workers.heartbeat_job(hb).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let events = history(&mut c, &id).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind() == v1::EventKind::JobProgress && e.message == "halfway")
    );
}

#[tokio::test]
async fn retries_are_spaced_by_their_backoff_and_exhaustion_escalates_to_an_operator() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(
        &mut c,
        "
name: flaky
start: work
nodes:
  work:
    operation: test.flaky
    timeout: 5s
    on:
      done: ~
      error: { to: work, retry: { max: 3, delay: 200ms, backoff: 2.0 }, exhausted: escalate }
  escalate:
    human: true
    prompt: 'work failed {{vars.last_error}} at {{from}}'
    on: { retry: work, give_up: ~ }
",
    )
    .await;
    let seen: Arc<Mutex<Vec<(u32, String, Instant)>>> = Arc::default();
    let record = seen.clone();
    let worker = run_worker(&q.server, move |b| {
        b.handler("test.flaky", move |job: Job| {
            let record = record.clone();
            async move {
                let attempts = {
                    let mut seen = record.lock().unwrap();
                    seen.push((
                        job.attempt(),
                        job.idempotency_key().to_owned(),
                        Instant::now(),
                    ));
                    seen.len()
                };
                if attempts <= 4 {
                    Err(HandlerError::new("upstream 503"))
                } else {
                    Ok(Outcome::new("done"))
                }
            }
        })
    });
    let id = start(&mut c, "flaky", "").await;
    let task = task_of(&mut c, &id).await;
    assert_eq!(task.node, "escalate");
    assert_eq!(task.prompt, "work failed upstream 503 at work");
    assert_eq!(task.labels, ["retry", "give_up"]);
    {
        let seen = seen.lock().unwrap();
        let attempts: Vec<u32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(attempts, [1, 2, 3, 4], "every job shows its attempt number");
        assert!(
            seen.iter().all(|s| s.1 == seen[0].1),
            "one idempotency key for the whole streak"
        );
        for (i, min) in [(1, 200), (2, 400), (3, 800)] {
            let gap = seen[i].2 - seen[i - 1].2;
            assert!(
                gap >= Duration::from_millis(min),
                "retry {i} came after {gap:?}, before its {min} ms delay"
            );
        }
    }
    // The operator sends it back through the CLI; the fifth attempt succeeds.
    let job = task.job_id.to_string();
    let (code, _, err) = rondo(
        &q.server,
        &[
            "--operator",
            "alice",
            "inbox",
            "complete",
            &job,
            "--label",
            "retry",
            "--comment",
            "upstream fixed",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let wf = await_done(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed, "{wf:?}");
    assert_eq!(wf.outcome, "done");
    let events = history(&mut c, &id).await;
    let by_operator = events
        .iter()
        .find(|e| e.kind() == v1::EventKind::JobCompleted && e.node == "escalate")
        .expect("operator completion recorded");
    assert_eq!(by_operator.actor, "operator:alice");
    assert_eq!(by_operator.message, "upstream fixed");
    assert!(
        events
            .iter()
            .any(|e| e.kind() == v1::EventKind::RetryExhausted)
    );
    let (fresh_attempt, fresh_key, first_key) = {
        let seen = seen.lock().unwrap();
        (seen[4].0, seen[4].1.clone(), seen[0].1.clone())
    };
    assert_eq!(
        fresh_attempt, 1,
        "entering the node from the operator starts a fresh streak"
    );
    assert_ne!(fresh_key, first_key, "and a fresh idempotency key");
    worker.stop().await;
}

#[tokio::test]
async fn a_human_node_re_requests_until_its_budget_ends_then_escalates() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(
        &mut c,
        "
name: approve
start: ask
nodes:
  ask:
    human: true
    prompt: 'approve {{input.who}}?'
    timeout: 150ms
    on:
      yes: ~
      no: ~
      timeout: { to: ask, retry: { max: 2 }, exhausted: page }
  page:
    operation: test.page
    timeout: 5s
    on: { paged: ask }
",
    )
    .await;
    let worker = run_worker(&q.server, |b| {
        b.handler("test.page", |_job: Job| async { Ok(Outcome::new("paged")) })
    });
    let id = start(&mut c, "approve", r#"{"who": "bob"}"#).await;
    let task = crate::support::eventually(Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let p = path(&mut c, &id).await;
            (p.len() >= 5).then_some(p)
        }
    })
    .await;
    assert_eq!(
        task[..5],
        ["ask", "ask", "ask", "page", "ask"],
        "two re-requests, then the pager, then ask again"
    );
    let open = task_of(&mut c, &id).await;
    assert_eq!(open.prompt, "approve bob?");
    let (code, _, err) = rondo(
        &q.server,
        &[
            "--operator",
            "carol",
            "inbox",
            "complete",
            &open.job_id.to_string(),
            "--label",
            "yes",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let wf = await_done(&mut c, &id, Duration::from_secs(5)).await;
    assert_eq!(wf.outcome, "yes");
    worker.stop().await;
}

#[tokio::test]
async fn a_deadline_moves_the_workflow_to_on_deadline_and_cancels_the_job_in_hand() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(
        &mut c,
        "
name: sla
start: work
deadline: 400ms
on_deadline: late
nodes:
  work:
    operation: test.never
    timeout: 30s
    on: { done: ~ }
  late:
    human: true
    prompt: 'SLA missed'
    on: { close: ~ }
",
    )
    .await;
    put_yaml(
        &mut c,
        "
name: sla_stuck
start: work
deadline: 300ms
nodes:
  work:
    operation: test.never
    timeout: 30s
    on: { done: ~ }
",
    )
    .await;
    let routed = start(&mut c, "sla", "").await;
    let stuck = start(&mut c, "sla_stuck", "").await;
    let held = poll_one(&mut c, "test.never").await;
    let task = task_of(&mut c, &routed).await;
    assert_eq!(task.node, "late");
    let wf = await_done(&mut c, &stuck, Duration::from_secs(5)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Stuck);
    assert_eq!(wf.incident.unwrap().reason(), v1::IncidentReason::Deadline);
    // Whichever workflow's job the poll took, its worker now learns it was cancelled.
    let err = complete(&mut c, &held, "done", "{}").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("cancelled"), "{}", err.message());
    let events = history(&mut c, &routed).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind() == v1::EventKind::DeadlinePassed)
    );
}

const BRITTLE: &str = "
name: brittle
start: work
nodes:
  work:
    operation: test.brittle
    timeout: 5s
    on: { done: ~, skip: manual }
  manual:
    operation: test.manual
    timeout: 5s
    on: { done: ~ }
";

async fn stuck_workflow(c: &mut crate::support::Clients) -> (String, v1::Job) {
    let id = start(c, "brittle", "").await;
    let job = poll_one(c, "test.brittle").await;
    let req = v1::FailJobRequest {
        job_id: job.id,
        lease_token: job.lease_token.clone(),
        message: "boom".into(),
    };
    let failed = c.workers.fail_job(req).await.unwrap().into_inner();
    assert_eq!(
        failed.workflow_status(),
        v1::WorkflowStatus::Stuck,
        "`error` has no edge: an incident"
    );
    (id, job)
}

#[tokio::test]
async fn retry_and_move_resolve_stuck_workflows() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(&mut c, BRITTLE).await;

    let (first, job) = stuck_workflow(&mut c).await;
    let wf = get(&mut c, &first).await;
    let incident = wf.incident.clone().unwrap();
    assert_eq!(incident.reason(), v1::IncidentReason::NoRoute);
    assert!(
        incident.message.contains("`error`") && incident.message.contains("work"),
        "{}",
        incident.message
    );
    let (code, out, _) = rondo(&q.server, &["workflow", "list", "--status", "stuck"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&first), "stuck workflows are listed: {out}");

    let (code, _, err) = rondo(
        &q.server,
        &[
            "--operator",
            "dan",
            "workflow",
            "retry",
            &first,
            "--reason",
            "deployed fix",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let again = poll_one(&mut c, "test.brittle").await;
    assert_eq!(again.attempt, 1, "fresh streak");
    assert_eq!(
        again.idempotency_key, job.idempotency_key,
        "a retried node keeps its key"
    );
    complete(&mut c, &again, "done", "{}").await.unwrap();
    assert_eq!(
        await_done(&mut c, &first, Duration::from_secs(5))
            .await
            .status(),
        v1::WorkflowStatus::Completed
    );

    let (second, _) = stuck_workflow(&mut c).await;
    let (code, _, err) = rondo(
        &q.server,
        &[
            "--operator",
            "dan",
            "workflow",
            "move",
            &second,
            "--to",
            "manual",
            "--reason",
            "do it by hand",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let manual = poll_one(&mut c, "test.manual").await;
    complete(&mut c, &manual, "done", "{}").await.unwrap();
    let wf = await_done(&mut c, &second, Duration::from_secs(5)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed);
    let events = history(&mut c, &second).await;
    let moved = events
        .iter()
        .find(|e| e.kind() == v1::EventKind::OperatorMoved)
        .unwrap();
    assert_eq!(
        (moved.actor.as_str(), moved.message.as_str()),
        ("operator:dan", "do it by hand")
    );

    let (code, _, err) = rondo(
        &q.server,
        &[
            "--operator",
            "dan",
            "workflow",
            "move",
            &second,
            "--to",
            "nowhere",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("completed") || err.contains("nowhere"),
        "{err}"
    );
}

#[tokio::test]
async fn of_two_operators_acting_at_once_one_wins_and_the_other_gets_a_clear_error() {
    let q = quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(&mut c, BRITTLE).await;
    let (id, _) = stuck_workflow(&mut c).await;
    let seen = get(&mut c, &id).await;
    let expected = v1::ExpectedState {
        node: seen.current_node.clone(),
        step_count: seen.step_count,
    };
    let attempt = |who: &str, to: &str| {
        let mut c = c.clone();
        let req = v1::MoveWorkflowRequest {
            id: id.clone(),
            to: to.into(),
            reason: format!("{who} decided"),
            operator: who.into(),
            expected: Some(expected.clone()),
        };
        async move { c.workflows.move_workflow(req).await }
    };
    let (a, b) = tokio::join!(attempt("erin", "manual"), attempt("frank", "work"));
    let results = [a, b];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one operator wins"
    );
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(loser.code(), Code::Aborted);
    assert!(
        loser.message().contains("changed since you looked"),
        "{}",
        loser.message()
    );
    let moves = history(&mut c, &id)
        .await
        .iter()
        .filter(|e| e.kind() == v1::EventKind::OperatorMoved)
        .count();
    assert_eq!(moves, 1);
}
