//! Figures and how they are shown: a table for people (figure | value | target | pass) and
//! one line of JSON for machines. Both are made from one list of figures, so they never
//! disagree. Pure: no IO.

use std::fmt::Write;

use serde_json::{Map, Value};

use crate::targets::Target;

/// Width of the figure column of the table.
const LABEL_WIDTH: usize = 50;

/// Width of the value column (with its unit).
const VALUE_WIDTH: usize = 16;

/// Width of the target column.
const TARGET_WIDTH: usize = 36;

/// One figure: its JSON key, its label in the table, its value and unit, and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Key in the JSON line, stable for scripts that compare runs.
    key: String,
    /// What the table calls it.
    label: String,
    /// A number, a string, a boolean, or `null` when it was not measured.
    value: Value,
    /// Shown after the value in the table; JSON keys carry the unit in their names instead.
    unit: &'static str,
    /// The value before rounding, which targets are checked against.
    raw: Option<f64>,
    /// Its target and whether it was met, for figures that have one.
    check: Option<Check>,
}

/// A figure's target and what the run says of it.
#[derive(Debug, Clone, PartialEq)]
struct Check {
    /// The target as people read it, such as `< 5`.
    target: String,
    /// Met, missed, or not measured.
    verdict: Verdict,
}

/// What a run says of a target.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Met.
    Pass,
    /// Missed; also a figure that should have been measured and was not.
    Fail,
    /// Not measured, for the reason given (such as pgbench being skipped): neither met nor
    /// missed.
    NotMeasured(String),
}

/// Figures under a heading of the table.
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading: which workload, at which size.
    pub title: String,
    /// The figures under it.
    pub figures: Vec<Figure>,
}

/// A figure whose value is shown as it is (text, a count, a flag).
pub fn figure(
    key: &str,
    label: impl Into<String>,
    value: impl Into<Value>,
    unit: &'static str,
) -> Figure {
    let value = value.into();
    Figure {
        key: key.to_owned(),
        label: label.into(),
        raw: value.as_f64(),
        value,
        unit,
        check: None,
    }
}

/// A measured number, shown rounded to three decimals; `None` when it was not measured.
pub fn number(
    key: &str,
    label: impl Into<String>,
    value: Option<f64>,
    unit: &'static str,
) -> Figure {
    Figure {
        raw: value,
        ..figure(key, label, round(value), unit)
    }
}

impl Figure {
    /// Its key in the JSON line.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This figure, its label prefixed with `what` it is about (`what: label`).
    pub fn labelled_under(mut self, what: &str) -> Figure {
        self.label = format!("{what}: {}", self.label);
        self
    }

    /// The figure with `target`, checked against its unrounded value. A figure without a
    /// value misses it.
    pub fn against(self, target: Target) -> Figure {
        let pass = self.raw.is_some_and(|value| target.passes(value));
        self.with_check(target.describe(), pass)
    }

    /// As [`Figure::against`], except that a figure without a value whose measurement was
    /// skipped, `skipped` saying why, has its target not measured instead of missed.
    pub fn against_unless_skipped(self, target: Target, skipped: Option<&str>) -> Figure {
        match (self.raw, skipped) {
            (None, Some(reason)) => Figure {
                check: Some(Check {
                    target: target.describe(),
                    verdict: Verdict::NotMeasured(reason.to_owned()),
                }),
                ..self
            },
            _ => self.against(target),
        }
    }

    /// The figure with a target that is a rule of its own: `target` describes it, `pass`
    /// says whether it was met.
    pub fn with_check(mut self, target: impl Into<String>, pass: bool) -> Figure {
        self.check = Some(Check {
            target: target.into(),
            verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        });
        self
    }
}

