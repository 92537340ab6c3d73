//! Pictures of a graph for `rondo graph show`: Graphviz DOT and Mermaid flowcharts. Rule: draw
//! every route the engine can take (labels, retry budgets, exhausted routes, terminal labels,
//! the deadline), and draw even an invalid definition, since seeing it helps to fix it. Pure:
//! text in, text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::duration;
use crate::model::{EdgeDef, GraphDef, NodeDef};

/// The text on an edge: its label, with the retry budget as `×N`.
fn edge_text(edge: &EdgeDef) -> String {
    match edge.retry {
        Some(retry) => format!("{} ×{}", edge.label, retry.max),
        None => edge.label.clone(),
    }
}

/// The text in a node box: name, then the operation or `(human)`.
fn node_text(node: &NodeDef) -> String {
    match (&node.operation, node.human) {
        (_, true) => format!("{}\n(human)", node.name),
        (Some(op), false) => format!("{}\n{op}", node.name),
        (None, false) => node.name.clone(),
    }
}

fn deadline_text(def: &GraphDef) -> String {
    def.deadline.map_or_else(
        || "deadline".to_owned(),
        |d| format!("deadline {}", duration::format(d)),
    )
}

/// A DOT string literal.
fn dot_str(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// Graphviz DOT: boxes for operation nodes, yellow hexagons for human nodes, a point for the
/// start, a double circle for the end; retry edges show `label ×N`, exhausted routes are
/// dashed and the deadline route is dotted.
pub fn dot(graph: &GraphDef) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_str(&graph.name));
    out.push_str("  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\"];\n");
    out.push_str("  \"__start\" [shape=point, width=0.15, label=\"\"];\n");
    let _ = writeln!(out, "  \"__start\" -> {};", dot_str(&graph.start));
    for node in &graph.nodes.0 {
        let style = if node.human {
            ", shape=hexagon, style=filled, fillcolor=lightyellow"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} [label={}{style}];",
            dot_str(&node.name),
            dot_str(&node_text(node))
        );
    }
    let mut has_end = false;
    for node in &graph.nodes.0 {
        let from = dot_str(&node.name);
        for edge in &node.edges {
            let label = dot_str(&edge_text(edge));
            match &edge.to {
                Some(to) => {
                    let _ = writeln!(out, "  {from} -> {} [label={label}];", dot_str(to));
                }
                None => {
                    has_end = true;
                    let _ = writeln!(out, "  {from} -> \"__end\" [label={label}];");
                }
            }
            if let Some(exhausted) = &edge.exhausted {
                let text = dot_str(&format!("{} exhausted", edge.label));
                let _ = writeln!(
                    out,
                    "  {from} -> {} [label={text}, style=dashed];",
                    dot_str(exhausted)
                );
            }
        }
    }
    if has_end {
        out.push_str("  \"__end\" [shape=doublecircle, width=0.3, label=\"end\"];\n");
    }
    if let Some(target) = &graph.on_deadline {
        let text = dot_str(&deadline_text(graph));
        let _ = writeln!(out, "  \"__deadline\" [shape=note, label={text}];");
        let _ = writeln!(
            out,
            "  \"__deadline\" -> {} [style=dotted];",
            dot_str(target)
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid label in double quotes (Mermaid's entity for `"` inside).
fn mermaid_str(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;").replace('\n', "<br/>"))
}

/// A Mermaid flowchart: rounded boxes for operation nodes, hexagons for human nodes, circles
/// for start and end; retry edges show `label ×N`, exhausted routes and the deadline route are
/// dotted. Node ids are `n0`, `n1`, ... in definition order (`u0`, ... for undefined targets),
/// since node names may contain characters Mermaid reads as syntax.
pub fn mermaid(graph: &GraphDef) -> String {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::from("flowchart LR\n");
    for (i, node) in graph.nodes.0.iter().enumerate() {
        let id = format!("n{i}");
        let text = mermaid_str(&node_text(node));
        let shape = if node.human {
            format!("{{{{{text}}}}}")
        } else {
            format!("({text})")
        };
        let _ = writeln!(out, "  {id}{shape}");
        ids.entry(node.name.clone()).or_insert(id);
    }
    // Targets that are not defined still get a box, marked as missing.
    let mut id_of = |name: &str, out: &mut String| -> String {
        if let Some(id) = ids.get(name) {
            return id.clone();
        }
        let id = format!("u{}", ids.len());
        let _ = writeln!(
            out,
            "  {id}[{}]:::missing",
            mermaid_str(&format!("{name}\n(undefined)"))
        );
        ids.insert(name.to_owned(), id.clone());
        id
    };
    let start = id_of(&graph.start, &mut out);
    let _ = writeln!(out, "  rondo_start((start)) --> {start}");
    let mut has_end = false;
    for node in &graph.nodes.0 {
        let from = id_of(&node.name, &mut out);
        for edge in &node.edges {
            let label = mermaid_str(&edge_text(edge));
            let to = match &edge.to {
                Some(to) => id_of(to, &mut out),
                None => {
                    has_end = true;
                    "rondo_end".to_owned()
                }
            };
            let _ = writeln!(out, "  {from} -->|{label}| {to}");
            if let Some(exhausted) = &edge.exhausted {
                let to = id_of(exhausted, &mut out);
                let _ = writeln!(
                    out,
                    "  {from} -.->|{}| {to}",
                    mermaid_str(&format!("{} exhausted", edge.label))
                );
            }
        }
    }
    if has_end {
        out.push_str("  rondo_end(((end)))\n");
    }
    if let Some(target) = &graph.on_deadline {
        let to = id_of(target, &mut out);
        let _ = writeln!(
            out,
            "  rondo_deadline>{}] -.-> {to}",
            mermaid_str(&deadline_text(graph))
        );
    }
    out.push_str("  classDef missing stroke:#c00,stroke-dasharray:4;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    const ORDER: &str = include_str!("../../example-worker/graphs/order.yaml");

    fn has_line(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn dot_draws_nodes_edges_budgets_and_ends() {
        let def = parse_yaml(ORDER).unwrap();
        let text = dot(&def);
        assert!(text.starts_with("digraph \"order\" {\n"));
        assert!(text.ends_with("}\n"));
        has_line(&text, "\"__start\" -> \"reserve\";");
        has_line(
            &text,
            "\"reserve\" [label=\"reserve\\ninventory.reserve\"];",
        );
        has_line(
            &text,
            "\"escalate\" [label=\"escalate\\n(human)\", shape=hexagon, style=filled, fillcolor=lightyellow];",
        );
        has_line(&text, "\"reserve\" -> \"charge\" [label=\"reserved\"];");
        has_line(&text, "\"reserve\" -> \"reserve\" [label=\"error ×3\"];");
        has_line(
            &text,
            "\"reserve\" -> \"escalate\" [label=\"error exhausted\", style=dashed];",
        );
        has_line(&text, "\"confirm\" -> \"__end\" [label=\"sent\"];");
        has_line(
            &text,
            "\"__end\" [shape=doublecircle, width=0.3, label=\"end\"];",
        );
        has_line(&text, "\"__deadline\" [shape=note, label=\"deadline 2h\"];");
        has_line(&text, "\"__deadline\" -> \"escalate\" [style=dotted];");
    }

    #[test]
    fn mermaid_draws_nodes_edges_budgets_and_ends() {
        let def = parse_yaml(ORDER).unwrap();
        let text = mermaid(&def);
        assert!(text.starts_with("flowchart LR\n"));
        has_line(&text, "n0(\"reserve<br/>inventory.reserve\")");
        has_line(&text, "n3{{\"escalate<br/>(human)\"}}");
        has_line(&text, "rondo_start((start)) --> n0");
        has_line(&text, "n0 -->|\"reserved\"| n1");
        has_line(&text, "n0 -->|\"error ×3\"| n0");
        has_line(&text, "n0 -.->|\"error exhausted\"| n3");
        has_line(&text, "n5 -->|\"sent\"| rondo_end");
        has_line(&text, "rondo_end(((end)))");
        has_line(&text, "rondo_deadline>\"deadline 2h\"] -.-> n3");
    }

    #[test]
    fn invalid_definitions_still_render_with_escaping() {
        let yaml =
            "name: 'say \"hi\"'\nstart: a\nnodes:\n  a: { operation: x, on: { go: ghost } }\n";
        let def = parse_yaml(yaml).unwrap();
        let text = dot(&def);
        assert!(text.starts_with("digraph \"say \\\"hi\\\"\" {"), "{text}");
        has_line(&text, "\"a\" -> \"ghost\" [label=\"go\"];");
        let text = mermaid(&def);
        has_line(&text, "u1[\"ghost<br/>(undefined)\"]:::missing");
        has_line(&text, "n0 -->|\"go\"| u1");
    }
}
