//! GraphService end to end: versions by canonical hash, reads, validation.

use rondo_gen::v1;
use rondo_server::testing::TestServer;
use tonic::Code;

use crate::support::{ONE_STEP, clients, example_graph, put_yaml};

#[tokio::test]
async fn putting_the_same_graph_twice_keeps_the_version_and_a_change_makes_the_next() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    let yaml = std::fs::read_to_string(example_graph("order")).unwrap();
    assert_eq!(put_yaml(&mut c, &yaml).await, 1);
    assert_eq!(
        put_yaml(&mut c, &yaml).await,
        1,
        "identical definition returns the existing version"
    );
    let changed = yaml.replace("timeout: 30s", "timeout: 45s");
    assert_ne!(changed, yaml);
    assert_eq!(put_yaml(&mut c, &changed).await, 2);

    let latest = c
        .graphs
        .get_graph(v1::GetGraphRequest {
            name: "order".into(),
            version: 0,
        })
        .await
        .unwrap();
    let latest = latest.into_inner().graph.unwrap();
    assert_eq!(latest.version, 2);
    let first = c
        .graphs
        .get_graph(v1::GetGraphRequest {
            name: "order".into(),
            version: 1,
        })
        .await
        .unwrap();
    assert_ne!(first.into_inner().graph.unwrap().hash, latest.hash);

    put_yaml(&mut c, ONE_STEP).await;
    let list = c
        .graphs
        .list_graphs(v1::ListGraphsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(String, u32)> = list
        .graphs
        .iter()
        .map(|g| (g.name.clone(), g.latest_version))
        .collect();
    assert_eq!(names, vec![("one".to_owned(), 1), ("order".to_owned(), 2)]);
}

#[tokio::test]
async fn an_invalid_graph_is_rejected_with_every_problem_and_stores_nothing() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    let mut graph =
        rondo_gen::convert::graph_to_proto(&rondo_engine::parse_yaml(ONE_STEP).unwrap());
    graph.start = "missing".into();
    graph.nodes[0].edges[0].to = "nowhere".into();
    let err = c
        .graphs
        .put_graph(v1::PutGraphRequest {
            graph: Some(graph.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("missing"), "{}", err.message());
    assert!(err.message().contains("nowhere"), "{}", err.message());

    let validated = c
        .graphs
        .validate_graph(v1::ValidateGraphRequest { graph: Some(graph) })
        .await
        .unwrap();
    let validated = validated.into_inner();
    assert!(!validated.valid);
    assert!(validated.errors.len() >= 2, "{:?}", validated.errors);

    let missing = c
        .graphs
        .get_graph(v1::GetGraphRequest {
            name: "one".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
