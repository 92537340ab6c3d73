//! Workflows advancing through graphs with SDK workers: happy and failure paths, idempotency,
//! lease checks, cancellation, wake-ups across servers, and client errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rondo_example_worker::{Faults, register};
use rondo_gen::v1;
use rondo_server::testing::{TestDb, TestServer};
use rondo_worker::{HandlerError, Job, Outcome, StartOptions, WorkflowStatus};
use serde_json::json;
use tokio::sync::Notify;
use tonic::Code;

use crate::support::{
    self, ONE_STEP, await_done, clients, complete, example_graph, get, path, poll_one, put_yaml,
    run_worker, start,
};

async fn order_server() -> (TestServer, support::Clients) {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(
        &mut c,
        &std::fs::read_to_string(example_graph("order")).unwrap(),
    )
    .await;
    (server, c)
}

#[tokio::test]
async fn order_graph_completes_along_its_happy_path() {
    let (server, mut c) = order_server().await;
    let worker = run_worker(&server, |b| register(b, &Faults::none(), Duration::ZERO));
    let id = start(&mut c, "order", r#"{"order_id": "A-1", "amount": 4200}"#).await;
    let wf = await_done(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed, "{wf:?}");
    assert_eq!(wf.outcome, "sent");
    assert_eq!(path(&mut c, &id).await, ["reserve", "charge", "confirm"]);
    let vars: serde_json::Value = serde_json::from_str(&wf.vars).unwrap();
    assert_eq!(vars["order_id"], "A-1", "input stays in vars");
    assert_eq!(
        vars["last_email"], "order_confirmed",
        "outputs merge into vars"
    );
    assert!(vars["charge_id"].as_str().unwrap().starts_with("ch-"));
    worker.stop().await;
}

#[tokio::test]
async fn order_graph_completes_along_its_failure_path() {
    let (server, mut c) = order_server().await;
    // Every charge declines; the other operations succeed.
    let worker = run_worker(&server, |b| {
        [
            "inventory.reserve",
            "inventory.release",
            "payments.charge",
            "email.send",
        ]
        .into_iter()
        .fold(b, |b, op| {
            b.handler(op, |job: Job| async move {
                Ok(match job.operation() {
                    "inventory.reserve" => Outcome::new("reserved"),
                    "inventory.release" => Outcome::new("released"),
                    "payments.charge" => Outcome::new("declined"),
                    _ => Outcome::new("sent")
                        .with_output(json!({ "template": job.params()["template"] })),
                })
            })
        })
    });
    let id = start(&mut c, "order", r#"{"order_id": "A-2"}"#).await;
    let wf = await_done(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed, "{wf:?}");
    assert_eq!(
        path(&mut c, &id).await,
        ["reserve", "charge", "release", "notify_failure"]
    );
    let vars: serde_json::Value = serde_json::from_str(&wf.vars).unwrap();
    assert_eq!(vars["template"], "order_failed");
    worker.stop().await;
}

#[tokio::test]
async fn a_workflow_started_twice_with_one_idempotency_key_exists_once() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let req = v1::StartWorkflowRequest {
        graph: "one".into(),
        input: r#"{"a": 1}"#.into(),
        idempotency_key: "order-77".into(),
        ..Default::default()
    };
    let first = c
        .workflows
        .start_workflow(req.clone())
        .await
        .unwrap()
        .into_inner();
    let second = c
        .workflows
        .start_workflow(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!first.existing);
    assert!(
        second.existing,
        "the repeat says it found the existing workflow"
    );
    assert_eq!(first.workflow.unwrap().id, second.workflow.unwrap().id);

    let conflicting = v1::StartWorkflowRequest {
        input: r#"{"a": 2}"#.into(),
        ..req
    };
    let err = c.workflows.start_workflow(conflicting).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("order-77"), "{}", err.message());

    let list = c
        .workflows
        .list_workflows(v1::ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.workflows.len(), 1);
}

#[tokio::test]
async fn a_repeated_completion_is_harmless_and_a_stale_lease_is_aborted() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let id = start(&mut c, "one", "").await;
    let job = poll_one(&mut c, "test.work").await;
    assert_eq!(job.workflow_id, id);
    assert_eq!(job.attempt, 1);
    assert_eq!(
        job.labels,
        ["done", "other"],
        "reserved labels are not offered"
    );

    let mut stale = job.clone();
    stale.lease_token = uuid::Uuid::new_v4().to_string();
    let err = complete(&mut c, &stale, "done", "{}").await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("lease lost"), "{}", err.message());

    let first = complete(&mut c, &job, "done", r#"{"x": 1}"#).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.workflow_status(), v1::WorkflowStatus::Completed);
    let again = complete(&mut c, &job, "done", r#"{"x": 1}"#).await.unwrap();
    assert!(
        again.duplicate,
        "the same completion again succeeds with no new effect"
    );
    let other = complete(&mut c, &job, "other", "{}").await.unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);

    let events = support::history(&mut c, &id).await;
    let completions = events
        .iter()
        .filter(|e| e.kind() == v1::EventKind::JobCompleted)
        .count();
    assert_eq!(completions, 1, "the repeat added no history");
}

