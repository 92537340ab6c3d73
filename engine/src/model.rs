//! The graph model: a definition as written ([`GraphDef`], the YAML/protobuf shape) and the
//! validated form the engine runs ([`Graph`]). Pure: no IO.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Labels the engine chooses itself; workers may not answer with them.
pub const RESERVED_LABELS: [&str; 2] = [LABEL_TIMEOUT, LABEL_ERROR];
/// Label chosen by the engine when a lease runs out.
pub const LABEL_TIMEOUT: &str = "timeout";
/// Label chosen by the engine when a worker reports a failure.
pub const LABEL_ERROR: &str = "error";
/// Step guard used when a graph declares no `max_steps`.
pub const DEFAULT_MAX_STEPS: u32 = 10_000;

/// A graph definition as written in YAML or protobuf, before validation.
///
/// Node and edge order is kept for display; the canonical hash ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphDef {
    /// Graph name; versions are kept per name.
    pub name: String,
    /// Free text shown to operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Node a new workflow enters first.
    pub start: String,
    /// Runaway-loop guard; `None` means [`DEFAULT_MAX_STEPS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// SLA for the whole workflow, counted from its start.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::option"
    )]
    pub deadline: Option<Duration>,
    /// Node entered when the deadline passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deadline: Option<String>,
    /// Nodes in definition order.
    pub nodes: Nodes,
}

/// Nodes in definition order; deserializing rejects a name given twice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nodes(pub Vec<NodeDef>);

/// One node as written.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDef {
    /// Unique name within the graph.
    pub name: String,
    /// Operation workers poll for; `None` for human nodes.
    pub operation: Option<String>,
    /// True for a node performed by operators from the inbox.
    pub human: bool,
    /// Text shown to the operator of a human node.
    pub prompt: Option<String>,
    /// Static parameters handed to workers (a JSON object).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Lease of one attempt, or the reminder clock of a human node.
    pub timeout: Option<Duration>,
    /// Heartbeat interval a worker must keep to hold the lease.
    pub heartbeat: Option<Duration>,
    /// Outgoing edges in definition order.
    pub edges: Vec<EdgeDef>,
}

/// One labelled edge as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeDef {
    /// The label that selects this edge.
    pub label: String,
    /// Target node; `None` makes the label terminal.
    pub to: Option<String>,
    /// Optional retry budget.
    pub retry: Option<Retry>,
    /// Node entered once the budget is spent; `None` makes exhaustion an incident.
    pub exhausted: Option<String>,
}

/// A retry budget with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// How many times in a row the edge may be taken.
    pub max: u32,
    /// Delay before the first retry.
    pub delay: Duration,
    /// Factor applied to the delay for each further retry (1.0: constant).
    pub backoff: f64,
    /// Upper bound for the computed delay.
    pub max_delay: Option<Duration>,
}

/// A validated graph: every reference resolves, every rule of SPEC §3 holds.
///
/// Only [`GraphDef::validate`] makes one, so code holding a `Graph` need not re-check.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub(crate) def: GraphDef,
    pub(crate) index: BTreeMap<String, usize>,
    pub(crate) hash: String,
}

impl Graph {
    /// The definition this graph was validated from.
    pub fn def(&self) -> &GraphDef {
        &self.def
    }

    /// Graph name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Canonical hash (hex SHA-256): equal for definitions that mean the same.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The start node.
    pub fn start(&self) -> &NodeDef {
        self.node(&self.def.start)
            .expect("validated start node exists")
    }

    /// The node called `name`, if any.
    pub fn node(&self, name: &str) -> Option<&NodeDef> {
        self.index.get(name).map(|&i| &self.def.nodes.0[i])
    }

    /// The effective step guard.
    pub fn max_steps(&self) -> u32 {
        self.def.max_steps.unwrap_or(DEFAULT_MAX_STEPS)
    }

    /// The workflow deadline, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.def.deadline
    }
}

impl NodeDef {
    /// The edge for `label`, if the node has one.
    pub fn edge(&self, label: &str) -> Option<&EdgeDef> {
        self.edges.iter().find(|e| e.label == label)
    }

    /// Labels a worker or operator may answer with: every edge label except reserved ones.
    pub fn offered_labels(&self) -> Vec<String> {
        self.edges
            .iter()
            .filter(|e| !RESERVED_LABELS.contains(&e.label.as_str()))
            .map(|e| e.label.clone())
            .collect()
    }
}
