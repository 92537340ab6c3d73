//! Graphs written in Rust (SPEC §3, way 3): a fluent builder for the engine's
//! [`GraphDef`], validated by the same [`GraphDef::validate`] as YAML and protobuf, so a graph
//! means the same (and hashes the same) however it was written.
//!
//! ```
//! use std::time::Duration;
//!
//! use rondo_worker::{GraphBuilder, Node, Retry};
//!
//! let secs = Duration::from_secs;
//! let validated = GraphBuilder::new("order")
//!     .start("reserve")
//!     .max_steps(500)
//!     .node(
//!         Node::operation("reserve", "inventory.reserve")
//!             .timeout(secs(30))
//!             .on("reserved", "charge")
//!             .terminal("out_of_stock")
//!             .retry("error", "reserve", Retry::new(3).delay(secs(1)).backoff(2.0).exhausted("escalate"))
//!             .retry("timeout", "reserve", Retry::new(3).exhausted("escalate")),
//!     )
//!     .node(
//!         Node::operation("charge", "payments.charge")
//!             .timeout(secs(60))
//!             .param("currency", "EUR")
//!             .terminal("charged")
//!             .terminal("declined")
//!             .on("error", "escalate")
//!             .on("timeout", "escalate"),
//!     )
//!     .node(
//!         Node::human("escalate")
//!             .prompt("order {{vars.order_id}} keeps failing at {{from}}")
//!             .on("retry", "reserve")
//!             .terminal("give_up"),
//!     )
//!     .build()
//!     .expect("a valid graph");
//! assert_eq!(validated.graph.name(), "order");
//! ```

use std::time::Duration;

use rondo_engine::{EdgeDef, GraphDef, NodeDef, Nodes, Problem, Validated};
use serde_json::Value;

/// Builds a graph definition node by node; [`GraphBuilder::build`] validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphBuilder {
    /// The definition so far.
    def: GraphDef,
}

impl GraphBuilder {
    /// A graph called `name` with no nodes yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            def: GraphDef {
                name: name.into(),
                description: String::new(),
                start: String::new(),
                max_steps: None,
                deadline: None,
                on_deadline: None,
                nodes: Nodes::default(),
            },
        }
    }

    /// Free text shown to operators.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.def.description = description.into();
        self
    }

    /// The node a new workflow enters first.
    #[must_use]
    pub fn start(mut self, node: impl Into<String>) -> Self {
        self.def.start = node.into();
        self
    }

    /// Runaway-loop guard: a workflow taking more steps becomes STUCK.
    #[must_use]
    pub fn max_steps(mut self, max_steps: u32) -> Self {
        self.def.max_steps = Some(max_steps);
        self
    }

    /// SLA for the whole workflow, counted from its start.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.def.deadline = Some(deadline);
        self
    }

    /// Node entered when the deadline passes.
    #[must_use]
    pub fn on_deadline(mut self, node: impl Into<String>) -> Self {
        self.def.on_deadline = Some(node.into());
        self
    }

    /// Adds a node (nodes keep the order they are added in, for display).
    #[must_use]
    pub fn node(mut self, node: Node) -> Self {
        self.def.nodes.0.push(node.def);
        self
    }

    /// The definition as written, without validation.
    pub fn into_def(self) -> GraphDef {
        self.def
    }

    /// Validates the definition: the validated graph with any warnings, or every problem.
    pub fn build(self) -> Result<Validated, Vec<Problem>> {
        self.def.validate()
    }
}

/// One node of a graph under construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node so far.
    def: NodeDef,
}

impl Node {
    /// A node called `name` that workers perform by polling for `operation`.
    pub fn operation(name: impl Into<String>, operation: impl Into<String>) -> Self {
        let mut node = Self::named(name);
        node.def.operation = Some(operation.into());
        node
    }

    /// A node called `name` that operators perform from the inbox.
    pub fn human(name: impl Into<String>) -> Self {
        let mut node = Self::named(name);
        node.def.human = true;
        node
    }