#[tokio::test]
async fn client_mistakes_get_precise_status_codes() {
    let db = TestDb::new().await;
    let server = TestServer::start_with(&db.url, |cfg| cfg.max_payload_bytes = 1024).await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let id = start(&mut c, "one", "").await;
    let job = poll_one(&mut c, "test.work").await;

    let err = complete(&mut c, &job, "nope", "{}").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("done") && err.message().contains("other"),
        "lists offered labels: {}",
        err.message()
    );

    let err = complete(&mut c, &job, "timeout", "{}").await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "reserved labels are the engine's"
    );

    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(2048));
    let err = complete(&mut c, &job, "done", &big).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("limit"), "{}", err.message());

    let err = complete(&mut c, &job, "done", "[1]").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut unknown = job.clone();
    unknown.id += 1000;
    assert_eq!(
        complete(&mut c, &unknown, "done", "{}")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let missing = v1::GetWorkflowRequest {
        id: uuid::Uuid::new_v4().to_string(),
    };
    assert_eq!(
        c.workflows.get_workflow(missing).await.unwrap_err().code(),
        Code::NotFound
    );
    let bad_id = v1::GetWorkflowRequest {
        id: "not-a-uuid".into(),
    };
    assert_eq!(
        c.workflows.get_workflow(bad_id).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let no_graph = v1::StartWorkflowRequest {
        graph: "absent".into(),
        ..Default::default()
    };
    assert_eq!(
        c.workflows
            .start_workflow(no_graph)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // None of the mistakes changed anything: the job is still leased and completes normally.
    assert!(complete(&mut c, &job, "done", "{}").await.is_ok());
    let wf = await_done(&mut c, &id, Duration::from_secs(5)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed);
    assert_eq!(wf.step_count, 1);
}

#[tokio::test]
async fn cancelling_a_workflow_reaches_the_running_handler() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(
        &mut c,
        &ONE_STEP.replace("timeout: 30s", "timeout: 30s\n    heartbeat: 1s"),
    )
    .await;
    let started = Arc::new(Notify::new());
    let cancelled = Arc::new(Notify::new());
    let (s, k) = (started.clone(), cancelled.clone());
    let worker = run_worker(&server, move |b| {
        b.handler("test.work", move |job: Job| {
            let (s, k) = (s.clone(), k.clone());
            async move {
                s.notify_one();
                job.cancelled().cancelled().await;
                k.notify_one();
                Err::<Outcome, _>(HandlerError::new("stopped: cancelled"))
            }
        })
    });
    let id = start(&mut c, "one", "").await;
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("handler starts");
    let req = v1::CancelWorkflowRequest {
        id: id.clone(),
        reason: "customer changed their mind".into(),
        ..Default::default()
    };
    let wf = c
        .workflows
        .cancel_workflow(req)
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(wf.status(), v1::WorkflowStatus::Cancelled);
    tokio::time::timeout(Duration::from_secs(10), cancelled.notified())
        .await
        .expect("the handler's cancellation token fires");
    let events = support::history(&mut c, &id).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind() == v1::EventKind::JobCancelled)
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind() == v1::EventKind::WorkflowCancelled && e.message.contains("mind"))
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_job_created_through_one_server_wakes_a_poller_waiting_on_another() {
    let a = TestServer::start().await;
    let b = TestServer::start_with(a.db_url(), |_| {}).await;
    let mut ca = clients(&a).await;
    let mut cb = clients(&b).await;
    put_yaml(&mut ca, ONE_STEP).await;
    let poll = tokio::spawn(async move {
        let req = v1::PollJobsRequest {
            worker: "on-b".into(),
            operations: vec!["test.work".into()],
            max_jobs: 1,
            wait: Some(Duration::from_secs(20).try_into().unwrap()),
        };
        let jobs = cb.workers.poll_jobs(req).await.unwrap().into_inner().jobs;
        (jobs, Instant::now())
    });
    // Let the poll reach server B and start waiting (a waiting poll holds no connection).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let id = start(&mut ca, "one", "").await;
    let (jobs, received) = poll.await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].workflow_id, id);
    let latency = received - started;
    println!("cross-server dispatch: {latency:?}");
    assert!(
        latency < Duration::from_millis(500),
        "woken by notification, not by re-check: {latency:?}"
    );
}

