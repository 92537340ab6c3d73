//! How jobs reach workers and how completions are committed: jobs handed to waiting pollers
//! in memory, idle polls that cost no queries, and completions committed together.

use std::time::Duration;

use rondo_gen::v1;
use rondo_server::testing::TestServer;

use crate::support::{
    Clients, ONE_STEP, await_done, clients, complete, eventually, history, metric, put_yaml, start,
};

const CLAIMS: &str = "rondo_claim_queries_total";

fn poll_request(operation: &str, max_jobs: u32, wait: Duration) -> v1::PollJobsRequest {
    v1::PollJobsRequest {
        worker: "test-worker".into(),
        operations: vec![operation.into()],
        max_jobs,
        wait: Some(wait.try_into().unwrap()),
    }
}

/// Starts `n` one-step workflows with nobody polling, then leases all their jobs.
async fn start_and_lease(c: &mut Clients, n: usize) -> Vec<v1::Job> {
    put_yaml(c, ONE_STEP).await;
    for _ in 0..n {
        start(c, "one", "{}").await;
    }
    let mut jobs = Vec::new();
    while jobs.len() < n {
        let req = poll_request("test.work", 64, Duration::from_secs(5));
        jobs.extend(c.workers.poll_jobs(req).await.unwrap().into_inner().jobs);
    }
    jobs
}

#[tokio::test]
async fn a_job_created_while_a_poller_waits_is_handed_over_without_a_claim_query() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    let mut poller = c.workers.clone();
    let waiting = tokio::spawn(async move {
        let req = poll_request("test.work", 1, Duration::from_secs(10));
        poller.poll_jobs(req).await
    });
    eventually(Duration::from_secs(5), || async {
        (metric(&server, "rondo_waiting_pollers").await == 1.0).then_some(())
    })
    .await;
    let claims = metric(&server, CLAIMS).await;

    let id = start(&mut c, "one", "{}").await;
    let jobs = waiting.await.unwrap().unwrap().into_inner().jobs;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].workflow_id, id);
    assert_eq!(
        metric(&server, CLAIMS).await,
        claims,
        "the job was handed over, not claimed"
    );
    complete(&mut c, &jobs[0], "done", "{}").await.unwrap();
    let done = await_done(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(done.status(), v1::WorkflowStatus::Completed);
    let leased = history(&mut c, &id)
        .await
        .into_iter()
        .find(|e| e.kind() == v1::EventKind::JobLeased)
        .expect("the lease is in the history");
    assert_eq!(leased.actor, "test-worker");
    assert_eq!(leased.message, "handed to a waiting poller");
}

#[tokio::test]
async fn polls_after_an_empty_claim_run_no_queries_until_a_job_is_announced() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    // Until its listener has been up for a look interval, the server trusts no emptiness it
    // found (another server may not know it listens yet): polls look until then.
    eventually(Duration::from_secs(5), || {
        let (server, mut workers) = (&server, c.workers.clone());
        async move {
            let before = metric(server, CLAIMS).await;
            let req = poll_request("test.work", 1, Duration::from_millis(10));
            assert!(
                workers
                    .poll_jobs(req)
                    .await
                    .unwrap()
                    .into_inner()
                    .jobs
                    .is_empty()
            );
            (metric(server, CLAIMS).await == before).then_some(())
        }
    })
    .await;
    let claims = metric(&server, CLAIMS).await;
    for _ in 0..3 {
        let req = poll_request("test.work", 1, Duration::from_millis(100));
        let jobs = c.workers.poll_jobs(req).await.unwrap().into_inner().jobs;
        assert!(jobs.is_empty());
    }
    assert_eq!(
        metric(&server, CLAIMS).await,
        claims,
        "no poll looked once one had found the operation empty"
    );

    // With nobody waiting the job is queued and announced, so the next poll looks again.
    let id = start(&mut c, "one", "{}").await;
    let req = poll_request("test.work", 1, Duration::from_secs(5));
    let jobs = c.workers.poll_jobs(req).await.unwrap().into_inner().jobs;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].workflow_id, id);
    assert_eq!(metric(&server, CLAIMS).await, claims + 1.0);
}

#[tokio::test]
async fn completions_sent_together_are_committed_together_and_each_answered() {
    const N: usize = 40;
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    let jobs = start_and_lease(&mut c, N).await;

    // One answers with a label the node does not offer, one with a wrong token: both are
    // refused, and neither stops the others in their batch.
    let answers = jobs.iter().enumerate().map(|(i, job)| {
        let mut c = c.clone();
        let mut job = job.clone();
        let label = if i == 0 { "bogus" } else { "done" };
        if i == 1 {
            job.lease_token = uuid::Uuid::new_v4().to_string();
        }
        async move { complete(&mut c, &job, label, "{\"n\": 1}").await }
    });
    let answers = futures::future::join_all(answers).await;
    assert_eq!(
        answers[0].as_ref().unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        answers[1].as_ref().unwrap_err().code(),
        tonic::Code::Aborted
    );
    for answer in &answers[2..] {
        let answer = answer.as_ref().expect("the others are applied");
        assert_eq!(answer.workflow_status(), v1::WorkflowStatus::Completed);
    }
    for job in &jobs[2..] {
        let done = await_done(&mut c, &job.workflow_id, Duration::from_secs(5)).await;
        assert_eq!(done.status(), v1::WorkflowStatus::Completed);
        assert_eq!(done.vars, "{\"n\":1}");
    }
    for job in &jobs[..2] {
        let open = await_done(&mut c, &job.workflow_id, Duration::from_millis(10)).await;
        assert_eq!(open.status(), v1::WorkflowStatus::Running);
    }
    let batches = metric(&server, "rondo_completion_batch_size_count").await;
    let applied = metric(&server, "rondo_completion_batch_size_sum").await;
    assert_eq!(applied, N as f64, "every completion went through a batch");
    assert!(
        batches < applied,
        "{applied} completions sent together took {batches} transactions"
    );
}

#[tokio::test]
async fn a_completion_the_database_rejects_fails_alone_and_the_rest_of_its_batch_commits() {
    const N: usize = 12;
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    let jobs = start_and_lease(&mut c, N).await;
    // PostgreSQL refuses a NUL character inside jsonb text; JSON itself allows it.
    let answers = jobs.iter().enumerate().map(|(i, job)| {
        let mut c = c.clone();
        let job = job.clone();
        let output = if i == 0 { r#"{"bad": "\u0000"}"# } else { "{}" };
        async move { complete(&mut c, &job, "done", output).await }
    });
    let answers = futures::future::join_all(answers).await;
    assert!(answers[0].is_err(), "the rejected completion fails");
    for answer in &answers[1..] {
        assert!(answer.is_ok(), "the others commit: {answer:?}");
    }
    let open = await_done(&mut c, &jobs[0].workflow_id, Duration::from_millis(10)).await;
    assert_eq!(
        open.status(),
        v1::WorkflowStatus::Running,
        "nothing of it was written"
    );
    for job in &jobs[1..] {
        let done = await_done(&mut c, &job.workflow_id, Duration::from_secs(5)).await;
        assert_eq!(done.status(), v1::WorkflowStatus::Completed);
    }
    // Connections of failed transactions never go back to the pool half-done.
    let retry = complete(&mut c, &jobs[0], "done", "{}").await.unwrap();
    assert_eq!(retry.workflow_status(), v1::WorkflowStatus::Completed);
}
