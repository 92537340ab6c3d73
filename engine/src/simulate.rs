//! Dry runs for `rondo graph simulate FILE --labels a,b`: walk a graph from its start along a
//! sequence of labels with the real step rules ([`advance`](crate::advance)), and show each
//! step, its retry bookkeeping and where the walk ends. Rule: no rule of its own; jitter is 0 so
//! delays are the configured ones. Pure: no IO.

use std::fmt;
use std::time::Duration;

use crate::advance::{self, EngineError, Incident, Next, RetryNote};
use crate::duration;
use crate::model::Graph;

/// One simulated step: the job at `node` ended with `label`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimStep {
    /// Node whose job ended.
    pub node: String,
    /// Attempt number of that job.
    pub attempt: u32,
    /// Label it ended with.
    pub label: String,
    /// Retry bookkeeping, when the label's edge has a budget.
    pub retry: Option<RetryNote>,
    /// Where the workflow went.
    pub next: Next,
}

/// How a simulation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEnd {
    /// A terminal label was taken.
    Completed {
        /// The terminal label.
        outcome: String,
    },
    /// The labels ran out while a job was waiting.
    Waiting {
        /// Node of the waiting job.
        node: String,
        /// Its attempt number.
        attempt: u32,
        /// How long it would wait before being handed out (retry backoff).
        delay: Duration,
    },
    /// The workflow became STUCK.
    Stuck {
        /// Why, and what an operator could do.
        incident: Incident,
    },
    /// A label was not one the node offers; the walk stopped before it.
    Rejected {
        /// Node of the job.
        node: String,
        /// The label given.
        label: String,
        /// What the engine answered.
        error: EngineError,
    },
}

/// The walk: every step taken, how it ended, and the labels left over once it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Steps in order.
    pub steps: Vec<SimStep>,
    /// How it ended.
    pub end: SimEnd,
    /// Labels not used because the workflow had already ended (or a label was rejected).
    pub unused: Vec<String>,
}

/// Walks `graph` from its start, answering each job with the next of `labels`.
pub fn simulate(graph: &Graph, labels: &[&str]) -> Simulation {
    let first = advance::start(graph);
    let mut position = first.position;
    let (mut attempt, mut delay) = match first.next {
        Next::Enter(entry) => (entry.attempt, entry.delay),
        Next::Complete { outcome } => {
            return finished(Vec::new(), SimEnd::Completed { outcome }, labels);
        }
        Next::Stuck(incident) => return finished(Vec::new(), SimEnd::Stuck { incident }, labels),
    };
    let mut steps = Vec::new();
    for (used, label) in labels.iter().enumerate() {
        let step = match advance::advance(graph, &position, label, 0.0) {
            Ok(step) => step,
            Err(error) => {
                let end = SimEnd::Rejected {
                    node: position.node.clone(),
                    label: (*label).to_owned(),
                    error,
                };
                return finished(steps, end, &labels[used..]);
            }
        };
        steps.push(SimStep {
            node: position.node.clone(),
            attempt,
            label: (*label).to_owned(),
            retry: step.retry.clone(),
            next: step.next.clone(),
        });
        position = step.position;
        match step.next {
            Next::Enter(entry) => (attempt, delay) = (entry.attempt, entry.delay),
            Next::Complete { outcome } => {
                return finished(steps, SimEnd::Completed { outcome }, &labels[used + 1..]);
            }
            Next::Stuck(incident) => {
                return finished(steps, SimEnd::Stuck { incident }, &labels[used + 1..]);
            }
        }
    }
    Simulation {
        steps,
        end: SimEnd::Waiting {
            node: position.node,
            attempt,
            delay,
        },
        unused: Vec::new(),
    }
}

fn finished(steps: Vec<SimStep>, end: SimEnd, unused: &[&str]) -> Simulation {
    Simulation {
        steps,
        end,
        unused: unused.iter().map(|l| (*l).to_owned()).collect(),
    }
}