#[tokio::test]
async fn a_workflow_with_a_later_start_waits_pending_and_then_runs() {
    let q = crate::support::quick_server().await;
    let mut c = clients(&q.server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let at = std::time::SystemTime::now() + Duration::from_millis(600);
    let req = v1::StartWorkflowRequest {
        graph: "one".into(),
        start_at: Some(at.into()),
        ..Default::default()
    };
    let wf = c
        .workflows
        .start_workflow(req)
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(wf.status(), v1::WorkflowStatus::Pending);
    assert!(wf.current_job.is_none(), "no job before the start time");
    let job = poll_one(&mut c, "test.work").await;
    assert_eq!(job.workflow_id, wf.id);
    assert!(
        std::time::SystemTime::now() >= at,
        "the job appeared only once the start time came"
    );
    let running = crate::support::get(&mut c, &wf.id).await;
    assert_eq!(running.status(), v1::WorkflowStatus::Running);
}

#[tokio::test]
async fn workflows_are_listed_newest_first_in_pages_with_filters() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(start(&mut c, "one", "").await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = v1::ListWorkflowsRequest {
            graph: "one".into(),
            status: v1::WorkflowStatus::Running.into(),
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = c.workflows.list_workflows(req).await.unwrap().into_inner();
        assert!(page.workflows.len() <= 2);
        seen.extend(page.workflows.into_iter().map(|w| w.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "every workflow once, newest first");
    let other = v1::ListWorkflowsRequest {
        status: v1::WorkflowStatus::Stuck.into(),
        ..Default::default()
    };
    assert!(
        c.workflows
            .list_workflows(other)
            .await
            .unwrap()
            .into_inner()
            .workflows
            .is_empty()
    );
}

const CHAIN: &str = "
name: chain
start: s1
nodes:
  s1:
    operation: test.step
    timeout: 30s
    on: { next: s2 }
  s2:
    operation: test.step
    timeout: 30s
    on: { next: s3 }
  s3:
    operation: other.step
    timeout: 30s
    on: { done: ~ }
";

#[tokio::test]
async fn a_completion_can_take_the_next_job_of_an_operation_the_worker_runs() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, CHAIN).await;
    let id = start(&mut c, "chain", "").await;
    let first = poll_one(&mut c, "test.step").await;
    let eager = |job: &v1::Job| v1::CompleteJobRequest {
        job_id: job.id,
        lease_token: job.lease_token.clone(),
        label: "next".into(),
        output: r#"{"n": 1}"#.into(),
        next_operations: vec!["test.step".into()],
    };
    let done = c
        .workers
        .complete_job(eager(&first))
        .await
        .unwrap()
        .into_inner();
    let second = done.next_job.expect("s2 is leased with the completion");
    assert_eq!((second.node.as_str(), second.attempt), ("s2", 1));
    assert!(!second.lease_token.is_empty());
    assert!(
        second.vars.contains("\"n\":1"),
        "the job sees the vars after the step: {}",
        second.vars
    );
    let again = c
        .workers
        .complete_job(eager(&first))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(
        again.next_job.map(|j| j.id),
        Some(second.id),
        "a repeated completion hands the same eager job over again"
    );

    // s3's operation is not one this worker runs: it goes to the queue for pollers.
    let after = c
        .workers
        .complete_job(eager(&second))
        .await
        .unwrap()
        .into_inner();
    assert!(after.next_job.is_none());
    let third = poll_one(&mut c, "other.step").await;
    complete(&mut c, &third, "done", "{}").await.unwrap();
    let wf = await_done(&mut c, &id, Duration::from_secs(5)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed);
    let leases = crate::support::history(&mut c, &id)
        .await
        .into_iter()
        .filter(|e| e.kind() == v1::EventKind::JobLeased)
        .count();
    assert_eq!(
        leases, 3,
        "every job's lease is in history, eager or polled"
    );
}

#[tokio::test]
async fn sdk_workers_run_chains_through_eager_dispatch() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, CHAIN).await;
    let worker = run_worker(&server, |b| {
        b.handler("test.step", |_job: Job| async { Ok(Outcome::new("next")) })
            .handler("other.step", |_job: Job| async { Ok(Outcome::new("done")) })
    });
    let id = start(&mut c, "chain", "").await;
    let wf = await_done(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(wf.status(), v1::WorkflowStatus::Completed);
    let eager = crate::support::history(&mut c, &id)
        .await
        .into_iter()
        .filter(|e| e.kind() == v1::EventKind::JobLeased && e.message.contains("previous step"))
        .count();
    assert_eq!(eager, 2, "s2 and s3 came with the completions of s1 and s2");
    worker.stop().await;
}

