//! Conversion between the protobuf `Graph` and the engine's [`GraphDef`], and of validation
//! [`Problem`]s to `GraphProblem`. Rule: protobuf's conventions stop here: empty strings and
//! zero numbers mean "unset", durations are `google.protobuf.Duration`, params are JSON text.
//! Input that cannot even be represented in the model (bad params JSON, negative or malformed
//! durations, a NaN backoff) becomes a [`Problem`] naming the node, label and field; everything
//! else is left to [`GraphDef::validate`](rondo_engine::GraphDef::validate).

use std::time::Duration;

use rondo_engine::{EdgeDef, GraphDef, NodeDef, Nodes, Problem, Retry};

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

fn node_to_proto(node: &NodeDef) -> v1::Node {
    v1::Node {
        name: node.name.clone(),
        operation: node.operation.clone().unwrap_or_default(),
        human: node.human,
        prompt: node.prompt.clone().unwrap_or_default(),
        params: if node.params.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(node.params.clone()).to_string()
        },
        timeout: node.timeout.map(duration_to_proto),
        heartbeat: node.heartbeat.map(duration_to_proto),
        edges: node.edges.iter().map(edge_to_proto).collect(),
    }
}

fn edge_to_proto(edge: &EdgeDef) -> v1::Edge {
    v1::Edge {
        label: edge.label.clone(),
        to: edge.to.clone().unwrap_or_default(),
        retry: edge.retry.map(|r| v1::RetryPolicy {
            max: r.max,
            delay: (!r.delay.is_zero()).then(|| duration_to_proto(r.delay)),
            backoff: r.backoff,
            max_delay: r.max_delay.map(duration_to_proto),
        }),
        exhausted: edge.exhausted.clone().unwrap_or_default(),
    }
}

fn duration_to_proto(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).expect("sub-second nanos fit in i32"),
    }
}

/// The engine's form of a protobuf definition, or every problem that stops the conversion.
/// The result still needs [`GraphDef::validate`](rondo_engine::GraphDef::validate).
pub fn graph_from_proto(g: &v1::Graph) -> Result<GraphDef, Vec<Problem>> {
    let mut problems = Vec::new();
    let deadline = g
        .deadline
        .as_ref()
        .and_then(|d| duration_from_proto(d, &Place::graph("deadline"), &mut problems));
    let nodes = g
        .nodes
        .iter()
        .map(|n| node_from_proto(n, &mut problems))
        .collect();
    let def = GraphDef {
        name: g.name.clone(),
        description: g.description.clone(),
        start: g.start.clone(),
        max_steps: (g.max_steps != 0).then_some(g.max_steps),
        deadline,
        on_deadline: non_empty(&g.on_deadline),
        nodes: Nodes(nodes),
    };
    if problems.is_empty() {
        Ok(def)
    } else {
        Err(problems)
    }
}

fn node_from_proto(node: &v1::Node, problems: &mut Vec<Problem>) -> NodeDef {
    let place = |field: &'static str| Place {
        node: Some(&node.name),
        label: None,
        field,
    };
    let params = match node.params.trim() {
        "" => serde_json::Map::new(),
        text => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => {
                problems
                    .push(place("params").problem(
                        "`params` must be a JSON object, such as `{\"template\": \"x\"}`",
                    ));
                serde_json::Map::new()
            }
            Err(e) => {
                problems.push(place("params").problem(&format!(
                    "`params` is not valid JSON ({e}); send a JSON object"
                )));
                serde_json::Map::new()
            }
        },
    };
    NodeDef {
        name: node.name.clone(),
        operation: non_empty(&node.operation),
        human: node.human,
        prompt: non_empty(&node.prompt),
        params,
        timeout: node
            .timeout
            .as_ref()
            .and_then(|d| duration_from_proto(d, &place("timeout"), problems)),
        heartbeat: node
            .heartbeat
            .as_ref()
            .and_then(|d| duration_from_proto(d, &place("heartbeat"), problems)),
        edges: node
            .edges
            .iter()
            .map(|e| edge_from_proto(&node.name, e, problems))
            .collect(),
    }
}

