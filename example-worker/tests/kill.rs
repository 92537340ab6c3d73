//! A worker PROCESS killed mid-job (SIGKILL, not a dropped future): its heartbeats stop, the
//! lease runs out, and the engine takes the `timeout` route. Lives in this crate because the
//! test needs the real `rondo-example-worker` binary.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rondo_server::testing::{TestDb, TestServer};
use rondo_worker::{Client, StartOptions, WorkflowStatus};

const GRAPH: &str = "
name: killed
start: reserve
nodes:
  reserve:
    operation: inventory.reserve
    timeout: 1s
    on:
      reserved: ~
      timeout: { to: recover }
  recover:
    human: true
    prompt: 'the reserving worker died'
    on: { done: ~ }
";

#[tokio::test]
async fn a_killed_worker_process_leads_to_the_timeout_route_once_its_lease_runs_out() {
    let db = TestDb::new().await;
    let server = TestServer::start_with(&db.url, |cfg| {
        cfg.sweep_interval = Duration::from_millis(25)
    })
    .await;
    let client = Client::connect(&server.grpc_url()).unwrap();
    client
        .put_graph(&rondo_engine::parse_yaml(GRAPH).unwrap())
        .await
        .unwrap();

    let mut worker = Command::new(env!("CARGO_BIN_EXE_rondo-example-worker"))
        .args([
            "--server",
            &server.grpc_url(),
            "--identity",
            "doomed",
            "--work-ms",
            "600000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example worker starts");
    let started = client
        .start_workflow(StartOptions::new("killed", serde_json::json!({})))
        .await
        .unwrap();
    let id = started.workflow.id;

    let deadline = Instant::now() + Duration::from_secs(30);
    let leased_at = loop {
        let wf = client.get_workflow(&id).await.unwrap();
        if wf
            .current_job
            .as_ref()
            .is_some_and(|j| j.worker.as_deref() == Some("doomed"))
        {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the worker process never leased the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Alive, the worker keeps its 1 s lease by heartbeating well past it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let wf = client.get_workflow(&id).await.unwrap();
    assert_eq!(
        wf.current_node.as_deref(),
        Some("reserve"),
        "heartbeats held the lease while the process lived"
    );

    worker.kill().expect("SIGKILL the worker");
    worker.wait().unwrap();
    let killed_at = Instant::now();
    let wf = loop {
        let wf = client.get_workflow(&id).await.unwrap();
        if wf.current_node.as_deref() == Some("recover") || wf.status.is_done() {
            break wf;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no timeout after the kill: {wf:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(wf.status, WorkflowStatus::Running);
    assert_eq!(
        wf.current_node.as_deref(),
        Some("recover"),
        "the timeout edge was taken"
    );
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the lease ran out about 1 s after the kill, took {took:?}"
    );
    assert!(killed_at - leased_at > Duration::from_secs(2));
}
