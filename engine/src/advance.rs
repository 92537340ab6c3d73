//! The rules that move a workflow: given a graph, where the workflow stands and the label its
//! job ended with, decide where it goes next. Pure: no IO, no clock, no randomness of its own
//! (jitter comes in as an argument), so every rule is unit-testable in microseconds and the
//! server applies the result inside one transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{EdgeDef, Graph, RESERVED_LABELS, Retry};

/// How much jitter may lengthen a retry delay: up to 10% more, never less, so retries are
/// always spaced by at least their configured delay.
pub const JITTER_FRACTION: f64 = 0.1;

/// The current run of one retry edge from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Label of the retry edge being repeated.
    pub label: String,
    /// How many times in a row it has been taken.
    pub count: u32,
}

/// Where a workflow stands, as far as the rules need to know.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Node the workflow is at.
    pub node: String,
    /// Steps taken so far.
    pub step_count: u32,
    /// Open retry streaks, by source node.
    pub streaks: BTreeMap<String, Streak>,
}

/// Entering a node: the job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Node entered.
    pub node: String,
    /// Attempt number of the job, from 1: one more than the node's open streak.
    pub attempt: u32,
    /// How long the job waits before it may be handed out (retry backoff).
    pub delay: Duration,
    /// True when the job continues a retry streak on the same node and so keeps the previous
    /// job's idempotency key; false when the node is entered afresh.
    pub same_key: bool,
}

/// Why a workflow cannot move on without an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentReason {
    /// A label (typically a reserved one) has no edge from its node.
    NoRoute,
    /// A retry budget ran out and its edge has no `exhausted` route.
    RetriesExhausted,
    /// The workflow reached its graph's step guard.
    StepLimit,
    /// The deadline passed and the graph has no `on_deadline` node.
    Deadline,
    /// The server could not apply the workflow's next step (a stored graph that no longer
    /// loads, say); the incident's message says why.
    EngineError,
}

impl IncidentReason {
    /// Stable machine-readable name, as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentReason::NoRoute => "no_route",
            IncidentReason::RetriesExhausted => "retries_exhausted",
            IncidentReason::StepLimit => "step_limit",
            IncidentReason::Deadline => "deadline",
            IncidentReason::EngineError => "engine_error",
        }
    }

    /// Parses [`IncidentReason::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            IncidentReason::NoRoute,
            IncidentReason::RetriesExhausted,
            IncidentReason::StepLimit,
            IncidentReason::Deadline,
            IncidentReason::EngineError,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A workflow that cannot move on: what happened, where, and what an operator can do.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Machine-readable reason.
    pub reason: IncidentReason,
    /// Node at which it happened.
    pub node: String,
    /// Label that could not be routed, if any.
    pub label: Option<String>,
    /// A message a person can act on.
    pub message: String,
}

/// Where a workflow goes after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Enter a node: create its job.
    Enter(Entry),
    /// A terminal label was taken: the workflow completes with it as outcome.
    Complete {
        /// The terminal label.
        outcome: String,
    },
    /// The workflow becomes STUCK.
    Stuck(Incident),
}

/// What happened to a retry budget in a step, for history.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryNote {
    /// A retry edge was taken within its budget.
    Scheduled {
        /// Which retry of the streak this is, from 1.
        retry: u32,
        /// The budget.
        max: u32,
        /// Delay before the next job is available.
        delay: Duration,
    },
    /// The budget was spent; the exhausted route (or an incident) follows.
    Exhausted {
        /// The budget.
        max: u32,
    },
}

/// The outcome of one step: where the workflow goes and how it stands afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Where to go.
    pub next: Next,
    /// The position after the step (its node is the entered node, or the old one otherwise).
    pub position: Position,
    /// Retry bookkeeping, when the label's edge has a budget.
    pub retry: Option<RetryNote>,
}

/// Errors a caller can make; the engine never fails on a valid graph and a valid position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The position names a node the graph lacks (a graph version mismatch).
    #[error("node `{node}` does not exist in graph `{graph}`")]
    UnknownNode {
        /// Graph name.
        graph: String,
        /// The missing node.
        node: String,
    },
    /// The label is not one the node offers.
    #[error("node `{node}`: label `{label}` is not offered; answer with one of: {}", offered.join(", "))]
    LabelNotOffered {
        /// Node of the job.
        node: String,
        /// The label given.
        label: String,
        /// The labels the node offers.
        offered: Vec<String>,
    },
}

