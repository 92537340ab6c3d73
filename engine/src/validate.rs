//! Validation of graph definitions against the rules of SPEC §3, and the canonical hash. Rule:
//! report every problem at once, each naming the node, the label and the field concerned and
//! saying how to fix it; only a definition with no errors becomes a [`Graph`]. Pure: no IO.
//!
//! Decisions where SPEC §3 leaves room:
//! - reserved labels route like any label, terminal included; but a human node may not have an
//!   `error` edge (nothing produces `error` there) nor a `timeout` edge without a `timeout`
//!   clock, and every node must offer at least one ordinary label;
//! - a human node takes no `params` or `heartbeat`, and only a human node takes a `prompt`;
//! - a zero retry `delay` means "at once" and is allowed; every other duration must be
//!   positive and at most ten years;
//! - `exhausted` and `on_deadline` edges count for reachability, and for reaching a terminal
//!   label (a deadline always fires eventually);
//! - for the cycle rule, an `exhausted` edge is unbounded (it is taken each time a streak runs
//!   out), edges with a `retry` budget and edges touching a human node are bounded.

mod hash;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};
use serde::Serialize;

use crate::duration;
use crate::model::{
    DEFAULT_MAX_STEPS, EdgeDef, Graph, GraphDef, LABEL_ERROR, LABEL_TIMEOUT, NodeDef,
};
use crate::template;

/// Longest name of a graph, node or operation, and longest label.
pub const MAX_NAME_LEN: usize = 128;
/// Largest retry budget of one edge.
pub const MAX_RETRIES: u32 = 1000;
/// Largest backoff factor.
pub const MAX_BACKOFF: f64 = 100.0;
/// Longest duration a graph may declare: ten years, far beyond any SLA, well within the
/// range of timestamps.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);
/// Deepest nesting of a node's `params`, so the stored definition stays well within the
/// nesting limits of JSON readers.
pub const MAX_PARAMS_DEPTH: usize = 32;

/// One finding about a graph definition: an error, or a warning that does not stop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Node concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Label concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Field concerned (`start`, `timeout`, `retry.max`, ...), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and how to fix it, naming the node and label.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A definition that passed validation: the runnable graph and the warnings found.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The graph, ready to run.
    pub graph: Graph,
    /// Findings that do not stop the graph, such as an operation node with no `timeout`.
    pub warnings: Vec<Problem>,
}

impl GraphDef {
    /// Checks every rule of SPEC §3 and reports all errors at once; on success returns the
    /// runnable [`Graph`] (with its canonical hash) and the warnings.
    pub fn validate(&self) -> Result<Validated, Vec<Problem>> {
        let mut check = Check::new(self);
        check.graph_fields();
        check.node_names();
        for node in &self.nodes.0 {
            check.node(node);
        }
        check.structure();
        if !check.errors.is_empty() {
            return Err(check.errors);
        }
        let index = check
            .index
            .iter()
            .map(|(name, &i)| ((*name).to_owned(), i))
            .collect();
        let graph = Graph {
            def: self.clone(),
            index,
            hash: hash::canonical_hash(self),
        };
        Ok(Validated {
            graph,
            warnings: check.warnings,
        })
    }
}

/// Builds a problem; `node`, `label` and `field` say what it is about.
fn problem(
    node: Option<&str>,
    label: Option<&str>,
    field: Option<&str>,
    message: String,
) -> Problem {
    Problem {
        node: node.map(str::to_owned),
        label: label.map(str::to_owned),
        field: field.map(str::to_owned),
        message,
    }
}

/// Letters, digits, `_`, `-` and `.`, 1 to [`MAX_NAME_LEN`] long.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A name that also starts with a letter or `_`.
fn is_label(s: &str) -> bool {
    is_name(s) && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
}

fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Collects problems while walking one definition.
struct Check<'a> {
    def: &'a GraphDef,
    /// First definition of each node name.
    index: BTreeMap<&'a str, usize>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Check<'a> {
    fn new(def: &'a GraphDef) -> Self {
        let mut index = BTreeMap::new();
        for (i, node) in def.nodes.0.iter().enumerate() {
            index.entry(node.name.as_str()).or_insert(i);
        }
        Check {
            def,
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn error(
        &mut self,
        node: Option<&str>,
        label: Option<&str>,
        field: Option<&str>,
        message: String,
    ) {
        self.errors.push(problem(node, label, field, message));
    }

    fn warn(
        &mut self,
        node: Option<&str>,
        label: Option<&str>,
        field: Option<&str>,
        message: String,
    ) {
        self.warnings.push(problem(node, label, field, message));
    }

    fn known(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// A positive duration of at most [`MAX_DURATION`]; `what` names its owner for messages.
    fn duration(
        &mut self,
        node: Option<&str>,
        label: Option<&str>,
        field: &str,
        what: &str,
        d: Duration,
    ) {
        if d.is_zero() {
            self.error(
                node,
                label,
                Some(field),
                format!("{what}`{field}` must be greater than zero; give it a positive duration such as `30s`, or remove it"),
            );
        } else if d > MAX_DURATION {
            self.error(
                node,
                label,
                Some(field),
                format!(
                    "{what}`{field}` is {}, longer than the limit of {}; shorten it",
                    duration::format(d),
                    duration::format(MAX_DURATION)
                ),
            );
        }
    }

    fn graph_fields(&mut self) {
        let def = self.def;
        if def.name.is_empty() {
            self.error(
                None,
                None,
                Some("name"),
                "the graph has no name; set `name:` (letters, digits, `_`, `-`, `.`)".to_owned(),
            );
        } else if !is_name(&def.name) {
            self.error(
                None,
                None,
                Some("name"),
                format!(
                    "graph name `{}` is invalid; use 1 to {MAX_NAME_LEN} letters, digits, `_`, `-` or `.`",
                    def.name
                ),
            );
        }
        if def.nodes.0.is_empty() {
            self.error(
                None,
                None,
                Some("nodes"),
                "the graph has no nodes; define at least one under `nodes`".to_owned(),
            );
        }
        if def.start.is_empty() {
            self.error(
                None,
                None,
                Some("start"),
                "the graph has no start node; set `start:` to the node a workflow enters first"
                    .to_owned(),
            );
        } else if !self.known(&def.start) {
            let names: Vec<String> = def
                .nodes
                .0
                .iter()
                .take(10)
                .map(|n| format!("`{}`", n.name))
                .collect();
            self.error(
                Some(&def.start),
                None,
                Some("start"),
                format!(
                    "start node `{}` is not defined; define node `{}` or set `start:` to one of: {}",
                    def.start,
                    def.start,
                    names.join(", ")
                ),
            );
        }
        if def.max_steps == Some(0) {
            self.error(
                None,
                None,
                Some("max_steps"),
                format!("`max_steps` is 0, so no workflow could take a step; set it to at least 1, or remove it for the default ({DEFAULT_MAX_STEPS})"),
            );
        }
        if let Some(deadline) = def.deadline {
            self.duration(None, None, "deadline", "the graph's ", deadline);
        }
        if let Some(target) = &def.on_deadline {
            if def.deadline.is_none() {
                self.error(
                    Some(target),
                    None,
                    Some("on_deadline"),
                    format!("`on_deadline` names node `{target}` but the graph has no `deadline`, so it can never be taken; set `deadline:` or remove `on_deadline`"),
                );
            }
            if !self.known(target) {
                self.error(
                    Some(target),
                    None,
                    Some("on_deadline"),
                    format!("`on_deadline` targets unknown node `{target}`; define node `{target}` or point `on_deadline` at an existing node"),
                );
            }
        }
    }

    fn node_names(&mut self) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &self.def.nodes.0 {
            *counts.entry(node.name.as_str()).or_default() += 1;
        }
        for (name, count) in counts {
            if count > 1 {
                self.error(
                    Some(name),
                    None,
                    Some("name"),
                    format!("node `{name}` is defined {count} times; node names must be unique, so rename or merge them"),
                );
            }
        }
    }

    fn node(&mut self, node: &'a NodeDef) {
        let name = node.name.as_str();
        let at = Some(name);
        if name.is_empty() {
            self.error(
                at,
                None,
                Some("name"),
                "a node has an empty name; name every node (letters, digits, `_`, `-`, `.`)"
                    .to_owned(),
            );
        } else if !is_name(name) {
            self.error(
                at,
                None,
                Some("name"),
                format!("node `{name}`: the name must be 1 to {MAX_NAME_LEN} letters, digits, `_`, `-` or `.`; rename it"),
            );
        }
        self.kind(node);
        let own = format!("node `{name}`: ");
        if let Some(timeout) = node.timeout {
            self.duration(at, None, "timeout", &own, timeout);
        }
        if let Some(heartbeat) = node.heartbeat {
            self.duration(at, None, "heartbeat", &own, heartbeat);
            if let Some(timeout) = node.timeout.filter(|t| heartbeat >= *t) {
                self.error(
                    at,
                    None,
                    Some("heartbeat"),
                    format!(
                        "node `{name}`: `heartbeat` ({}) must be shorter than `timeout` ({}), or a worker could never keep its lease; shorten the heartbeat or lengthen the timeout",
                        duration::format(heartbeat),
                        duration::format(timeout)
                    ),
                );
            }
        }
        let depth = node.params.values().map(json_depth).max().unwrap_or(0) + 1;
        if depth > MAX_PARAMS_DEPTH {
            self.error(
                at,
                None,
                Some("params"),
                format!("node `{name}`: `params` nest {depth} levels deep; the limit is {MAX_PARAMS_DEPTH}, so flatten them"),
            );
        }
        self.edges(node);
        if node.operation.is_some() && !node.human {
            self.operation_warnings(node);
        }
    }

    /// Operation versus human, and the fields that only make sense for one of them.
    fn kind(&mut self, node: &NodeDef) {
        let name = node.name.as_str();
        let at = Some(name);
        match (&node.operation, node.human) {
            (Some(_), true) => self.error(
                at,
                None,
                Some("human"),
                format!("node `{name}` has both `operation` and `human: true`; a node is performed either by workers or by operators, so remove one"),
            ),
            (None, false) => self.error(
                at,
                None,
                Some("operation"),
                format!("node `{name}` has neither `operation` nor `human: true`; name the operation workers perform, or set `human: true` for an operator step"),
            ),
            (Some(op), false) if !is_name(op) => self.error(
                at,
                None,
                Some("operation"),
                format!("node `{name}`: operation `{op}` must be 1 to {MAX_NAME_LEN} letters, digits, `_`, `-` or `.`, as in `payments.charge`"),
            ),
            _ => {}
        }
        if node.human {
            if !node.params.is_empty() {
                self.error(
                    at,
                    None,
                    Some("params"),
                    format!("human node `{name}` has `params`, but no worker receives them; remove them, or make it an operation node"),
                );
            }
            if node.heartbeat.is_some() {
                self.error(
                    at,
                    None,
                    Some("heartbeat"),
                    format!("human node `{name}` has a `heartbeat`, but operators do not heartbeat; remove it (use `timeout` as the reminder clock)"),
                );
            }
            match node.prompt.as_deref() {
                None | Some("") => self.warn(
                    at,
                    None,
                    Some("prompt"),
                    format!("human node `{name}` has no `prompt`; operators will see only the node name and the workflow's vars"),
                ),
                Some(prompt) => {
                    for expr in template::unknown_placeholders(prompt) {
                        self.warn(
                            at,
                            None,
                            Some("prompt"),
                            format!("human node `{name}`: prompt placeholder `{{{{{expr}}}}}` is not understood and will show as `<unknown {expr}>`; use `vars.x`, `input.x`, `from` or `node`"),
                        );
                    }
                }
            }
        } else if node.operation.is_some() && node.prompt.is_some() {
            self.error(
                at,
                None,
                Some("prompt"),
                format!("node `{name}`: `prompt` is only shown for human nodes; remove it, or set `human: true` instead of `operation`"),
            );
        }
    }

    fn edges(&mut self, node: &NodeDef) {
        let name = node.name.as_str();
        let at = Some(name);
        if node.edges.is_empty() {
            self.error(
                at,
                None,
                Some("on"),
                format!("node `{name}` has no edges, so a workflow reaching it could never move on; add labels under `on` (`done: ~` ends the workflow)"),
            );
            return;
        }
        if node.offered_labels().is_empty() {
            self.error(
                at,
                None,
                Some("on"),
                format!("node `{name}` offers no label to answer with, only the reserved `timeout`/`error`; add at least one ordinary label"),
            );
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for edge in &node.edges {
            *counts.entry(edge.label.as_str()).or_default() += 1;
        }
        for (label, count) in counts.into_iter().filter(|(_, count)| *count > 1) {
            self.error(
                at,
                Some(label),
                Some("on"),
                format!(
                    "node `{name}`: label `{label}` is given {count} times; keep one edge per label"
                ),
            );
        }
        for edge in &node.edges {
            self.edge(node, edge);
        }
    }

    fn edge(&mut self, node: &NodeDef, edge: &EdgeDef) {
        let name = node.name.as_str();
        let label = edge.label.as_str();
        let (at, on) = (Some(name), Some(label));
        if label.is_empty() {
            self.error(
                at,
                on,
                Some("on"),
                format!("node `{name}` has an edge with an empty label; name it (a letter or `_`, then letters, digits, `_`, `-`, `.`)"),
            );
        } else if !is_label(label) {
            self.error(
                at,
                on,
                Some("on"),
                format!("node `{name}`: label `{label}` must start with a letter or `_` and use only letters, digits, `_`, `-` or `.` (at most {MAX_NAME_LEN}); rename it"),
            );
        }
        if node.human && label == LABEL_ERROR {
            self.error(
                at,
                on,
                Some("on"),
                format!("human node `{name}`: edge `error` can never be taken, because `error` is reserved for worker failures and no worker runs a human node; remove the edge"),
            );
        }
        if node.human && label == LABEL_TIMEOUT && node.timeout.is_none() {
            self.error(
                at,
                on,
                Some("timeout"),
                format!("human node `{name}`: edge `timeout` can never be taken, because the node has no `timeout` clock; set `timeout:` or remove the edge"),
            );
        }
        match &edge.to {
            Some(to) if to.is_empty() => self.error(
                at,
                on,
                Some("to"),
                format!("node `{name}`: edge `{label}` has an empty target; name a node, or write `~` to make `{label}` terminal"),
            ),
            Some(to) if !self.known(to) => self.error(
                at,
                on,
                Some("to"),
                format!("node `{name}`: edge `{label}` targets unknown node `{to}`; define node `{to}` or point the edge at an existing node"),
            ),
            _ => {}
        }
        if let Some(exhausted) = &edge.exhausted {
            if edge.retry.is_none() {
                self.error(
                    at,
                    on,
                    Some("exhausted"),
                    format!("node `{name}`: edge `{label}` has `exhausted` but no `retry` budget, so it can never be taken; add `retry:` or remove `exhausted`"),
                );
            }
            if !self.known(exhausted) {
                self.error(
                    at,
                    on,
                    Some("exhausted"),
                    format!("node `{name}`: edge `{label}`: `exhausted` targets unknown node `{exhausted}`; define node `{exhausted}` or point `exhausted` at an existing node"),
                );
            }
        }
        if edge.retry.is_some() {
            self.retry(node, edge);
        }
    }

    fn retry(&mut self, node: &NodeDef, edge: &EdgeDef) {
        let Some(retry) = edge.retry else { return };
        let name = node.name.as_str();
        let label = edge.label.as_str();
        let (at, on) = (Some(name), Some(label));
        let own = format!("node `{name}`: edge `{label}`: ");
        if edge.to.is_none() {
            self.error(
                at,
                on,
                Some("retry"),
                format!("node `{name}`: edge `{label}` is terminal, so its `retry` budget means nothing; point `to` at a node or remove `retry`"),
            );
        }
        if retry.max == 0 {
            self.error(
                at,
                on,
                Some("retry.max"),
                format!("{own}`retry.max` is 0, so the edge could never be taken; set it to at least 1, or remove `retry`"),
            );
        } else if retry.max > MAX_RETRIES {
            self.error(
                at,
                on,
                Some("retry.max"),
                format!("{own}`retry.max` is {}, above the limit of {MAX_RETRIES}; for long waits use a longer `delay` with `backoff`, or a human node", retry.max),
            );
        }
        if !(1.0..=MAX_BACKOFF).contains(&retry.backoff) {
            self.error(
                at,
                on,
                Some("retry.backoff"),
                format!("{own}`retry.backoff` is {}; it must be a number from 1 (constant delay) to {MAX_BACKOFF}", retry.backoff),
            );
        }
        if retry.delay > MAX_DURATION {
            self.duration(at, on, "retry.delay", &own, retry.delay);
        }
        if let Some(max_delay) = retry.max_delay {
            self.duration(at, on, "retry.max_delay", &own, max_delay);
            if !max_delay.is_zero() && max_delay < retry.delay {
                self.error(
                    at,
                    on,
                    Some("retry.max_delay"),
                    format!(
                        "{own}`retry.max_delay` ({}) is shorter than `retry.delay` ({}); raise `max_delay` or lower `delay`",
                        duration::format(max_delay),
                        duration::format(retry.delay)
                    ),
                );
            }
        }
    }

    fn operation_warnings(&mut self, node: &NodeDef) {
        let name = node.name.as_str();
        let at = Some(name);
        if node.timeout.is_none() {
            self.warn(
                at,
                None,
                Some("timeout"),
                format!("node `{name}` has no `timeout`; its jobs get the server's default lease (5 minutes unless configured)"),
            );
        }
        for (label, cause) in [
            (LABEL_ERROR, "a worker failure"),
            (LABEL_TIMEOUT, "an expired lease"),
        ] {
            if node.edge(label).is_none() {
                self.warn(
                    at,
                    Some(label),
                    Some("on"),
                    format!("node `{name}` has no `{label}` edge; {cause} will make the workflow STUCK until an operator acts; add `{label}:` (usually with a `retry` budget)"),
                );
            }
        }
    }

    /// Reachability, termination and cycles, on the graph of edges whose ends are known.
    fn structure(&mut self) {
        let def = self.def;
        let flow = Flow::new(self);
        let nodes = &def.nodes.0;
        // Later duplicates of a name are already reported; judge each name once.
        let first: Vec<bool> = (0..nodes.len())
            .map(|i| self.index.get(nodes[i].name.as_str()) == Some(&i))
            .collect();

        if let Some(&start) = self.index.get(def.start.as_str()) {
            let roots: Vec<usize> = std::iter::once(start).chain(flow.deadline_target).collect();
            let reached = flow.reach(&roots, false);
            for (i, node) in nodes.iter().enumerate() {
                if first[i] && !reached.contains(&i) {
                    self.error(
                        Some(&node.name),
                        None,
                        None,
                        format!("node `{}` is unreachable from start node `{}`; route an edge to it, or remove it", node.name, def.start),
                    );
                }
            }
        }

        let ends: Vec<usize> = (0..nodes.len())
            .filter(|&i| first[i] && nodes[i].edges.iter().any(|e| e.to.is_none()))
            .collect();
        let finishing = flow.reach(&ends, true);
        for (i, node) in nodes.iter().enumerate() {
            if first[i] && !node.edges.is_empty() && !finishing.contains(&i) {
                self.error(
                    Some(&node.name),
                    None,
                    None,
                    format!("node `{}` can never reach a terminal label: every path from it loops or dead-ends; add a terminal label (such as `done: ~`) or an edge to a node that has one", node.name),
                );
            }
        }

        if def.max_steps.is_none() && def.deadline.is_none() {
            self.errors.extend(flow.unbounded_cycles());
        }
    }
}

/// The kinds of route between nodes, for the structural checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// An edge's `to`, without a retry budget.
    Plain,
    /// An edge's `to`, with a retry budget.
    Budgeted,
    /// An edge's `exhausted` route.
    Exhausted,
    /// The deadline moving the workflow to `on_deadline`.
    Deadline,
}

/// The definition as a petgraph graph: one vertex per node name (weights are indexes into
/// `nodes`), one edge per route whose target is known.
struct Flow<'a> {
    def: &'a GraphDef,
    all: DiGraph<usize, (Route, &'a str)>,
    deadline_target: Option<usize>,
}

impl<'a> Flow<'a> {
    fn new(check: &Check<'a>) -> Self {
        let def = check.def;
        let mut all = DiGraph::new();
        let vertex: Vec<NodeIndex> = (0..def.nodes.0.len()).map(|i| all.add_node(i)).collect();
        let lookup = |name: &str| check.index.get(name).map(|&i| vertex[i]);
        for (&name, &i) in &check.index {
            let from = lookup(name).expect("indexed node has a vertex");
            for edge in &def.nodes.0[i].edges {
                let kind = if edge.retry.is_some() {
                    Route::Budgeted
                } else {
                    Route::Plain
                };
                if let Some(to) = edge.to.as_deref().and_then(lookup) {
                    all.add_edge(from, to, (kind, edge.label.as_str()));
                }
                if let Some(to) = edge.exhausted.as_deref().and_then(lookup) {
                    all.add_edge(from, to, (Route::Exhausted, edge.label.as_str()));
                }
            }
        }
        let deadline_target = def
            .on_deadline
            .as_deref()
            .filter(|_| def.deadline.is_some())
            .and_then(|t| check.index.get(t).copied());
        if let Some(target) = deadline_target {
            for &i in check.index.values() {
                all.add_edge(vertex[i], vertex[target], (Route::Deadline, ""));
            }
        }
        Flow {
            def,
            all,
            deadline_target,
        }
    }

    /// Node indexes reachable from `roots` (or, `backwards`, that can reach them).
    fn reach(&self, roots: &[usize], backwards: bool) -> BTreeSet<usize> {
        let graph = &self.all;
        let mut reached = BTreeSet::new();
        let mut dfs = Dfs::empty(graph);
        for &root in roots {
            dfs.move_to(NodeIndex::new(root));
            if backwards {
                while let Some(v) = dfs.next(Reversed(graph)) {
                    reached.insert(graph[v]);
                }
            } else {
                while let Some(v) = dfs.next(graph) {
                    reached.insert(graph[v]);
                }
            }
        }
        reached
    }

    /// Cycles that can repeat forever: strongly connected components of the routes without a
    /// retry budget between operation nodes.
    fn unbounded_cycles(&self) -> Vec<Problem> {
        let nodes = &self.def.nodes.0;
        let unbounded = self.all.filter_map(
            |_, &i| Some(i),
            |e, &(kind, label)| {
                let (a, b) = self.all.edge_endpoints(e)?;
                let human = nodes[self.all[a]].human || nodes[self.all[b]].human;
                matches!(kind, Route::Plain | Route::Exhausted)
                    .then_some((kind, label))
                    .filter(|_| !human)
            },
        );
        let mut problems = Vec::new();
        let mut components = tarjan_scc(&unbounded);
        for component in &mut components {
            component.sort_by_key(|v| unbounded[*v]);
        }
        components.sort_by_key(|c| c.first().map(|v| unbounded[*v]));
        for component in components {
            let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
            let mut edges: Vec<(usize, &str, Route, usize)> = unbounded
                .edge_indices()
                .filter_map(|e| {
                    let (a, b) = unbounded.edge_endpoints(e)?;
                    let (kind, label) = unbounded[e];
                    (members.contains(&a) && members.contains(&b))
                        .then(|| (unbounded[a], label, kind, unbounded[b]))
                })
                .collect();
            if edges.is_empty() {
                continue;
            }
            edges.sort_by_key(|&(a, label, _, b)| (a, label, b));
            let names: Vec<String> = component
                .iter()
                .map(|v| format!("`{}`", nodes[unbounded[*v]].name))
                .collect();
            let routes: Vec<String> = edges
                .iter()
                .map(|&(a, label, kind, b)| {
                    let via = if kind == Route::Exhausted {
                        " (exhausted)"
                    } else {
                        ""
                    };
                    format!("`{}` --{label}{via}--> `{}`", nodes[a].name, nodes[b].name)
                })
                .collect();
            let (first_node, first_label) = (nodes[edges[0].0].name.as_str(), edges[0].1);
            problems.push(problem(
                Some(first_node),
                Some(first_label),
                None,
                format!(
                    "unbounded cycle through nodes {}: {} can repeat forever; give one of these edges a `retry` budget, route the cycle through a human node, or declare `max_steps` or `deadline` for the graph",
                    names.join(", "),
                    routes.join(", ")
                ),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    /// A valid graph the cases below break one rule at a time.
    const BASE: &str = "
name: base
start: work
nodes:
  work:
    operation: jobs.work
    timeout: 30s
    on:
      done: ~
      error: { to: work, retry: { max: 3, delay: 1s }, exhausted: ask }
      timeout: { to: work, retry: { max: 3 } }
  ask:
    human: true
    prompt: Work failed at {{from}}
    on: { again: work, drop: ~ }
";

    fn problems_of(yaml: &str) -> Vec<Problem> {
        let def = parse_yaml(yaml).unwrap_or_else(|e| panic!("parse: {e}\n{yaml}"));
        match def.validate() {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    #[test]
    fn base_graph_is_valid() {
        assert_eq!(problems_of(BASE), Vec::<Problem>::new());
    }

    #[test]
    fn each_rule_of_spec_3_is_reported_naming_node_and_label() {
        // (case, yaml, node, label, field, words the message must contain)
        type Case = (
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "graph name charset",
                "name: bad name\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                None,
                None,
                Some("name"),
                "graph name `bad name` is invalid",
            ),
            (
                "graph name empty",
                "name: ''\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                None,
                None,
                Some("name"),
                "the graph has no name",
            ),
            (
                "no nodes",
                "name: g\nstart: a\nnodes: {}\n",
                None,
                None,
                Some("nodes"),
                "the graph has no nodes",
            ),
            (
                "missing start",
                "name: g\nstart: ''\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                None,
                None,
                Some("start"),
                "the graph has no start node",
            ),
            (
                "unknown start",
                "name: g\nstart: b\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                Some("b"),
                None,
                Some("start"),
                "start node `b` is not defined; define node `b` or set `start:` to one of: `a`",
            ),
            (
                "max_steps zero",
                "name: g\nstart: a\nmax_steps: 0\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                None,
                None,
                Some("max_steps"),
                "`max_steps` is 0",
            ),
            (
                "zero deadline",
                "name: g\nstart: a\ndeadline: 0s\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                None,
                None,
                Some("deadline"),
                "`deadline` must be greater than zero",
            ),
            (
                "on_deadline without deadline",
                "name: g\nstart: a\non_deadline: a\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("on_deadline"),
                "the graph has no `deadline`",
            ),
            (
                "on_deadline unknown",
                "name: g\nstart: a\ndeadline: 1h\non_deadline: b\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n",
                Some("b"),
                None,
                Some("on_deadline"),
                "`on_deadline` targets unknown node `b`",
            ),
            (
                "node name charset",
                "name: g\nstart: a b\nnodes:\n  a b: { operation: x, on: { ok: ~ } }\n",
                Some("a b"),
                None,
                Some("name"),
                "node `a b`: the name must be",
            ),
            (
                "neither operation nor human",
                "name: g\nstart: a\nnodes:\n  a: { on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("operation"),
                "node `a` has neither `operation` nor `human: true`",
            ),
            (
                "both operation and human",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, human: true, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("human"),
                "node `a` has both `operation` and `human: true`",
            ),
            (
                "bad operation name",
                "name: g\nstart: a\nnodes:\n  a: { operation: 'pay now', on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("operation"),
                "operation `pay now` must be",
            ),
            (
                "human with params",
                "name: g\nstart: a\nnodes:\n  a: { human: true, prompt: p, params: { x: 1 }, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("params"),
                "human node `a` has `params`",
            ),
            (
                "human with heartbeat",
                "name: g\nstart: a\nnodes:\n  a: { human: true, prompt: p, heartbeat: 1m, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("heartbeat"),
                "human node `a` has a `heartbeat`",
            ),
            (
                "prompt on operation node",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, prompt: p, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("prompt"),
                "node `a`: `prompt` is only shown for human nodes",
            ),
            (
                "no edges",
                "name: g\nstart: a\nnodes:\n  a: { operation: x }\n",
                Some("a"),
                None,
                Some("on"),
                "node `a` has no edges",
            ),
            (
                "only reserved labels",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { error: ~ } }\n",
                Some("a"),
                None,
                Some("on"),
                "node `a` offers no label to answer with",
            ),
            (
                "label charset",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { 'not ok': ~, ok: ~ } }\n",
                Some("a"),
                Some("not ok"),
                Some("on"),
                "node `a`: label `not ok` must start with a letter",
            ),
            (
                "label empty",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { '': ~, ok: ~ } }\n",
                Some("a"),
                Some(""),
                Some("on"),
                "node `a` has an edge with an empty label",
            ),
            (
                "reserved error on human node",
                "name: g\nstart: a\nnodes:\n  a: { human: true, prompt: p, on: { ok: ~, error: a } }\n",
                Some("a"),
                Some("error"),
                Some("on"),
                "human node `a`: edge `error` can never be taken",
            ),
            (
                "reserved timeout on human node without clock",
                "name: g\nstart: a\nnodes:\n  a: { human: true, prompt: p, on: { ok: ~, timeout: ~ } }\n",
                Some("a"),
                Some("timeout"),
                Some("timeout"),
                "human node `a`: edge `timeout` can never be taken",
            ),
            (
                "edge to unknown node",
                "name: g\nstart: charge\nnodes:\n  charge: { operation: x, on: { ok: ~, declined: refund } }\n",
                Some("charge"),
                Some("declined"),
                Some("to"),
                "node `charge`: edge `declined` targets unknown node `refund`; define node `refund` or point the edge at an existing node",
            ),
            (
                "edge to empty target",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, bad: '' } }\n",
                Some("a"),
                Some("bad"),
                Some("to"),
                "node `a`: edge `bad` has an empty target",
            ),
            (
                "exhausted to unknown node",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 1 }, exhausted: b } } }\n",
                Some("a"),
                Some("error"),
                Some("exhausted"),
                "node `a`: edge `error`: `exhausted` targets unknown node `b`",
            ),
            (
                "exhausted without retry",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, exhausted: a } } }\n",
                Some("a"),
                Some("error"),
                Some("exhausted"),
                "node `a`: edge `error` has `exhausted` but no `retry` budget",
            ),
            (
                "retry on terminal edge",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: { to: ~, retry: { max: 2 } } } }\n",
                Some("a"),
                Some("ok"),
                Some("retry"),
                "node `a`: edge `ok` is terminal, so its `retry` budget means nothing",
            ),
            (
                "retry max zero",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 0 } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.max"),
                "node `a`: edge `error`: `retry.max` is 0",
            ),
            (
                "retry max too large",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 5000 } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.max"),
                "node `a`: edge `error`: `retry.max` is 5000, above the limit of 1000",
            ),
            (
                "backoff below one",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2, backoff: 0.5 } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.backoff"),
                "node `a`: edge `error`: `retry.backoff` is 0.5",
            ),
            (
                "backoff too large",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2, backoff: 1000 } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.backoff"),
                "`retry.backoff` is 1000",
            ),
            (
                "backoff not a number",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2, backoff: .nan } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.backoff"),
                "`retry.backoff` is NaN",
            ),
            (
                "max_delay below delay",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2, delay: 1m, max_delay: 5s } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.max_delay"),
                "node `a`: edge `error`: `retry.max_delay` (5s) is shorter than `retry.delay` (1m)",
            ),
            (
                "zero max_delay",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2, max_delay: 0s } } } }\n",
                Some("a"),
                Some("error"),
                Some("retry.max_delay"),
                "node `a`: edge `error`: `retry.max_delay` must be greater than zero",
            ),
            (
                "zero timeout",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, timeout: 0s, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("timeout"),
                "node `a`: `timeout` must be greater than zero",
            ),
            (
                "zero heartbeat",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, heartbeat: 0ms, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("heartbeat"),
                "node `a`: `heartbeat` must be greater than zero",
            ),
            (
                "absurd duration",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, timeout: 5000d, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("timeout"),
                "node `a`: `timeout` is 5000d, longer than the limit of 3650d",
            ),
            (
                "heartbeat not below timeout",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, timeout: 30s, heartbeat: 30s, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("heartbeat"),
                "node `a`: `heartbeat` (30s) must be shorter than `timeout` (30s)",
            ),
            (
                "params too deep",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, params: { p: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]] }, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("params"),
                "node `a`: `params` nest 34 levels deep",
            ),
            (
                "unreachable node",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n  orphan: { operation: x, on: { ok: ~ } }\n",
                Some("orphan"),
                None,
                None,
                "node `orphan` is unreachable from start node `a`",
            ),
            (
                "never reaches a terminal",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, spin: b } }\n  b: { human: true, prompt: p, on: { again: b } }\n",
                Some("b"),
                None,
                None,
                "node `b` can never reach a terminal label",
            ),
            (
                "unbounded cycle",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, next: b } }\n  b: { operation: y, on: { back: a } }\n",
                Some("a"),
                Some("next"),
                None,
                "unbounded cycle through nodes `a`, `b`: `a` --next--> `b`, `b` --back--> `a` can repeat forever",
            ),
            (
                "unbounded self loop",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, poll: a } }\n",
                Some("a"),
                Some("poll"),
                None,
                "unbounded cycle through nodes `a`: `a` --poll--> `a`",
            ),
            (
                "exhausted edges do not bound a cycle",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, error: { to: a, retry: { max: 2 }, exhausted: b } } }\n  b: { operation: y, on: { back: a } }\n",
                Some("a"),
                Some("error"),
                None,
                "`a` --error (exhausted)--> `b`",
            ),
            (
                "negative duration",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, timeout: -5s, on: { ok: ~ } }\n",
                Some("a"),
                None,
                Some("timeout"),
                "durations cannot be negative",
            ),
            (
                "duplicate node",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~ } }\n  a: { operation: y, on: { ok: ~ } }\n",
                Some("a"),
                None,
                None,
                "node `a` is defined twice",
            ),
            (
                "duplicate label",
                "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, ok: a } }\n",
                Some("a"),
                Some("ok"),
                None,
                "node `a`: label `ok` is given twice",
            ),
        ];
        for &(case, yaml, node, label, field, words) in cases {
            let found = match parse_yaml(yaml) {
                // Shape errors (negative durations, duplicate keys) stop at parsing, which
                // names the node and label in its message instead of in fields.
                Err(e) => vec![problem(node, label, field, e.message)],
                Ok(def) => def.validate().err().unwrap_or_default(),
            };
            let hit = found.iter().find(|p| p.message.contains(words));
            let Some(hit) = hit else {
                panic!("{case}: no problem says {words:?}; got {found:#?}")
            };
            assert_eq!(
                (
                    hit.node.as_deref(),
                    hit.label.as_deref(),
                    hit.field.as_deref()
                ),
                (node, label, field),
                "{case}"
            );
            if let Some(node) = node.filter(|n| !n.is_empty()) {
                assert!(
                    hit.message.contains(&format!("`{node}`")),
                    "{case}: message must name node: {}",
                    hit.message
                );
            }
            if let Some(label) = label.filter(|l| !l.is_empty()) {
                assert!(
                    hit.message.contains(&format!("`{label}`"))
                        || hit.message.contains(&format!("--{label}")),
                    "{case}: message must name label: {}",
                    hit.message
                );
            }
            assert!(
                hit.message.starts_with(|c: char| !c.is_uppercase()),
                "{case}: message must start lowercase"
            );
        }
    }

    #[test]
    fn problems_carry_the_field_for_duplicates_from_protobuf() {
        let mut def = parse_yaml(BASE).unwrap();
        def.nodes.0.push(def.nodes.0[0].clone());
        let mut dup_edge = def.nodes.0[1].edges[0].clone();
        dup_edge.to = Some("ask".to_owned());
        def.nodes.0[1].edges.push(dup_edge);
        let problems = def.validate().unwrap_err();
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages.contains(&"node `work` is defined 2 times; node names must be unique, so rename or merge them"), "{messages:#?}");
        assert!(
            messages
                .contains(&"node `ask`: label `again` is given 2 times; keep one edge per label"),
            "{messages:#?}"
        );
    }

    #[test]
    fn reports_every_error_at_once() {
        let yaml = "
name: many problems
start: a
nodes:
  a:
    operation: x
    timeout: 0s
    on:
      ok: ~
      declined: refund
      error: { to: a, retry: { max: 0 } }
  b:
    on: { ok: ~ }
";
        let problems = problems_of(yaml);
        let expected = [
            "graph name `many problems` is invalid",
            "node `a`: `timeout` must be greater than zero",
            "node `a`: edge `declined` targets unknown node `refund`",
            "node `a`: edge `error`: `retry.max` is 0",
            "node `b` has neither `operation` nor `human: true`",
            "node `b` is unreachable from start node `a`",
        ];
        for words in expected {
            assert!(
                problems.iter().any(|p| p.message.contains(words)),
                "missing {words:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn cycles_bounded_by_retry_human_or_graph_limits_pass() {
        let cases = [
            "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, poll: { to: a, retry: { max: 5, delay: 1s } } } }\n",
            "name: g\nstart: a\nnodes:\n  a: { operation: x, on: { ok: ~, ask: b } }\n  b: { human: true, prompt: p, on: { again: a } }\n",
            "name: g\nstart: a\nmax_steps: 100\nnodes:\n  a: { operation: x, on: { ok: ~, poll: a } }\n",
            "name: g\nstart: a\ndeadline: 1h\nnodes:\n  a: { operation: x, on: { ok: ~, poll: a } }\n",
        ];
        for yaml in cases {
            assert_eq!(problems_of(yaml), Vec::<Problem>::new(), "{yaml}");
        }
    }

    #[test]
    fn on_deadline_counts_for_reachability_and_termination() {
        let yaml = "
name: g
start: a
deadline: 1h
on_deadline: late
nodes:
  a: { operation: x, on: { spin: a } }
  late: { operation: y, on: { done: ~ } }
";
        assert_eq!(problems_of(yaml), Vec::<Problem>::new());
    }

    #[test]
    fn warns_about_operation_nodes_without_timeout_or_failure_routes() {
        let yaml = "
name: g
start: a
nodes:
  a: { operation: x, on: { ok: b } }
  b: { human: true, prompt: 'see {{sender}}', on: { done: ~ } }
";
        let warnings = parse_yaml(yaml).unwrap().validate().unwrap().warnings;
        let described: Vec<(Option<&str>, Option<&str>, Option<&str>)> = warnings
            .iter()
            .map(|w| (w.node.as_deref(), w.label.as_deref(), w.field.as_deref()))
            .collect();
        assert_eq!(
            described,
            [
                (Some("a"), None, Some("timeout")),
                (Some("a"), Some("error"), Some("on")),
                (Some("a"), Some("timeout"), Some("on")),
                (Some("b"), None, Some("prompt")),
            ]
        );
        assert!(
            warnings[0].message.contains("default lease"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[3].message.contains("`{{sender}}`"),
            "{}",
            warnings[3]
        );
    }

    #[test]
    fn example_graphs_parse_and_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../example-worker/graphs");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("example graphs folder exists") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# yaml-language-server: $schema=../../docs/graph.schema.json\n"),
                "{path:?} lacks the modeline"
            );
            let def = parse_yaml(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let validated = def
                .validate()
                .unwrap_or_else(|p| panic!("{path:?}: {p:#?}"));
            assert_eq!(
                validated.graph.name(),
                path.file_stem().unwrap().to_str().unwrap()
            );
            seen += 1;
        }
        assert!(seen >= 2, "expected the example graphs, found {seen}");
    }

    #[test]
    fn approval_example_is_free_of_warnings() {
        let text = include_str!("../../example-worker/graphs/approval.yaml");
        let validated = parse_yaml(text).unwrap().validate().unwrap();
        assert_eq!(validated.warnings, Vec::<Problem>::new());
    }

    #[test]
    fn hash_ignores_order_and_duration_spelling() {
        let a = parse_yaml(BASE).unwrap().validate().unwrap().graph;
        let reordered = "
name: base
start: work
nodes:
  ask:
    on: { drop: ~, again: work }
    prompt: Work failed at {{from}}
    human: true
  work:
    on:
      timeout: { retry: { max: 3 }, to: work }
      error: { exhausted: ask, to: work, retry: { delay: 1000ms, max: 3, backoff: 1 } }
      done: ~
    timeout: 30000ms
    operation: jobs.work
";
        let b = parse_yaml(reordered).unwrap().validate().unwrap().graph;
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn hash_changes_with_any_meaning() {
        let base = parse_yaml(BASE).unwrap();
        let hash = |def: &GraphDef| def.validate().unwrap().graph.hash().to_owned();
        let original = hash(&base);
        let mut changes: Vec<GraphDef> = Vec::new();
        let mut d = base.clone();
        d.nodes.0[0].timeout = Some(Duration::from_secs(31));
        changes.push(d);
        let mut d = base.clone();
        d.description = "now described".to_owned();
        changes.push(d);
        let mut d = base.clone();
        d.nodes.0[0]
            .params
            .insert("k".to_owned(), serde_json::json!(1));
        changes.push(d);
        let mut d = base.clone();
        d.nodes.0[0].edges[1].retry.as_mut().unwrap().max = 4;
        changes.push(d);
        let mut d = base.clone();
        d.max_steps = Some(DEFAULT_MAX_STEPS);
        changes.push(d);
        for changed in &changes {
            assert_ne!(hash(changed), original, "{changed:?}");
        }
    }

    #[test]
    fn problem_serializes_without_empty_fields() {
        let p = problem(Some("a"), None, Some("timeout"), "node `a`: bad".to_owned());
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"node": "a", "field": "timeout", "message": "node `a`: bad"})
        );
        assert_eq!(p.to_string(), "node `a`: bad");
    }

    #[test]
    fn validated_graph_indexes_every_node() {
        let graph = parse_yaml(BASE).unwrap().validate().unwrap().graph;
        assert_eq!(graph.start().name, "work");
        assert_eq!(graph.node("ask").map(|n| n.human), Some(true));
        assert!(graph.node("nope").is_none());
    }
}