fn edge_from_proto(node: &str, edge: &v1::Edge, problems: &mut Vec<Problem>) -> EdgeDef {
    let place = |field: &'static str| Place {
        node: Some(node),
        label: Some(&edge.label),
        field,
    };
    let retry = edge.retry.as_ref().map(|r| {
        let backoff = if r.backoff == 0.0 { 1.0 } else { r.backoff };
        if !backoff.is_finite() {
            problems.push(place("retry.backoff").problem(&format!(
                "`retry.backoff` is {}; send a number from 1 (constant delay) to 100",
                r.backoff
            )));
        }
        Retry {
            max: r.max,
            delay: r
                .delay
                .as_ref()
                .and_then(|d| duration_from_proto(d, &place("retry.delay"), problems))
                .unwrap_or_default(),
            backoff: if backoff.is_finite() { backoff } else { 1.0 },
            max_delay: r
                .max_delay
                .as_ref()
                .and_then(|d| duration_from_proto(d, &place("retry.max_delay"), problems)),
        }
    });
    EdgeDef {
        label: edge.label.clone(),
        to: non_empty(&edge.to),
        retry,
        exhausted: non_empty(&edge.exhausted),
    }
}

/// Where in the definition a value sits, for problems.
struct Place<'a> {
    node: Option<&'a str>,
    label: Option<&'a str>,
    field: &'static str,
}

impl Place<'_> {
    fn graph(field: &'static str) -> Self {
        Place {
            node: None,
            label: None,
            field,
        }
    }

    /// A problem here; `what` is prefixed with the node and edge it concerns.
    fn problem(&self, what: &str) -> Problem {
        let prefix = match (self.node, self.label) {
            (Some(node), Some(label)) => format!("node `{node}`: edge `{label}`: "),
            (Some(node), None) => format!("node `{node}`: "),
            _ => "the graph's ".to_owned(),
        };
        Problem {
            node: self.node.map(str::to_owned),
            label: self.label.map(str::to_owned),
            field: Some(self.field.to_owned()),
            message: format!("{prefix}{what}"),
        }
    }
}

