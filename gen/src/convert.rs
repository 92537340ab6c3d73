//! The protobuf `Graph` to and from the engine's [`GraphDef`]. Empty strings and unset messages
//! mean "not given"; what cannot be expressed in the model (bad params JSON, negative or
//! out-of-range durations, a non-finite backoff) comes back as [`Problem`]s naming the node
//! and field, all at once.

use std::time::Duration;

use rondo_engine::model::{EdgeDef, NodeDef, Nodes, Retry};
use rondo_engine::{GraphDef, Problem};
use serde_json::{Map, Value};

use crate::v1;

/// The protobuf form of a definition.
pub fn graph_to_proto(def: &GraphDef) -> v1::Graph {
    v1::Graph {
        name: def.name.clone(),
        description: def.description.clone(),
        start: def.start.clone(),
        max_steps: def.max_steps.unwrap_or(0),
        deadline: def.deadline.map(duration_to_proto),
        on_deadline: def.on_deadline.clone().unwrap_or_default(),
        nodes: def.nodes.0.iter().map(node_to_proto).collect(),
    }
}

fn node_to_proto(n: &NodeDef) -> v1::Node {
    v1::Node {
        name: n.name.clone(),
        operation: n.operation.clone().unwrap_or_default(),
        human: n.human,
        prompt: n.prompt.clone().unwrap_or_default(),
        params: if n.params.is_empty() { String::new() } else { Value::Object(n.params.clone()).to_string() },
        timeout: n.timeout.map(duration_to_proto),
        heartbeat: n.heartbeat.map(duration_to_proto),
        edges: n.edges.iter().map(edge_to_proto).collect(),
    }
}

fn edge_to_proto(e: &EdgeDef) -> v1::Edge {
    v1::Edge {
        label: e.label.clone(),
        to: e.to.clone().unwrap_or_default(),
        retry: e.retry.map(|r| v1::RetryPolicy {
            max: r.max,
            delay: (!r.delay.is_zero()).then(|| duration_to_proto(r.delay)),
            backoff: r.backoff,
            max_delay: r.max_delay.map(duration_to_proto),
        }),
        exhausted: e.exhausted.clone().unwrap_or_default(),
    }
}

/// The definition a protobuf `Graph` describes, or every problem that prevents reading it.
/// The result still needs [`GraphDef::validate`].
pub fn graph_from_proto(g: &v1::Graph) -> Result<GraphDef, Vec<Problem>> {
    let mut problems = Vec::new();
    let deadline = opt_duration(g.deadline.as_ref(), None, "deadline", &mut problems);
    let nodes = g.nodes.iter().map(|n| node_from_proto(n, &mut problems)).collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(GraphDef {
        name: g.name.clone(),
        description: g.description.clone(),
        start: g.start.clone(),
        max_steps: (g.max_steps != 0).then_some(g.max_steps),
        deadline,
        on_deadline: non_empty(&g.on_deadline),
        nodes: Nodes(nodes),
    })
}

fn node_from_proto(n: &v1::Node, problems: &mut Vec<Problem>) -> NodeDef {
    let name = Some(n.name.as_str());
    let params = if n.params.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&n.params) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                problems.push(problem(name, None, "params", "`params` must be a JSON object"));
                Map::new()
            }
            Err(e) => {
                problems.push(problem(name, None, "params", &format!("`params` is not valid JSON: {e}")));
                Map::new()
            }
        }
    };
    let edges = n
        .edges
        .iter()
        .map(|e| {
            let retry = e.retry.as_ref().map(|r| {
                if !r.backoff.is_finite() {
                    problems.push(problem(name, Some(&e.label), "retry.backoff", "`retry.backoff` must be a finite number"));
                }
                Retry {
                    max: r.max,
                    delay: opt_duration(r.delay.as_ref(), Some((name, &e.label)), "retry.delay", problems)
                        .unwrap_or_default(),
                    backoff: if r.backoff == 0.0 { 1.0 } else { r.backoff },
                    max_delay: opt_duration(r.max_delay.as_ref(), Some((name, &e.label)), "retry.max_delay", problems),
                }
            });
            EdgeDef { label: e.label.clone(), to: non_empty(&e.to), retry, exhausted: non_empty(&e.exhausted) }
        })
        .collect();
    NodeDef {
        name: n.name.clone(),
        operation: non_empty(&n.operation),
        human: n.human,
        prompt: non_empty(&n.prompt),
        params,
        timeout: opt_duration(n.timeout.as_ref(), Some((name, "")), "timeout", problems),
        heartbeat: opt_duration(n.heartbeat.as_ref(), Some((name, "")), "heartbeat", problems),
        edges,
    }
}

/// A validation problem on the wire.
pub fn problem_to_proto(p: &Problem) -> v1::GraphProblem {
    v1::GraphProblem {
        node: p.node.clone().unwrap_or_default(),
        label: p.label.clone().unwrap_or_default(),
        field: p.field.clone().unwrap_or_default(),
        message: p.message.clone(),
    }
}

fn duration_to_proto(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn opt_duration(
    d: Option<&prost_types::Duration>,
    at: Option<(Option<&str>, &str)>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    let d = d?;
    match Duration::try_from(*d) {
        Ok(d) => Some(d),
        Err(_) => {
            let (node, label) = at.unwrap_or((None, ""));
            let label = (!label.is_empty()).then_some(label);
            problems.push(problem(node, label, field, &format!("`{field}` must be a positive duration")));
            None
        }
    }
}

fn problem(node: Option<&str>, label: Option<&str>, field: &str, message: &str) -> Problem {
    let prefix = match (node, label) {
        (Some(n), Some(l)) => format!("node `{n}`: edge `{l}`: "),
        (Some(n), None) => format!("node `{n}`: "),
        _ => String::new(),
    };
    Problem {
        node: node.map(str::to_owned),
        label: label.map(str::to_owned),
        field: Some(field.to_owned()),
        message: format!("{prefix}{message}"),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = include_str!("../../example-worker/graphs/order.yaml");

    #[test]
    fn yaml_and_protobuf_describe_the_same_graph() {
        let def = rondo_engine::parse_yaml(ORDER).expect("order graph parses");
        let back = graph_from_proto(&graph_to_proto(&def)).expect("converts back");
        assert_eq!(back, def);
        let hash = |d: &GraphDef| d.validate().map(|v| v.graph.hash().to_owned()).expect("valid");
        assert_eq!(hash(&back), hash(&def));
    }

    #[test]
    fn unreadable_fields_are_reported_together_with_node_and_field() {
        let mut g = graph_to_proto(&rondo_engine::parse_yaml(ORDER).unwrap());
        g.nodes[0].params = "[1]".into();
        g.nodes[1].timeout = Some(prost_types::Duration { seconds: -5, nanos: 0 });
        let problems = graph_from_proto(&g).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].node.as_deref(), Some("reserve"));
        assert_eq!(problems[0].field.as_deref(), Some("params"));
        assert_eq!(problems[1].node.as_deref(), Some("charge"));
        assert!(problems[1].message.contains("timeout"), "{}", problems[1].message);
    }
}
