//! Operations endpoints: liveness, readiness, Prometheus metrics, gRPC health and reflection.

use std::time::Duration;

use rondo_server::testing::TestServer;

use crate::support::{
    ONE_STEP, await_done, clients, complete, http_get, poll_one, put_yaml, start,
};

#[tokio::test]
async fn the_http_port_serves_liveness_readiness_and_metrics() {
    let server = TestServer::start().await;
    assert_eq!(http_get(&server, "/livez").await.0, 200);
    assert_eq!(http_get(&server, "/readyz").await.0, 200);

    let mut c = clients(&server).await;
    put_yaml(&mut c, ONE_STEP).await;
    start(&mut c, "one", "").await;
    start(&mut c, "one", "").await;
    let job = poll_one(&mut c, "test.work").await;
    complete(&mut c, &job, "done", "{}").await.unwrap();
    await_done(&mut c, &job.workflow_id, Duration::from_secs(5)).await;
    let (status, metrics) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"rondo_jobs_created_total{operation="test.work"} 2"#,
        r#"rondo_jobs_completed_total{operation="test.work",label="done"} 1"#,
        r#"rondo_jobs_leased_total{operation="test.work"} 1"#,
        r#"rondo_queue_depth{operation="test.work"} 1"#,
        r#"rondo_workflows{status="completed"} 1"#,
        r#"rondo_workflows{status="running"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    assert!(
        metrics.contains("rondo_poll_wait_seconds_count"),
        "{metrics}"
    );

    let mut poller = c.workers.clone();
    let waiting = tokio::spawn(async move {
        let req = rondo_gen::v1::PollJobsRequest {
            worker: "idle".into(),
            operations: vec!["idle.op".into()],
            max_jobs: 1,
            wait: Some(Duration::from_secs(3).try_into().unwrap()),
        };
        poller.poll_jobs(req).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, metrics) = http_get(&server, "/metrics").await;
    assert!(metrics.contains("rondo_waiting_pollers 1"), "{metrics}");
    assert!(waiting.await.unwrap().unwrap().into_inner().jobs.is_empty());
}

#[tokio::test]
async fn grpc_health_and_reflection_answer() {
    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let req = tonic_health::pb::HealthCheckRequest {
        service: "rondo.v1.WorkerService".into(),
    };
    let status = health.check(req).await.unwrap().into_inner().status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "rondo.v1.GraphService",
        "rondo.v1.WorkflowService",
        "rondo.v1.WorkerService",
        "rondo.v1.InboxService",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
}
