//! The canonical hash of a graph definition: hex SHA-256 of a canonical JSON text. Rule: equal
//! for definitions that mean the same (node, edge and params key order, duration spelling and
//! empty-versus-absent text do not matter) and different for any change of meaning, the
//! description included.

use sha2::{Digest, Sha256};

use serde_json::{Map, Value, json};

use crate::duration;
use crate::model::{EdgeDef, GraphDef, NodeDef};

/// Bumped whenever the canonical form changes, so old and new hashes never collide.
const DOMAIN: &str = "rondo.graph.v1\n";

/// Hex SHA-256 of the canonical form of `def`.
pub(crate) fn canonical_hash(def: &GraphDef) -> String {
    let mut text = String::from(DOMAIN);
    write_canonical(&canonical_value(def), &mut text);
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn canonical_value(def: &GraphDef) -> Value {
    let nodes: Map<String, Value> = def
        .nodes
        .0
        .iter()
        .map(|n| (n.name.clone(), node_value(n)))
        .collect();
    json!({
        "name": def.name,
        "description": text(Some(&def.description)),
        "start": def.start,
        "max_steps": def.max_steps,
        "deadline": def.deadline.map(duration::format),
        "on_deadline": def.on_deadline,
        "nodes": nodes,
    })
}

fn node_value(node: &NodeDef) -> Value {
    let edges: Map<String, Value> = node
        .edges
        .iter()
        .map(|e| (e.label.clone(), edge_value(e)))
        .collect();
    json!({
        "operation": text(node.operation.as_ref()),
        "human": node.human,
        "prompt": text(node.prompt.as_ref()),
        "params": node.params,
        "timeout": node.timeout.map(duration::format),
        "heartbeat": node.heartbeat.map(duration::format),
        "on": edges,
    })
}

fn edge_value(edge: &EdgeDef) -> Value {
    json!({
        "to": edge.to,
        "retry": edge.retry.map(|r| json!({
            "max": r.max,
            "delay": duration::format(r.delay),
            "backoff": r.backoff,
            "max_delay": r.max_delay.map(duration::format),
        })),
        "exhausted": edge.exhausted,
    })
}

/// Empty text and absent text mean the same (protobuf cannot tell them apart).
fn text(s: Option<&String>) -> Value {
    s.filter(|s| !s.is_empty())
        .map_or(Value::Null, |s| Value::String(s.clone()))
}

/// Compact JSON with object keys sorted, whatever order the map keeps them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