    fn named(name: impl Into<String>) -> Self {
        Self {
            def: NodeDef {
                name: name.into(),
                operation: None,
                human: false,
                prompt: None,
                params: serde_json::Map::new(),
                timeout: None,
                heartbeat: None,
                edges: Vec::new(),
            },
        }
    }

    /// Text shown to the operator of a human node; `{{vars.x}}`, `{{input.x}}`, `{{from}}`
    /// and `{{node}}` are filled in when the job is shown.
    #[must_use]
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.def.prompt = Some(prompt.into());
        self
    }

    /// Sets one static parameter handed to workers with every job of this node.
    #[must_use]
    pub fn param(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.def.params.insert(key.into(), value.into());
        self
    }

    /// Lease of one attempt (operation nodes) or reminder clock (human nodes).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.def.timeout = Some(timeout);
        self
    }

    /// A worker must heartbeat at least this often or lose the lease early.
    #[must_use]
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.def.heartbeat = Some(heartbeat);
        self
    }

    /// Edge: a job ending with `label` moves the workflow to node `to`.
    #[must_use]
    pub fn on(self, label: impl Into<String>, to: impl Into<String>) -> Self {
        self.edge(label.into(), Some(to.into()), None)
    }

    /// Terminal edge: a job ending with `label` completes the workflow with it as outcome.
    #[must_use]
    pub fn terminal(self, label: impl Into<String>) -> Self {
        self.edge(label.into(), None, None)
    }

    /// Retry edge: `label` leads to `to` at most `retry.max` times in a row, then to the
    /// retry's exhausted route (or an incident).
    #[must_use]
    pub fn retry(self, label: impl Into<String>, to: impl Into<String>, retry: Retry) -> Self {
        self.edge(label.into(), Some(to.into()), Some(retry))
    }

    fn edge(mut self, label: String, to: Option<String>, retry: Option<Retry>) -> Self {
        let (retry, exhausted) = match retry {
            Some(retry) => (Some(retry.budget), retry.exhausted),
            None => (None, None),
        };
        self.def.edges.push(EdgeDef {
            label,
            to,
            retry,
            exhausted,
        });
        self
    }
}

/// A retry budget for [`Node::retry`], with optional backoff and an exhausted route.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// The engine's budget; defaults match YAML's (no delay, constant backoff, no cap).
    budget: rondo_engine::Retry,
    /// Node entered once the budget is spent; `None` makes exhaustion an incident.
    exhausted: Option<String>,
}

impl Retry {
    /// At most `max` times in a row, at once, with no exhausted route.
    pub fn new(max: u32) -> Self {
        Self {
            budget: rondo_engine::Retry {
                max,
                delay: Duration::ZERO,
                backoff: 1.0,
                max_delay: None,
            },
            exhausted: None,
        }
    }