/// An `AwaitWorkflow` already waiting when its workflow completes, or is cancelled, is
/// answered with the workflow as it was committed, without reading it back: that answer must
/// be the same as a read from the database.
#[tokio::test]
async fn an_awaiting_call_gets_the_workflow_exactly_as_stored_when_it_finishes() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;

    let completed = start(&mut c, "one", r#"{"n": 1}"#).await;
    let cancelled = start(&mut c, "one", r#"{"n": 2}"#).await;
    let awaiting = |id: &str| {
        let mut c = c.clone();
        let id = id.to_owned();
        tokio::spawn(async move { await_done(&mut c, &id, Duration::from_secs(20)).await })
    };
    let awaiting_completed = awaiting(&completed);
    let awaiting_cancelled = awaiting(&cancelled);
    // Let both calls reach the server and wait there.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let job = poll_one(&mut c, "test.work").await;
    assert_eq!(job.workflow_id, completed, "the oldest job comes first");
    complete(&mut c, &job, "done", r#"{"paid": true}"#)
        .await
        .unwrap();
    let req = v1::CancelWorkflowRequest {
        id: cancelled.clone(),
        reason: "test".into(),
        operator: "ops".into(),
    };
    c.workflows.cancel_workflow(req).await.unwrap();

    for (task, id, status) in [
        (
            awaiting_completed,
            &completed,
            v1::WorkflowStatus::Completed,
        ),
        (
            awaiting_cancelled,
            &cancelled,
            v1::WorkflowStatus::Cancelled,
        ),
    ] {
        let awaited = task.await.unwrap();
        assert_eq!(awaited.status(), status);
        assert_eq!(awaited, get(&mut c, id).await);
    }
}

/// A start with a wait answers once its workflow has ended, as stored, in one call; when the
/// wait runs out first it answers with the workflow still running, started all the same.
#[tokio::test]
async fn a_start_with_a_wait_answers_once_its_workflow_has_ended() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let client = rondo_worker::Client::connect(&server.grpc_url()).unwrap();
    let waiting = |key: &str, wait: Duration| {
        StartOptions::new("one", json!({ "key": key }))
            .idempotency_key(key)
            .wait(wait)
    };

    // No worker yet: the wait runs out, and the workflow runs on.
    let asked = Instant::now();
    let early = client
        .start_workflow(waiting("w-1", Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(300), "it waited");
    assert!(!early.done && !early.existing);
    assert_eq!(early.workflow.status, WorkflowStatus::Running);
    let job = early
        .workflow
        .current_job
        .as_ref()
        .expect("the job in hand");
    assert_eq!(job.node, "work");
    assert_eq!(
        get(&mut c, &early.workflow.id).await.status(),
        v1::WorkflowStatus::Running,
        "started although the wait ran out"
    );

    let worker = run_worker(&server, |b| {
        b.handler("test.work", |_job: Job| async {
            Ok(Outcome::new("done").with_output(json!({ "paid": true })))
        })
    });
    let ended = client
        .start_workflow(waiting("w-2", Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(ended.done && !ended.existing, "{ended:?}");
    assert_eq!(ended.workflow.status, WorkflowStatus::Completed);
    assert_eq!(ended.workflow.outcome.as_deref(), Some("done"));
    assert_eq!(ended.workflow.vars, json!({ "key": "w-2", "paid": true }));
    let stored = client.get_workflow(&ended.workflow.id).await.unwrap();
    assert_eq!(ended.workflow, stored, "answered as stored");

    // The same start again: its workflow has ended, so the answer comes at once.
    let asked = Instant::now();
    let again = client
        .start_workflow(waiting("w-2", Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert!(again.done && again.existing);
    assert_eq!(again.workflow, stored);
    worker.stop().await;
}

/// Reads arriving together are done together: each call still gets its own workflow, two
/// calls for one workflow both get it, and an unknown id fails alone with NOT_FOUND.
#[tokio::test]
async fn workflows_read_together_each_get_their_own_answer() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(start(&mut c, "one", &format!(r#"{{"n": {n}}}"#)).await);
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut asked: Vec<String> = ids.iter().chain(ids.iter().take(5)).cloned().collect();
    asked.push(unknown.clone());
    let reads = asked.iter().map(|id| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let req = v1::GetWorkflowRequest { id: id.clone() };
            (id, c.workflows.get_workflow(req).await)
        }
    });
    for (id, answer) in futures::future::join_all(reads).await {
        match answer {
            Ok(answer) if id != unknown => {
                let workflow = answer.into_inner().workflow.unwrap();
                assert_eq!(workflow.id, id);
                let n = ids.iter().position(|i| *i == id).unwrap();
                assert_eq!(workflow.input, format!(r#"{{"n":{n}}}"#));
                assert_eq!(workflow.current_job.unwrap().node, "work");
            }
            Err(status) if id == unknown => {
                assert_eq!(status.code(), Code::NotFound);
                assert!(status.message().contains(&unknown), "{}", status.message());
            }
            other => panic!("workflow {id}: unexpected answer {other:?}"),
        }
    }
}