impl fmt::Display for Simulation {
    /// One line per step, e.g. `1. reserve (attempt 1) --error--> reserve  [retry 1/3 in 1s]`,
    /// then the end: `completed: sent`, `waiting: ...`, `stuck: ...` or `rejected: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            let target = match &step.next {
                Next::Enter(entry) => entry.node.as_str(),
                Next::Complete { .. } => "(end)",
                Next::Stuck(_) => "(stuck)",
            };
            write!(
                f,
                "{}. {} (attempt {}) --{}--> {target}",
                i + 1,
                step.node,
                step.attempt,
                step.label
            )?;
            match step.retry {
                Some(RetryNote::Scheduled { retry, max, delay }) if delay.is_zero() => {
                    write!(f, "  [retry {retry}/{max} at once]")?;
                }
                Some(RetryNote::Scheduled { retry, max, delay }) => {
                    write!(f, "  [retry {retry}/{max} in {}]", duration::format(delay))?;
                }
                Some(RetryNote::Exhausted { max }) => write!(f, "  [retries exhausted ({max})]")?,
                None => {}
            }
            writeln!(f)?;
        }
        match &self.end {
            SimEnd::Completed { outcome } => writeln!(f, "completed: {outcome}")?,
            SimEnd::Waiting {
                node,
                attempt,
                delay,
            } if delay.is_zero() => {
                writeln!(f, "waiting: {node} (attempt {attempt}) needs a label")?;
            }
            SimEnd::Waiting {
                node,
                attempt,
                delay,
            } => {
                writeln!(
                    f,
                    "waiting: {node} (attempt {attempt}, available in {}) needs a label",
                    duration::format(*delay)
                )?;
            }
            SimEnd::Stuck { incident } => writeln!(
                f,
                "stuck ({}): {}",
                incident.reason.as_str(),
                incident.message
            )?,
            SimEnd::Rejected { error, .. } => writeln!(f, "rejected: {error}")?,
        }
        if !self.unused.is_empty() {
            writeln!(f, "unused labels: {}", self.unused.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advance::IncidentReason;
    use crate::yaml::parse_yaml;

    const ORDER: &str = include_str!("../../example-worker/graphs/order.yaml");

    fn order() -> Graph {
        parse_yaml(ORDER).unwrap().validate().unwrap().graph
    }

    #[test]
    fn happy_path_completes_and_prints_each_step() {
        let sim = simulate(&order(), &["reserved", "charged", "sent"]);
        assert_eq!(
            sim.end,
            SimEnd::Completed {
                outcome: "sent".to_owned()
            }
        );
        assert_eq!(
            sim.to_string(),
            "1. reserve (attempt 1) --reserved--> charge\n\
             2. charge (attempt 1) --charged--> confirm\n\
             3. confirm (attempt 1) --sent--> (end)\n\
             completed: sent\n"
        );
    }

    #[test]
    fn retries_show_budget_delay_and_attempts_then_exhaust() {
        let sim = simulate(
            &order(),
            &["error", "error", "error", "error", "timeout", "give_up"],
        );
        let text = sim.to_string();
        assert!(
            text.contains("1. reserve (attempt 1) --error--> reserve  [retry 1/3 in 1s]\n"),
            "{text}"
        );
        assert!(
            text.contains("2. reserve (attempt 2) --error--> reserve  [retry 2/3 in 2s]\n"),
            "{text}"
        );
        assert!(
            text.contains("3. reserve (attempt 3) --error--> reserve  [retry 3/3 in 4s]\n"),
            "{text}"
        );
        assert!(
            text.contains("4. reserve (attempt 4) --error--> escalate  [retries exhausted (3)]\n"),
            "{text}"
        );
        assert!(
            text.contains("5. escalate (attempt 1) --timeout--> escalate  [retry 1/3 at once]\n"),
            "{text}"
        );
        assert!(
            text.contains("6. escalate (attempt 2) --give_up--> release\n"),
            "{text}"
        );
        assert!(
            text.ends_with("waiting: release (attempt 1) needs a label\n"),
            "{text}"
        );
        assert_eq!(
            sim.end,
            SimEnd::Waiting {
                node: "release".to_owned(),
                attempt: 1,
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn labels_running_out_mid_retry_show_the_backoff() {
        let sim = simulate(&order(), &["error"]);
        assert_eq!(
            sim.end,
            SimEnd::Waiting {
                node: "reserve".to_owned(),
                attempt: 2,
                delay: Duration::from_secs(1)
            }
        );
        assert!(
            sim.to_string()
                .ends_with("waiting: reserve (attempt 2, available in 1s) needs a label\n")
        );
    }

    #[test]
    fn label_not_offered_is_rejected_and_the_rest_left_unused() {
        let sim = simulate(&order(), &["reserved", "refunded", "charged"]);
        match &sim.end {
            SimEnd::Rejected { node, label, error } => {
                assert_eq!((node.as_str(), label.as_str()), ("charge", "refunded"));
                assert!(
                    error
                        .to_string()
                        .contains("answer with one of: charged, declined"),
                    "{error}"
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(sim.unused, ["refunded", "charged"]);
        assert!(
            sim.to_string()
                .contains("rejected: node `charge`: label `refunded` is not offered")
        );
    }

    #[test]
    fn reserved_label_without_edge_gets_stuck() {
        let sim = simulate(&order(), &["reserved", "charged", "error", "sent"]);
        match &sim.end {
            SimEnd::Stuck { incident } => {
                assert_eq!(incident.reason, IncidentReason::NoRoute);
                assert_eq!(incident.node, "confirm");
            }
            other => panic!("expected stuck, got {other:?}"),
        }
        assert_eq!(sim.unused, ["sent"]);
        let text = sim.to_string();
        assert!(
            text.contains("3. confirm (attempt 1) --error--> (stuck)\n"),
            "{text}"
        );
        assert!(
            text.contains("stuck (no_route): node `confirm` ended with `error`"),
            "{text}"
        );
        assert!(text.ends_with("unused labels: sent\n"), "{text}");
    }

    #[test]
    fn no_labels_waits_at_the_start() {
        let sim = simulate(&order(), &[]);
        assert!(sim.steps.is_empty());
        assert_eq!(
            sim.to_string(),
            "waiting: reserve (attempt 1) needs a label\n"
        );
    }
}