/// Where a new workflow starts.
pub fn start(graph: &Graph) -> Step {
    let position = Position {
        node: graph.def().start.clone(),
        ..Position::default()
    };
    enter_fresh(graph, position, graph.def().start.clone())
}

/// One step: the job at `pos.node` ended with `label`. `jitter` is a number in `[0, 1)` that
/// lengthens a retry delay by up to [`JITTER_FRACTION`].
pub fn advance(
    graph: &Graph,
    pos: &Position,
    label: &str,
    jitter: f64,
) -> Result<Step, EngineError> {
    let node = graph
        .node(&pos.node)
        .ok_or_else(|| unknown_node(graph, &pos.node))?;
    let Some(edge) = node.edge(label) else {
        if RESERVED_LABELS.contains(&label) {
            let incident = Incident {
                reason: IncidentReason::NoRoute,
                node: pos.node.clone(),
                label: Some(label.to_owned()),
                message: format!(
                    "node `{}` ended with `{label}` but has no `{label}` edge; add `{label}:` under \
                     `{}.on` in the graph, or move or retry the workflow",
                    pos.node, pos.node
                ),
            };
            let mut position = pos.clone();
            position.step_count += 1;
            position.streaks.remove(&pos.node);
            return Ok(Step {
                next: Next::Stuck(incident),
                position,
                retry: None,
            });
        }
        return Err(EngineError::LabelNotOffered {
            node: pos.node.clone(),
            label: label.to_owned(),
            offered: node.offered_labels(),
        });
    };

    let mut position = pos.clone();
    position.step_count += 1;
    let (target, retry) = match edge.retry {
        None => {
            position.streaks.remove(&pos.node);
            (Route::from(edge.to.clone()), None)
        }
        Some(budget) => take_retry_edge(&mut position, edge, budget, jitter),
    };

    let next = match (target, &retry) {
        (Route::Node(to), _) if position.step_count > graph.max_steps() => {
            Next::Stuck(step_limit(graph, &pos.node, label, &to))
        }
        (Route::Node(to), Some(RetryNote::Scheduled { delay, .. })) => {
            let same_key = to == pos.node;
            let attempt = attempt_at(&position, &to);
            Next::Enter(Entry {
                node: to,
                attempt,
                delay: *delay,
                same_key,
            })
        }
        (Route::Node(to), _) => {
            let attempt = attempt_at(&position, &to);
            Next::Enter(Entry {
                node: to,
                attempt,
                delay: Duration::ZERO,
                same_key: false,
            })
        }
        (Route::Terminal, _) => Next::Complete {
            outcome: label.to_owned(),
        },
        (Route::Exhausted, _) => Next::Stuck(Incident {
            reason: IncidentReason::RetriesExhausted,
            node: pos.node.clone(),
            label: Some(label.to_owned()),
            message: format!(
                "node `{}`: retry budget of `{label}` ({}) is spent and the edge has no \
                 `exhausted` route; retry or move the workflow, or add `exhausted:` to the edge",
                pos.node,
                edge.retry.map_or(0, |r| r.max)
            ),
        }),
    };
    if let Next::Enter(entry) = &next {
        position.node = entry.node.clone();
    }
    Ok(Step {
        next,
        position,
        retry,
    })
}

/// The deadline passed: go to `on_deadline`, or become STUCK when the graph has none.
pub fn deadline_passed(graph: &Graph, pos: &Position) -> Step {
    let mut position = pos.clone();
    position.step_count += 1;
    match &graph.def().on_deadline {
        Some(target) => enter_fresh(graph, position, target.clone()),
        None => Step {
            next: Next::Stuck(Incident {
                reason: IncidentReason::Deadline,
                node: pos.node.clone(),
                label: None,
                message: format!(
                    "the deadline of graph `{}` passed at node `{}` and the graph has no \
                     `on_deadline` node; move or cancel the workflow",
                    graph.name(),
                    pos.node
                ),
            }),
            position,
            retry: None,
        },
    }
}