/// The table: a header, then one section per workload, a line per figure, each line ending
/// in a newline.
pub fn table(sections: &[Section]) -> String {
    let mut table = String::new();
    let header = format!(
        "{:<width$} {:>VALUE_WIDTH$}  {:<TARGET_WIDTH$} pass",
        "figure",
        "value",
        "target",
        width = LABEL_WIDTH + 2
    );
    let _ = writeln!(table, "{header}");
    let _ = writeln!(table, "{}", "-".repeat(header.len()));
    for section in sections {
        let _ = writeln!(table, "{}", section.title);
        for f in &section.figures {
            let value = match &f.value {
                Value::Null => "-".to_owned(),
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = format!("{value} {}", f.unit);
            let (target, pass) = match &f.check {
                Some(check) => {
                    let target = format!("{} {}", check.target, f.unit);
                    let pass = match &check.verdict {
                        Verdict::Pass => "pass".to_owned(),
                        Verdict::Fail => "FAIL".to_owned(),
                        Verdict::NotMeasured(reason) => format!("not measured: {reason}"),
                    };
                    (target, pass)
                }
                None => (String::new(), String::new()),
            };
            let line = format!(
                "  {:<LABEL_WIDTH$} {:>VALUE_WIDTH$}  {:<TARGET_WIDTH$} {pass}",
                f.label,
                value.trim_end(),
                target.trim_end()
            );
            let _ = writeln!(table, "{}", line.trim_end());
        }
        table.push('\n');
    }
    table
}

/// Every figure as one line of JSON (no newline): `key: value` (numbers rounded to three
/// decimals, `null` for what was not measured); for a figure with a target also
/// `key_target` and `key_pass` (`null` for a target not measured); `targets_failed`, the keys
/// of the targets missed; and `targets_not_measured`, the keys of those not measured.
pub fn json(sections: &[Section]) -> String {
    let mut map = Map::new();
    let mut failed = Vec::new();
    let mut not_measured = Vec::new();
    for f in sections.iter().flat_map(|section| &section.figures) {
        map.insert(f.key.clone(), f.value.clone());
        if let Some(check) = &f.check {
            map.insert(format!("{}_target", f.key), check.target.clone().into());
            let pass = match check.verdict {
                Verdict::Pass => Value::Bool(true),
                Verdict::Fail => {
                    failed.push(Value::from(f.key.clone()));
                    Value::Bool(false)
                }
                Verdict::NotMeasured(_) => {
                    not_measured.push(Value::from(f.key.clone()));
                    Value::Null
                }
            };
            map.insert(format!("{}_pass", f.key), pass);
        }
    }
    map.insert("targets_failed".to_owned(), Value::Array(failed));
    map.insert(
        "targets_not_measured".to_owned(),
        Value::Array(not_measured),
    );
    Value::Object(map).to_string()
}

/// Three decimals are more than any of these figures can tell.
fn round(value: Option<f64>) -> Option<f64> {
    value.map(|v| (v * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections() -> Vec<Section> {
        vec![
            Section {
                title: "(e) idle".to_owned(),
                figures: vec![
                    number("idle_cpu_pct", "server CPU", Some(4.99961), "%")
                        .against(Target::Below(5.0)),
                    number("idle_claims_per_s", "claim queries", Some(33.3), "/s")
                        .against(Target::Below(1.0)),
                    number("idle_xacts_per_s", "transactions", None, "/s"),
                ],
            },
            Section {
                title: "(f) one job".to_owned(),
                figures: vec![
                    figure("one_job_pollers", "pollers with the job", 1, "")
                        .against(Target::Exactly(1.0)),
                    figure("one_job_pass", "all of (f)", true, "").with_check("1 poller", true),
                    number("one_job_missing", "not measured", None, "ms")
                        .against(Target::AtMost(1.0)),
                ],
            },
        ]
    }

    /// A section of figures whose targets may be not measured.
    fn skippable() -> Section {
        let skipped = Some("pgbench was skipped");
        Section {
            title: "ratios".to_owned(),
            figures: vec![
                number("ratio_skipped", "skipped ratio", None, "")
                    .against_unless_skipped(Target::AtLeast(1.0), skipped),
                number("ratio_low", "low ratio", Some(0.4), "")
                    .against_unless_skipped(Target::AtLeast(0.5), None),
                number("ratio_high", "high ratio", Some(1.2), "")
                    .against_unless_skipped(Target::AtLeast(1.0), None),
                number("ratio_missing", "missing ratio", None, "")
                    .against_unless_skipped(Target::AtLeast(1.0), None),
            ],
        }
    }

    #[test]
    fn targets_are_checked_before_rounding() {
        let shown = number("x", "x", Some(4.99961), "%").against(Target::Below(5.0));
        assert_eq!(shown.value, Value::from(5.0));
        assert_eq!(shown.check.map(|c| c.verdict), Some(Verdict::Pass));
    }

    #[test]
    fn only_a_skipped_measurement_leaves_its_target_not_measured() {
        let verdicts: Vec<Option<Verdict>> = skippable()
            .figures
            .into_iter()
            .map(|f| f.check.map(|c| c.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                Some(Verdict::NotMeasured("pgbench was skipped".to_owned())),
                Some(Verdict::Fail),
                Some(Verdict::Pass),
                Some(Verdict::Fail),
            ]
        );
        let measured = number("x", "x", Some(0.4), "")
            .against_unless_skipped(Target::AtLeast(0.5), Some("skipped"));
        assert_eq!(
            measured.check.map(|c| c.verdict),
            Some(Verdict::Fail),
            "a value is checked even with a reason to skip"
        );
    }

    #[test]
    fn a_target_not_measured_is_neither_met_nor_missed() {
        let json: Value = serde_json::from_str(&json(&[skippable()])).unwrap();
        assert_eq!(json["ratio_skipped"], Value::Null);
        assert_eq!(json["ratio_skipped_target"], ">= 1");
        assert_eq!(json["ratio_skipped_pass"], Value::Null);
        assert_eq!(json["ratio_low_pass"], false);
        assert_eq!(json["ratio_high_pass"], true);
        assert_eq!(json["ratio_missing_pass"], false);
        assert_eq!(
            json["targets_failed"],
            serde_json::json!(["ratio_low", "ratio_missing"])
        );
        assert_eq!(
            json["targets_not_measured"],
            serde_json::json!(["ratio_skipped"])
        );

        let table = table(&[skippable()]);
        let line = |label: &str| {
            table
                .lines()
                .find(|line| line.contains(label))
                .unwrap()
                .to_owned()
        };
        let skipped = line("skipped ratio");
        assert!(skipped.contains(">= 1"), "{skipped}");
        assert!(
            skipped.ends_with("not measured: pgbench was skipped"),
            "{skipped}"
        );
        assert!(
            !skipped.contains("FAIL") && !skipped.contains("pass"),
            "{skipped}"
        );
        assert!(line("low ratio").ends_with("FAIL"));
        assert!(line("high ratio").ends_with("pass"));
    }

    #[test]
    fn json_has_every_figure_its_targets_and_the_failed_ones() {
        let json: Value = serde_json::from_str(&json(&sections())).unwrap();
        assert_eq!(json["idle_cpu_pct"], 5.0);
        assert_eq!(json["idle_cpu_pct_target"], "< 5");
        assert_eq!(json["idle_cpu_pct_pass"], true);
        assert_eq!(json["idle_claims_per_s"], 33.3);
        assert_eq!(json["idle_claims_per_s_pass"], false);
        assert_eq!(json["idle_xacts_per_s"], Value::Null);
        assert!(json.get("idle_xacts_per_s_pass").is_none());
        assert_eq!(json["one_job_pollers"], 1);
        assert_eq!(json["one_job_pass_target"], "1 poller");
        assert_eq!(json["one_job_missing_pass"], false, "unmeasured is not met");
        assert_eq!(
            json["targets_failed"],
            serde_json::json!(["idle_claims_per_s", "one_job_missing"])
        );
        assert_eq!(json["targets_not_measured"], serde_json::json!([]));
    }

    #[test]
    fn table_has_a_line_per_figure_with_target_and_verdict() {
        let table = table(&sections());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("figure"));
        assert!(lines[0].ends_with("pass"));
        let claims = lines
            .iter()
            .find(|line| line.contains("claim queries"))
            .unwrap();
        assert!(claims.contains("33.30 /s"), "{claims}");
        assert!(claims.contains("< 1 /s"), "{claims}");
        assert!(claims.ends_with("FAIL"), "{claims}");
        let cpu = lines
            .iter()
            .find(|line| line.contains("server CPU"))
            .unwrap();
        assert!(cpu.ends_with("pass"), "{cpu}");
        let xacts = lines
            .iter()
            .find(|line| line.contains("transactions"))
            .unwrap();
        assert!(xacts.trim_end().ends_with("- /s"), "{xacts}");
        assert!(lines.contains(&"(f) one job"));
    }

    #[test]
    fn a_figure_labelled_under_a_heading_keeps_its_key() {
        let section = Section {
            title: "(h) history".to_owned(),
            figures: vec![
                number("empty_steps_per_s", "steps per second", Some(5.0), "/s")
                    .labelled_under("empty database"),
            ],
        };
        assert_eq!(section.figures[0].key(), "empty_steps_per_s");
        let table = table(&[section]);
        assert!(
            table.contains("empty database: steps per second"),
            "{table}"
        );
    }
}
