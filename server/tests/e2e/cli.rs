//! The `rondo` CLI end to end, in-process against a real server: graph commands (offline and
//! online) and the workflow commands an operator uses.

use std::time::Duration;

use rondo_example_worker::{Faults, register};
use rondo_server::testing::TestServer;

use crate::support::{example_graph, rondo, rondo_at, run_worker};

#[tokio::test]
async fn graph_validate_accepts_the_examples_and_reports_every_error_offline() {
    // No server runs at this address: validate and simulate never need one.
    let offline = "http://127.0.0.1:9";
    let order = example_graph("order");
    let approval = example_graph("approval");
    let (code, out, err) = rondo_at(offline, &["graph", "validate", &order, &approval]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("order") && out.contains("approval"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nstart: a\nnodes:\n  a:\n    operation: x\n    on: { ok: b, nope: c }\n  b:\n    operation: y\n    on: { done: ~ }\n",
    )
    .unwrap();
    let (code, _, err) = rondo_at(offline, &["graph", "validate", bad.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("`nope`") && err.contains("`c`"),
        "names the label and the unknown node: {err}"
    );

    let (code, out, err) = rondo_at(
        offline,
        &[
            "graph",
            "simulate",
            &order,
            "--labels",
            "error,error,reserved,charged,sent",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("completed") && out.contains("sent"), "{out}");
}

#[tokio::test]
async fn an_operator_applies_graphs_and_follows_a_workflow_through_the_cli() {
    let server = TestServer::start().await;
    let order = example_graph("order");
    let (code, out, err) = rondo(&server, &["graph", "apply", &order]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 1") && out.contains("new"), "{out}");
    let (_, again, _) = rondo(&server, &["graph", "apply", &order]).await;
    assert!(
        again.contains("version 1") && again.contains("unchanged"),
        "{again}"
    );
    let (code, dot, _) = rondo(&server, &["graph", "show", "order", "--format", "dot"]).await;
    assert_eq!(code, 0);
    assert!(dot.contains("digraph") && dot.contains("reserve"), "{dot}");

    let worker = run_worker(&server, |b| register(b, &Faults::none(), Duration::ZERO));
    let (code, id, err) = rondo(
        &server,
        &[
            "workflow",
            "start",
            "order",
            "--input",
            r#"{"order_id": "C-1"}"#,
            "--idempotency-key",
            "c-1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_owned();
    let (code, out, err) = rondo(&server, &["workflow", "wait", &id, "--timeout", "20s"]).await;
    assert_eq!(
        code, 0,
        "wait exits 0 when the workflow completed: {out}{err}"
    );
    let (code, out, _) = rondo(&server, &["workflow", "get", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("completed") && out.contains("C-1"), "{out}");
    let (_, out, _) = rondo(&server, &["workflow", "history", &id]).await;
    for step in ["reserve", "charge", "confirm"] {
        assert!(out.contains(step), "history shows {step}: {out}");
    }
    let (_, out, _) = rondo(
        &server,
        &[
            "--output",
            "json",
            "workflow",
            "list",
            "--status",
            "completed",
        ],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_str(&out).expect("json output parses");
    assert!(out.contains(&id), "{listed}");
    let (code, _, err) = rondo(&server, &["workflow", "cancel", &id]).await;
    assert_ne!(code, 0, "a completed workflow cannot be cancelled");
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");

    // Start and wait in one command: it exits as `workflow wait` does.
    let start_waiting = |order: &'static str, wait: &'static str| {
        [
            "workflow", "start", "order", "--input", order, "--wait", wait,
        ]
    };
    let (code, out, err) = rondo(&server, &start_waiting(r#"{"order_id": "C-2"}"#, "20s")).await;
    assert_eq!(
        code, 0,
        "the workflow completed within the wait: {out}{err}"
    );
    assert!(out.contains("completed"), "{out}");
    worker.stop().await;
    let (code, out, err) = rondo(&server, &start_waiting(r#"{"order_id": "C-3"}"#, "300ms")).await;
    assert_eq!(
        code, 2,
        "no worker: still running when the wait ran out: {out}{err}"
    );
    assert!(err.contains("has not ended after"), "{err}");
    let id = out.split(':').next().unwrap_or_default().trim();
    let (_, out, _) = rondo(&server, &["workflow", "get", id]).await;
    assert!(
        out.contains("running") && out.contains("C-3"),
        "started all the same: {out}"
    );
}