/// An operator moves the workflow to `to`: a fresh entry, whatever streaks were open there.
pub fn move_to(graph: &Graph, pos: &Position, to: &str) -> Result<Step, EngineError> {
    if graph.node(to).is_none() {
        return Err(unknown_node(graph, to));
    }
    let mut position = pos.clone();
    position.step_count += 1;
    Ok(enter_fresh(graph, position, to.to_owned()))
}

/// An operator retries the current node: its job again, with a fresh streak and the same
/// idempotency key (a retried payment must not charge twice).
pub fn retry_current(graph: &Graph, pos: &Position) -> Result<Step, EngineError> {
    if graph.node(&pos.node).is_none() {
        return Err(unknown_node(graph, &pos.node));
    }
    let mut position = pos.clone();
    position.step_count += 1;
    position.streaks.remove(&pos.node);
    let entry = Entry {
        node: pos.node.clone(),
        attempt: 1,
        delay: Duration::ZERO,
        same_key: true,
    };
    Ok(Step {
        next: Next::Enter(entry),
        position,
        retry: None,
    })
}

/// The delay before retry number `retry` (from 1) of a budget, before jitter is added:
/// `delay * backoff^(retry-1)`, bounded by `max_delay`.
pub fn backoff_delay(budget: &Retry, retry: u32) -> Duration {
    let factor = if budget.backoff > 0.0 {
        budget.backoff
    } else {
        1.0
    };
    let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = budget.delay.as_secs_f64() * factor.powi(exponent);
    let capped = budget
        .max_delay
        .map_or(secs, |max| secs.min(max.as_secs_f64()));
    Duration::try_from_secs_f64(capped).unwrap_or(Duration::MAX)
}

/// [`backoff_delay`] lengthened by jitter in `[0, 1)` times [`JITTER_FRACTION`], still bounded
/// by `max_delay`.
pub fn jittered_delay(budget: &Retry, retry: u32, jitter: f64) -> Duration {
    let base = backoff_delay(budget, retry);
    let extra = base.mul_f64(JITTER_FRACTION * jitter.clamp(0.0, 1.0));
    let total = base.saturating_add(extra);
    budget
        .max_delay
        .map_or(total, |max| total.min(max.max(base)))
}

enum Route {
    Node(String),
    Terminal,
    Exhausted,
}

impl From<Option<String>> for Route {
    fn from(to: Option<String>) -> Self {
        to.map_or(Route::Terminal, Route::Node)
    }
}

fn take_retry_edge(
    position: &mut Position,
    edge: &EdgeDef,
    budget: Retry,
    jitter: f64,
) -> (Route, Option<RetryNote>) {
    let source = position.node.clone();
    let count = match position.streaks.get(&source) {
        Some(streak) if streak.label == edge.label => streak.count + 1,
        _ => 1,
    };
    if count > budget.max {
        position.streaks.remove(&source);
        let route = edge.exhausted.clone().map_or(Route::Exhausted, Route::Node);
        return (route, Some(RetryNote::Exhausted { max: budget.max }));
    }
    position.streaks.insert(
        source,
        Streak {
            label: edge.label.clone(),
            count,
        },
    );
    let delay = jittered_delay(&budget, count, jitter);
    let note = RetryNote::Scheduled {
        retry: count,
        max: budget.max,
        delay,
    };
    (edge.to.clone().into(), Some(note))
}

fn enter_fresh(graph: &Graph, mut position: Position, to: String) -> Step {
    position.streaks.remove(&to);
    if position.step_count > graph.max_steps() {
        let from = position.node.clone();
        let incident = step_limit(graph, &from, "", &to);
        return Step {
            next: Next::Stuck(incident),
            position,
            retry: None,
        };
    }
    position.node = to.clone();
    let entry = Entry {
        node: to,
        attempt: 1,
        delay: Duration::ZERO,
        same_key: false,
    };
    Step {
        next: Next::Enter(entry),
        position,
        retry: None,
    }
}

fn attempt_at(position: &Position, node: &str) -> u32 {
    1 + position.streaks.get(node).map_or(0, |s| s.count)
}