fn duration_from_proto(
    d: &prost_types::Duration,
    place: &Place<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    let field = place.field;
    if d.seconds < 0 || d.nanos < 0 {
        problems.push(place.problem(&format!(
            "`{field}` is negative; durations must be greater than zero"
        )));
        return None;
    }
    let (Ok(secs), Ok(nanos)) = (u64::try_from(d.seconds), u32::try_from(d.nanos)) else {
        return None;
    };
    if nanos >= 1_000_000_000 {
        problems.push(place.problem(&format!(
            "`{field}` has {nanos} nanos; a protobuf duration keeps nanos below one second"
        )));
        return None;
    }
    Some(Duration::new(secs, nanos))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The protobuf form of a validation problem (empty strings for absent parts).
pub fn problem_to_proto(problem: &Problem) -> v1::GraphProblem {
    v1::GraphProblem {
        node: problem.node.clone().unwrap_or_default(),
        label: problem.label.clone().unwrap_or_default(),
        field: problem.field.clone().unwrap_or_default(),
        message: problem.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use rondo_engine::parse_yaml;

    use super::*;

    fn example(name: &str) -> GraphDef {
        let path = format!(
            "{}/../example-worker/graphs/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn yaml_to_proto_and_back_is_lossless() {
        for name in ["order", "approval"] {
            let def = example(name);
            let proto = graph_to_proto(&def);
            assert_eq!(graph_from_proto(&proto).unwrap(), def, "{name}");
        }
    }

    #[test]
    fn unset_fields_are_empty_in_proto() {
        let proto = graph_to_proto(&example("order"));
        assert_eq!(proto.max_steps, 500);
        assert_eq!(
            proto.deadline,
            Some(prost_types::Duration {
                seconds: 7200,
                nanos: 0
            })
        );
        let confirm = proto.nodes.iter().find(|n| n.name == "confirm").unwrap();
        assert_eq!(confirm.edges[0].to, "");
        assert_eq!(confirm.params, r#"{"template":"order_confirmed"}"#);
        let escalate = proto.nodes.iter().find(|n| n.name == "escalate").unwrap();
        assert_eq!(escalate.operation, "");
        let timeout = escalate
            .edges
            .iter()
            .find(|e| e.label == "timeout")
            .unwrap();
        assert_eq!(timeout.retry.unwrap().delay, None);
        assert_eq!(timeout.exhausted, "page_oncall");
    }

    #[test]
    fn zero_backoff_means_constant_and_empty_means_unset() {
        let proto = v1::Graph {
            name: "g".into(),
            start: "a".into(),
            nodes: vec![v1::Node {
                name: "a".into(),
                operation: "op".into(),
                edges: vec![
                    v1::Edge {
                        label: "ok".into(),
                        ..Default::default()
                    },
                    v1::Edge {
                        label: "error".into(),
                        to: "a".into(),
                        retry: Some(v1::RetryPolicy {
                            max: 2,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let def = graph_from_proto(&proto).unwrap();
        assert_eq!(def.max_steps, None);
        assert_eq!(def.on_deadline, None);
        let node = &def.nodes.0[0];
        assert_eq!((node.prompt.as_ref(), node.params.len()), (None, 0));
        assert_eq!(node.edges[0].to, None);
        assert_eq!(
            node.edges[1].retry,
            Some(Retry {
                max: 2,
                delay: Duration::ZERO,
                backoff: 1.0,
                max_delay: None
            })
        );
        assert!(def.validate().is_ok());
    }

    #[test]
    fn unrepresentable_values_become_problems_naming_node_and_field() {
        let negative = Some(prost_types::Duration {
            seconds: -5,
            nanos: 0,
        });
        let proto = v1::Graph {
            name: "g".into(),
            start: "a".into(),
            deadline: Some(prost_types::Duration {
                seconds: 1,
                nanos: 2_000_000_000,
            }),
            nodes: vec![v1::Node {
                name: "a".into(),
                operation: "op".into(),
                params: "{not json".into(),
                timeout: negative,
                edges: vec![v1::Edge {
                    label: "error".into(),
                    to: "a".into(),
                    retry: Some(v1::RetryPolicy {
                        max: 2,
                        backoff: f64::NAN,
                        delay: negative,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let problems = graph_from_proto(&proto).unwrap_err();
        let found: Vec<(Option<&str>, Option<&str>, Option<&str>)> = problems
            .iter()
            .map(|p| (p.node.as_deref(), p.label.as_deref(), p.field.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (None, None, Some("deadline")),
                (Some("a"), None, Some("params")),
                (Some("a"), None, Some("timeout")),
                (Some("a"), Some("error"), Some("retry.backoff")),
                (Some("a"), Some("error"), Some("retry.delay")),
            ]
        );
        assert!(
            problems[1]
                .message
                .starts_with("node `a`: `params` is not valid JSON"),
            "{}",
            problems[1]
        );
        assert_eq!(
            problems[2].message,
            "node `a`: `timeout` is negative; durations must be greater than zero"
        );
        assert!(
            problems[3]
                .message
                .starts_with("node `a`: edge `error`: `retry.backoff` is NaN"),
            "{}",
            problems[3]
        );

        let array = v1::Graph {
            nodes: vec![v1::Node {
                name: "b".into(),
                params: "[1]".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let problems = graph_from_proto(&array).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("node `b`: `params` must be a JSON object"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn problems_convert_with_empty_strings_for_absent_parts() {
        let problem = Problem {
            node: Some("a".into()),
            label: None,
            field: Some("timeout".into()),
            message: "node `a`: bad".into(),
        };
        assert_eq!(
            problem_to_proto(&problem),
            v1::GraphProblem {
                node: "a".into(),
                label: String::new(),
                field: "timeout".into(),
                message: "node `a`: bad".into(),
            }
        );
    }
}