    /// Delay before the first retry's job becomes available.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.budget.delay = delay;
        self
    }

    /// Factor applied to the delay for each further retry in the streak.
    #[must_use]
    pub fn backoff(mut self, backoff: f64) -> Self {
        self.budget.backoff = backoff;
        self
    }

    /// Upper bound for the computed delay.
    #[must_use]
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.budget.max_delay = Some(max_delay);
        self
    }

    /// Node entered instead once the budget is spent.
    #[must_use]
    pub fn exhausted(mut self, node: impl Into<String>) -> Self {
        self.exhausted = Some(node.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use rondo_engine::parse_yaml;
    use serde_json::json;

    use super::*;

    const ORDER_YAML: &str = r#"
name: order
description: reserve, charge, confirm
start: reserve
max_steps: 500
deadline: 2h
on_deadline: escalate
nodes:
  reserve:
    operation: inventory.reserve
    timeout: 30s
    heartbeat: 10s
    on:
      reserved: charge
      out_of_stock: notify_failure
      error:   { to: reserve, retry: { max: 3, delay: 1s, backoff: 2.0, max_delay: 1m }, exhausted: escalate }
      timeout: { to: reserve, retry: { max: 3, delay: 5s }, exhausted: escalate }
  charge:
    operation: payments.charge
    timeout: 1m
    on:
      charged: confirm
      declined: release
      timeout: { to: charge, retry: { max: 5, delay: 2s, backoff: 2.0 }, exhausted: escalate }
  release:
    operation: inventory.release
    on: { released: notify_failure }
  escalate:
    human: true
    prompt: "Order {{vars.order_id}} keeps failing at {{from}}; retry or give up?"
    timeout: 1h
    on:
      retry: reserve
      give_up: release
      timeout: { to: escalate, retry: { max: 3 }, exhausted: page_oncall }
  page_oncall:
    operation: pager.page
    on: { paged: escalate }
  confirm:
    operation: email.send
    params: { template: order_confirmed, copies: 2 }
    on: { sent: ~ }
  notify_failure:
    operation: email.send
    params: { template: order_failed }
    on: { sent: ~ }
"#;

    fn order_builder() -> GraphBuilder {
        let secs = Duration::from_secs;
        GraphBuilder::new("order")
            .description("reserve, charge, confirm")
            .start("reserve")
            .max_steps(500)
            .deadline(secs(2 * 3600))
            .on_deadline("escalate")
            .node(
                Node::operation("reserve", "inventory.reserve")
                    .timeout(secs(30))
                    .heartbeat(secs(10))
                    .on("reserved", "charge")
                    .on("out_of_stock", "notify_failure")
                    .retry(
                        "error",
                        "reserve",
                        Retry::new(3)
                            .delay(secs(1))
                            .backoff(2.0)
                            .max_delay(secs(60))
                            .exhausted("escalate"),
                    )
                    .retry(
                        "timeout",
                        "reserve",
                        Retry::new(3).delay(secs(5)).exhausted("escalate"),
                    ),
            )
            .node(
                Node::operation("charge", "payments.charge")
                    .timeout(secs(60))
                    .on("charged", "confirm")
                    .on("declined", "release")
                    .retry(
                        "timeout",
                        "charge",
                        Retry::new(5)
                            .delay(secs(2))
                            .backoff(2.0)
                            .exhausted("escalate"),
                    ),
            )
            .node(Node::operation("release", "inventory.release").on("released", "notify_failure"))
            .node(
                Node::human("escalate")
                    .prompt("Order {{vars.order_id}} keeps failing at {{from}}; retry or give up?")
                    .timeout(secs(3600))
                    .on("retry", "reserve")
                    .on("give_up", "release")
                    .retry(
                        "timeout",
                        "escalate",
                        Retry::new(3).exhausted("page_oncall"),
                    ),
            )
            .node(Node::operation("page_oncall", "pager.page").on("paged", "escalate"))
            .node(
                Node::operation("confirm", "email.send")
                    .param("template", "order_confirmed")
                    .param("copies", 2)
                    .terminal("sent"),
            )
            .node(
                Node::operation("notify_failure", "email.send")
                    .param("template", "order_failed")
                    .terminal("sent"),
            )
    }

    #[test]
    fn builder_graph_equals_the_same_graph_in_yaml() {
        let from_yaml = parse_yaml(ORDER_YAML).expect("the YAML parses");
        let built = order_builder();
        assert_eq!(built.clone().into_def(), from_yaml);

        let built = built.build().expect("the builder graph is valid");
        let parsed = from_yaml.validate().expect("the YAML graph is valid");
        assert_eq!(built.graph.hash(), parsed.graph.hash());
        assert_eq!(built.graph, parsed.graph);
        assert_eq!(built.warnings, parsed.warnings);
    }

    #[test]
    fn params_are_json_values() {
        let def = order_builder().into_def();
        let confirm = def
            .nodes
            .0
            .iter()
            .find(|n| n.name == "confirm")
            .expect("confirm node");
        assert_eq!(
            Value::Object(confirm.params.clone()),
            json!({"template": "order_confirmed", "copies": 2})
        );
    }

    #[test]
    fn invalid_builder_graph_returns_its_problems() {
        let problems = GraphBuilder::new("broken")
            .start("first")
            .node(Node::operation("first", "a.b").on("done", "nowhere"))
            .build()
            .expect_err("an edge to an unknown node is refused");
        assert!(
            problems.iter().any(|p| p.to_string().contains("nowhere")),
            "no problem names the unknown node: {problems:?}"
        );
    }
}