fn step_limit(graph: &Graph, from: &str, label: &str, to: &str) -> Incident {
    Incident {
        reason: IncidentReason::StepLimit,
        node: from.to_owned(),
        label: (!label.is_empty()).then(|| label.to_owned()),
        message: format!(
            "the workflow reached the step limit of graph `{}` ({} steps) at node `{from}` on its \
             way to `{to}`; look for a runaway loop, then retry or move the workflow (or raise \
             `max_steps`)",
            graph.name(),
            graph.max_steps()
        ),
    }
}

fn unknown_node(graph: &Graph, node: &str) -> EngineError {
    EngineError::UnknownNode {
        graph: graph.name().to_owned(),
        node: node.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::yaml::parse_yaml;

    /// `a` retries `error` (3, with backoff, then `fix`) and `timeout` (2, no exhausted route);
    /// `b` can go back to `a` with or without a budget. `max_steps` bounds the plain cycles.
    const GRAPH: &str = "
name: rules
start: a
max_steps: 20
nodes:
  a:
    operation: op.a
    on:
      ok: b
      done: ~
      error: { to: a, retry: { max: 3, delay: 1s, backoff: 2.0, max_delay: 3s }, exhausted: fix }
      timeout: { to: a, retry: { max: 2 } }
  b:
    operation: op.b
    on:
      back: a
      later: { to: a, retry: { max: 2, delay: 10s } }
  fix:
    human: true
    prompt: a keeps failing
    on: { retry: a, give_up: ~ }
";

    fn graph(yaml: &str) -> Graph {
        parse_yaml(yaml).unwrap().validate().unwrap().graph
    }

    fn at(node: &str) -> Position {
        Position {
            node: node.to_owned(),
            ..Position::default()
        }
    }

    /// Runs `labels` from the start; returns every step.
    fn run(graph: &Graph, labels: &[&str]) -> Vec<Step> {
        let mut position = start(graph).position;
        labels
            .iter()
            .map(|label| {
                let step = advance(graph, &position, label, 0.0).unwrap();
                position = step.position.clone();
                step
            })
            .collect()
    }

    fn entry(node: &str, attempt: u32, delay_ms: u64, same_key: bool) -> Next {
        Next::Enter(Entry {
            node: node.to_owned(),
            attempt,
            delay: Duration::from_millis(delay_ms),
            same_key,
        })
    }

    #[test]
    fn start_enters_the_start_node_fresh() {
        let step = start(&graph(GRAPH));
        assert_eq!(step.next, entry("a", 1, 0, false));
        assert_eq!(step.position, at("a"));
        assert_eq!(step.retry, None);
    }

    #[test]
    fn streaks_count_attempts_and_reset_on_another_label() {
        struct Case {
            name: &'static str,
            labels: &'static [&'static str],
            expected: &'static [(&'static str, u32, u64, bool)],
        }
        let cases = [
            Case {
                name: "retries back off and keep the idempotency key",
                labels: &["error", "error", "error"],
                expected: &[
                    ("a", 2, 1000, true),
                    ("a", 3, 2000, true),
                    ("a", 4, 3000, true),
                ],
            },
            Case {
                name: "another label from the node resets the streak",
                labels: &["error", "error", "ok", "back", "error"],
                expected: &[
                    ("a", 2, 1000, true),
                    ("a", 3, 2000, true),
                    ("b", 1, 0, false),
                    ("a", 1, 0, false),
                    ("a", 2, 1000, true),
                ],
            },
            Case {
                name: "switching between retry labels starts a new streak",
                labels: &["error", "timeout", "error"],
                expected: &[
                    ("a", 2, 1000, true),
                    ("a", 2, 0, true),
                    ("a", 2, 1000, true),
                ],
            },
            Case {
                name: "a retry edge to another node gives a fresh key; its source keeps counting",
                labels: &["ok", "later", "ok", "later"],
                expected: &[
                    ("b", 1, 0, false),
                    ("a", 1, 10_000, false),
                    ("b", 2, 0, false),
                    ("a", 1, 10_000, false),
                ],
            },
        ];
        let graph = graph(GRAPH);
        for case in cases {
            let steps = run(&graph, case.labels);
            let got: Vec<Next> = steps.into_iter().map(|s| s.next).collect();
            let want: Vec<Next> = case
                .expected
                .iter()
                .map(|&(n, a, d, k)| entry(n, a, d, k))
                .collect();
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn retry_streak_is_counted_across_a_cycle() {
        let graph = graph(GRAPH);
        let steps = run(&graph, &["ok", "later", "ok", "later", "ok", "later"]);
        assert_eq!(
            steps[3].retry,
            Some(RetryNote::Scheduled {
                retry: 2,
                max: 2,
                delay: Duration::from_secs(10)
            })
        );
        assert_eq!(steps[5].retry, Some(RetryNote::Exhausted { max: 2 }));
        match &steps[5].next {
            Next::Stuck(incident) => assert_eq!(incident.reason, IncidentReason::RetriesExhausted),
            other => panic!("expected stuck, got {other:?}"),
        }
    }

    #[test]
    fn retry_budget_exhausted_takes_exhausted_route() {
        let graph = graph(GRAPH);
        let steps = run(&graph, &["error", "error", "error", "error"]);
        assert!(
            steps[..3]
                .iter()
                .all(|s| matches!(s.retry, Some(RetryNote::Scheduled { .. })))
        );
        assert_eq!(steps[3].retry, Some(RetryNote::Exhausted { max: 3 }));
        assert_eq!(steps[3].next, entry("fix", 1, 0, false));
        assert!(
            !steps[3].position.streaks.contains_key("a"),
            "the exhausted route resets the streak"
        );
        // Back at `a` from the operator, the budget is whole again.
        let back = advance(&graph, &steps[3].position, "retry", 0.0).unwrap();
        assert_eq!(back.next, entry("a", 1, 0, false));
        let again = advance(&graph, &back.position, "error", 0.0).unwrap();
        assert_eq!(
            again.retry,
            Some(RetryNote::Scheduled {
                retry: 1,
                max: 3,
                delay: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn retry_budget_exhausted_without_route_is_stuck() {
        let graph = graph(GRAPH);
        let steps = run(&graph, &["timeout", "timeout", "timeout"]);
        assert_eq!(steps[1].next, entry("a", 3, 0, true));
        let Next::Stuck(incident) = &steps[2].next else {
            panic!("expected stuck, got {:?}", steps[2].next)
        };
        assert_eq!(incident.reason, IncidentReason::RetriesExhausted);
        assert_eq!(
            (incident.node.as_str(), incident.label.as_deref()),
            ("a", Some("timeout"))
        );
        assert!(
            incident
                .message
                .contains("retry budget of `timeout` (2) is spent"),
            "{}",
            incident.message
        );
        assert_eq!(steps[2].position.node, "a");
    }

    #[test]
    fn reserved_label_without_edge_is_stuck_with_no_route() {
        let graph = graph(GRAPH);
        for label in ["error", "timeout"] {
            let step = advance(&graph, &at("b"), label, 0.0).unwrap();
            let Next::Stuck(incident) = step.next else {
                panic!("expected stuck")
            };
            assert_eq!(incident.reason, IncidentReason::NoRoute);
            assert_eq!(incident.label.as_deref(), Some(label));
            assert!(incident.message.contains(&format!(
                "node `b` ended with `{label}` but has no `{label}` edge"
            )));
            assert_eq!(step.position.step_count, 1);
        }
    }

    #[test]
    fn unknown_label_is_rejected_listing_offered_labels() {
        let graph = graph(GRAPH);
        let err = advance(&graph, &at("a"), "refunded", 0.0).unwrap_err();
        assert_eq!(
            err,
            EngineError::LabelNotOffered {
                node: "a".to_owned(),
                label: "refunded".to_owned(),
                offered: vec!["ok".to_owned(), "done".to_owned()],
            }
        );
        assert_eq!(
            err.to_string(),
            "node `a`: label `refunded` is not offered; answer with one of: ok, done"
        );
    }

    #[test]
    fn terminal_label_completes_with_it_as_outcome() {
        let graph = graph(GRAPH);
        let step = advance(&graph, &at("a"), "done", 0.0).unwrap();
        assert_eq!(
            step.next,
            Next::Complete {
                outcome: "done".to_owned()
            }
        );
        assert_eq!(step.position.step_count, 1);
    }

    #[test]
    fn position_at_unknown_node_is_an_error() {
        let graph = graph(GRAPH);
        let err = advance(&graph, &at("gone"), "ok", 0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `gone` does not exist in graph `rules`"
        );
        assert!(move_to(&graph, &at("a"), "gone").is_err());
        assert!(retry_current(&graph, &at("gone")).is_err());
    }

    #[test]
    fn step_limit_makes_the_workflow_stuck() {
        let graph = graph(GRAPH);
        let mut position = at("a");
        position.step_count = 19;
        let step = advance(&graph, &position, "ok", 0.0).unwrap();
        assert_eq!(
            step.next,
            entry("b", 1, 0, false),
            "the 20th step is within max_steps: 20"
        );
        let step = advance(&graph, &step.position, "back", 0.0).unwrap();
        let Next::Stuck(incident) = step.next else {
            panic!("expected stuck")
        };
        assert_eq!(incident.reason, IncidentReason::StepLimit);
        assert_eq!(
            (incident.node.as_str(), incident.label.as_deref()),
            ("b", Some("back"))
        );
        assert!(
            incident
                .message
                .contains("step limit of graph `rules` (20 steps)"),
            "{}",
            incident.message
        );
        // Completing is always allowed, even past the limit.
        let mut late = at("a");
        late.step_count = 40;
        assert_eq!(
            advance(&graph, &late, "done", 0.0).unwrap().next,
            Next::Complete {
                outcome: "done".to_owned()
            }
        );
    }

    #[test]
    fn deadline_moves_to_on_deadline_or_gets_stuck() {
        let with_route = graph(&GRAPH.replace(
            "max_steps: 20",
            "max_steps: 20\ndeadline: 1h\non_deadline: fix",
        ));
        let mut position = at("a");
        position.streaks.insert(
            "fix".to_owned(),
            Streak {
                label: "x".to_owned(),
                count: 2,
            },
        );
        let step = deadline_passed(&with_route, &position);
        assert_eq!(step.next, entry("fix", 1, 0, false));
        assert_eq!(step.position.node, "fix");
        assert!(!step.position.streaks.contains_key("fix"));

        let without = graph(&GRAPH.replace("max_steps: 20", "max_steps: 20\ndeadline: 1h"));
        let step = deadline_passed(&without, &at("b"));
        let Next::Stuck(incident) = step.next else {
            panic!("expected stuck")
        };
        assert_eq!(incident.reason, IncidentReason::Deadline);
        assert_eq!((incident.node.as_str(), incident.label), ("b", None));
        assert_eq!(step.position.step_count, 1);
    }

    #[test]
    fn operator_move_enters_fresh_and_retry_keeps_the_key() {
        let graph = graph(GRAPH);
        let steps = run(&graph, &["error", "error"]);
        let position = &steps[1].position;
        assert_eq!(position.streaks["a"].count, 2);

        let moved = move_to(&graph, position, "a").unwrap();
        assert_eq!(moved.next, entry("a", 1, 0, false));
        assert!(moved.position.streaks.is_empty());

        let retried = retry_current(&graph, position).unwrap();
        assert_eq!(retried.next, entry("a", 1, 0, true));
        assert!(retried.position.streaks.is_empty());
        assert_eq!(retried.position.step_count, position.step_count + 1);
    }

    #[test]
    fn backoff_grows_by_factor_and_stops_at_max_delay() {
        let budget = |delay_ms: u64, backoff: f64, max_delay_ms: Option<u64>| Retry {
            max: 10,
            delay: Duration::from_millis(delay_ms),
            backoff,
            max_delay: max_delay_ms.map(Duration::from_millis),
        };
        let cases = [
            (budget(1000, 2.0, None), 1, 1000),
            (budget(1000, 2.0, None), 2, 2000),
            (budget(1000, 2.0, None), 4, 8000),
            (budget(1000, 2.0, Some(5000)), 4, 5000),
            (budget(500, 1.0, None), 7, 500),
            (budget(100, 1.5, None), 3, 225),
            (budget(0, 2.0, None), 5, 0),
            (budget(1000, 2.0, Some(60_000)), 1000, 60_000),
        ];
        for (retry, n, expected_ms) in cases {
            assert_eq!(
                backoff_delay(&retry, n),
                Duration::from_millis(expected_ms),
                "{retry:?} retry {n}"
            );
        }
    }

    #[test]
    fn jitter_only_lengthens_by_up_to_ten_percent_within_max_delay() {
        let retry = Retry {
            max: 5,
            delay: Duration::from_secs(10),
            backoff: 2.0,
            max_delay: Some(Duration::from_secs(25)),
        };
        assert_eq!(jittered_delay(&retry, 1, 0.0), Duration::from_secs(10));
        assert_eq!(
            jittered_delay(&retry, 1, 0.5),
            Duration::from_millis(10_500)
        );
        assert_eq!(
            jittered_delay(&retry, 1, 0.999),
            Duration::from_secs(10).mul_f64(1.0999)
        );
        assert_eq!(
            jittered_delay(&retry, 2, 0.999),
            Duration::from_millis(21_998)
        );
        assert_eq!(
            jittered_delay(&retry, 3, 0.9),
            Duration::from_secs(25),
            "capped by max_delay"
        );
        assert_eq!(
            jittered_delay(&retry, 1, -3.0),
            Duration::from_secs(10),
            "never shorter"
        );
    }

    #[test]
    fn incident_reasons_round_trip_their_names() {
        for reason in [
            IncidentReason::NoRoute,
            IncidentReason::RetriesExhausted,
            IncidentReason::StepLimit,
            IncidentReason::Deadline,
            IncidentReason::EngineError,
        ] {
            assert_eq!(IncidentReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(IncidentReason::parse("bogus"), None);
    }

    proptest! {
        /// Whatever the labels, a streak never exceeds its budget, and the exhausted route (or
        /// the incident) comes exactly on the (max+1)-th consecutive use of a retry edge.
        #[test]
        fn retry_budgets_hold_for_any_label_sequence(
            error_max in 1u32..5,
            timeout_max in 1u32..5,
            labels in proptest::collection::vec(prop_oneof![Just("error"), Just("timeout"), Just("ok")], 0..60),
        ) {
            let yaml = format!("
name: prop
start: a
max_steps: 1000
nodes:
  a:
    operation: op.a
    on:
      ok: a
      done: ~
      error: {{ to: a, retry: {{ max: {error_max} }}, exhausted: x }}
      timeout: {{ to: a, retry: {{ max: {timeout_max} }} }}
  x:
    operation: op.x
    on: {{ back: a }}
");
            let graph = graph(&yaml);
            let mut position = start(&graph).position;
            let mut model: Option<(&str, u32)> = None;
            for label in labels {
                let max = match label { "error" => error_max, "timeout" => timeout_max, _ => 0 };
                let count = match model {
                    Some((last, n)) if last == label => n + 1,
                    _ => 1,
                };
                let step = advance(&graph, &position, label, 0.5).unwrap();
                if label == "ok" {
                    prop_assert_eq!(step.retry.clone(), None);
                    model = None;
                } else if count > max {
                    prop_assert_eq!(step.retry.clone(), Some(RetryNote::Exhausted { max }));
                    model = None;
                } else {
                    let scheduled = matches!(step.retry, Some(RetryNote::Scheduled { retry, .. }) if retry == count);
                    prop_assert!(scheduled, "expected retry {} of {}, got {:?}", count, max, step.retry);
                    let attempt = if let Next::Enter(e) = &step.next { e.attempt } else { 0 };
                    prop_assert_eq!(attempt, count + 1);
                    model = Some((label, count));
                }
                for streak in step.position.streaks.values() {
                    let budget = if streak.label == "error" { error_max } else { timeout_max };
                    prop_assert!(streak.count <= budget);
                }
                position = match (&step.next, label) {
                    (Next::Enter(e), "error") if e.node == "x" => {
                        advance(&graph, &step.position, "back", 0.0).unwrap().position
                    }
                    (Next::Stuck(incident), _) => {
                        prop_assert_eq!(label, "timeout");
                        prop_assert_eq!(incident.reason, IncidentReason::RetriesExhausted);
                        retry_current(&graph, &step.position).unwrap().position
                    }
                    _ => step.position,
                };
            }
        }
    }
}
