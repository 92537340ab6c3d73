//! The text form of graph definitions: serde for [`Nodes`], [`NodeDef`], [`EdgeDef`] and
//! [`Retry`] in the YAML shape of SPEC §3, and [`parse_yaml`] / [`to_yaml`]. The same serde
//! impls serve JSON, which is how the server stores a definition (JSONB) and reads it back.
//!
//! Rule: reject rather than guess. Unknown keys and keys given twice are errors that name the
//! node and label (derive's maps would silently keep the last duplicate), and hostile input is
//! bounded before it can cost much: size ([`MAX_YAML_BYTES`]), nesting ([`MAX_DEPTH`]) and
//! alias expansion (no more values than the file has bytes).
//!
//! Two forms are read. As written (and as [`to_yaml`] writes), `nodes` is a map keyed by node
//! name and `on` a map keyed by label. The serde impls write the list form instead: `nodes` a
//! list of nodes with a `name` field, `on` a list of edges with a `label` field. JSON objects
//! and PostgreSQL JSONB do not keep key order, lists do, so a stored definition reads back in
//! its definition order.

mod budget;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::model::{EdgeDef, GraphDef, NodeDef, Nodes, Retry};

/// Largest graph file [`parse_yaml`] reads: 1 MiB.
pub const MAX_YAML_BYTES: usize = 1 << 20;

/// Deepest nesting of maps and lists [`parse_yaml`] accepts, `params` included.
pub const MAX_DEPTH: usize = 64;

/// Fields of a node body, as written under its name in `nodes`.
pub const NODE_FIELDS: [&str; 7] = [
    "operation",
    "human",
    "prompt",
    "params",
    "timeout",
    "heartbeat",
    "on",
];

/// Fields of an edge written as an object.
pub const EDGE_FIELDS: [&str; 3] = ["to", "retry", "exhausted"];

/// Fields of a retry budget.
pub const RETRY_FIELDS: [&str; 4] = ["max", "delay", "backoff", "max_delay"];

/// A graph file that could not be read; the message says where (line and column, when known)
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What went wrong, prefixed with the location when it is known.
    pub message: String,
    /// Line of the problem, from 1.
    pub line: Option<usize>,
    /// Column of the problem, from 1.
    pub column: Option<usize>,
}

impl ParseError {
    fn from_yaml(err: &serde_yaml_ng::Error) -> Self {
        let mut message = err.to_string();
        let location = err.location();
        let (line, column) = (
            location.as_ref().map(|l| l.line()),
            location.as_ref().map(|l| l.column()),
        );
        if let Some(loc) = location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(text) = message.strip_suffix(&suffix) {
                // Our own messages name the node and label; the dotted path in front of them
                // would only repeat it.
                let text = match text.split_once(": ") {
                    Some((path, rest)) if !path.contains(' ') && rest.starts_with("node `") => rest,
                    _ => text,
                };
                message = format!("line {}, column {}: {text}", loc.line(), loc.column());
            }
        }
        ParseError {
            message,
            line,
            column,
        }
    }
}

/// Parses a graph definition from YAML. Checks the shape only; call
/// [`GraphDef::validate`](crate::model::GraphDef::validate) for the rules of SPEC §3.
pub fn parse_yaml(text: &str) -> Result<GraphDef, ParseError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(ParseError {
            message: format!(
                "the graph file is {} bytes; the limit is {MAX_YAML_BYTES} bytes (1 MiB)",
                text.len()
            ),
            line: None,
            column: None,
        });
    }
    // Without aliases every value takes at least one byte of text, so this budget only ever
    // stops alias expansion.
    let budget = budget::Budget::new(text.len() + 1024, MAX_DEPTH);
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    GraphDef::deserialize(budget::Limited::new(deserializer, &budget))
        .map_err(|e| ParseError::from_yaml(&e))
}

/// Writes a definition as YAML in the shape [`parse_yaml`] reads (durations canonical).
pub fn to_yaml(def: &GraphDef) -> String {
    serde_yaml_ng::to_string(&YamlGraph(def))
        .expect("a graph definition has only string keys and always serializes")
}

// ---------------------------------------------------------------------------------------------
// Serialization. The serde impls write the list form, which keeps definition order through
// JSON maps and PostgreSQL JSONB (both reorder object keys); `to_yaml` writes the map form.

/// The YAML form of a whole definition: nodes and edges as maps keyed by name and label.
struct YamlGraph<'a>(&'a GraphDef);

impl Serialize for YamlGraph<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let def = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &def.name)?;
        if !def.description.is_empty() {
            map.serialize_entry("description", &def.description)?;
        }
        map.serialize_entry("start", &def.start)?;
        if let Some(max_steps) = def.max_steps {
            map.serialize_entry("max_steps", &max_steps)?;
        }
        if let Some(deadline) = def.deadline {
            map.serialize_entry("deadline", &duration::format(deadline))?;
        }
        if let Some(on_deadline) = &def.on_deadline {
            map.serialize_entry("on_deadline", on_deadline)?;
        }
        map.serialize_entry("nodes", &NodeMap(&def.nodes.0))?;
        map.end()
    }
}

/// `nodes` as a map from name to body.
struct NodeMap<'a>(&'a [NodeDef]);

impl Serialize for NodeMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for node in self.0 {
            map.serialize_entry(&node.name, &NodeBody(node))?;
        }
        map.end()
    }
}

/// A node as written under its name in `nodes`.
struct NodeBody<'a>(&'a NodeDef);

impl Serialize for NodeBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        write_node_fields(self.0, &mut map, &EdgeMap(&self.0.edges))?;
        map.end()
    }
}

/// `on` as a map from label to edge body.
struct EdgeMap<'a>(&'a [EdgeDef]);

impl Serialize for EdgeMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for edge in self.0 {
            map.serialize_entry(&edge.label, &EdgeBody(edge))?;
        }
        map.end()
    }
}

/// An edge as written under its label: the bare target (or null) when that says it all.
struct EdgeBody<'a>(&'a EdgeDef);

impl Serialize for EdgeBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let edge = self.0;
        if edge.retry.is_none() && edge.exhausted.is_none() {
            return edge.to.serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        write_edge_fields(edge, &mut map)?;
        map.end()
    }
}

impl Serialize for Nodes {
    /// A list of nodes, each with its `name`, in definition order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

impl Serialize for NodeDef {
    /// A node with its `name`, and `on` as a list of edges with their `label`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        write_node_fields(self, &mut map, &self.edges)?;
        map.end()
    }
}

fn write_node_fields<M: SerializeMap>(
    node: &NodeDef,
    map: &mut M,
    on: &impl Serialize,
) -> Result<(), M::Error> {
    if let Some(operation) = &node.operation {
        map.serialize_entry("operation", operation)?;
    }
    if node.human {
        map.serialize_entry("human", &true)?;
    }
    if let Some(prompt) = &node.prompt {
        map.serialize_entry("prompt", prompt)?;
    }
    if !node.params.is_empty() {
        map.serialize_entry("params", &node.params)?;
    }
    if let Some(timeout) = node.timeout {
        map.serialize_entry("timeout", &duration::format(timeout))?;
    }
    if let Some(heartbeat) = node.heartbeat {
        map.serialize_entry("heartbeat", &duration::format(heartbeat))?;
    }
    map.serialize_entry("on", on)
}

impl Serialize for EdgeDef {
    /// An edge with its `label`; `to` is null for a terminal label.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("label", &self.label)?;
        write_edge_fields(self, &mut map)?;
        map.end()
    }
}

fn write_edge_fields<M: SerializeMap>(edge: &EdgeDef, map: &mut M) -> Result<(), M::Error> {
    map.serialize_entry("to", &edge.to)?;
    if let Some(retry) = &edge.retry {
        map.serialize_entry("retry", retry)?;
    }
    if let Some(exhausted) = &edge.exhausted {
        map.serialize_entry("exhausted", exhausted)?;
    }
    Ok(())
}

impl Serialize for Retry {
    /// `max`, and the other fields when they differ from their defaults.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("max", &self.max)?;
        if !self.delay.is_zero() {
            map.serialize_entry("delay", &duration::format(self.delay))?;
        }
        if self.backoff != 1.0 {
            map.serialize_entry("backoff", &self.backoff)?;
        }
        if let Some(max_delay) = self.max_delay {
            map.serialize_entry("max_delay", &duration::format(max_delay))?;
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization. Both forms are read: maps keyed by name and label (YAML as written) and
// lists of named nodes and labelled edges (what the serde impls write).

impl<'de> Deserialize<'de> for Nodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodesVisitor)
    }
}

struct NodesVisitor;

fn duplicate_node(nodes: &[NodeDef], name: &str) -> Result<(), String> {
    if nodes.iter().any(|n| n.name == name) {
        return Err(format!(
            "node `{name}` is defined twice; node names must be unique, so rename or merge one of them"
        ));
    }
    Ok(())
}

impl<'de> Visitor<'de> for NodesVisitor {
    type Value = Nodes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from node name to node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Nodes, A::Error> {
        let mut nodes: Vec<NodeDef> = Vec::new();
        while let Some(name) = map.next_key_seed(Key(|name: &str| duplicate_node(&nodes, name)))? {
            nodes.push(map.next_value_seed(NodeSeed { name: Some(name) })?);
        }
        Ok(Nodes(nodes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nodes, A::Error> {
        let mut nodes: Vec<NodeDef> = Vec::new();
        while let Some(node) = seq.next_element_seed(NodeSeed { name: None })? {
            duplicate_node(&nodes, &node.name).map_err(de::Error::custom)?;
            nodes.push(node);
        }
        Ok(Nodes(nodes))
    }
}

impl<'de> Deserialize<'de> for NodeDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NodeSeed { name: None }.deserialize(deserializer)
    }
}

/// Reads a node body; `name` is the key it was found under, or `None` for a standalone node,
/// which then carries a `name` field.
struct NodeSeed {
    name: Option<String>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = NodeDef;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeDef, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = NodeDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node: a map with `operation` or `human: true`, and `on`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeDef, A::Error> {
        let extra = if self.name.is_none() {
            Some("name")
        } else {
            None
        };
        let mut node = NodeDef {
            name: self.name.unwrap_or_default(),
            operation: None,
            human: false,
            prompt: None,
            params: serde_json::Map::new(),
            timeout: None,
            heartbeat: None,
            edges: Vec::new(),
        };
        let mut seen: Vec<String> = Vec::new();
        loop {
            let ctx = if node.name.is_empty() {
                "node".to_owned()
            } else {
                format!("node `{}`", node.name)
            };
            let Some(key) = map.next_key_seed(field_key(&ctx, &NODE_FIELDS, extra, &seen))? else {
                break;
            };
            match key.as_str() {
                "name" => node.name = map.next_value()?,
                "operation" => node.operation = map.next_value()?,
                "human" => node.human = map.next_value()?,
                "prompt" => node.prompt = map.next_value()?,
                "params" => {
                    node.params = map
                        .next_value::<Option<serde_json::Map<_, _>>>()?
                        .unwrap_or_default();
                }
                "timeout" => {
                    node.timeout = map.next_value_seed(DurationSeed {
                        ctx: format!("{ctx}: `timeout`"),
                    })?
                }
                "heartbeat" => {
                    node.heartbeat = map.next_value_seed(DurationSeed {
                        ctx: format!("{ctx}: `heartbeat`"),
                    })?;
                }
                _ => node.edges = map.next_value_seed(EdgesSeed { ctx })?,
            }
            seen.push(key);
        }
        if extra.is_some() && !seen.iter().any(|k| k == "name") {
            return Err(de::Error::custom("node: missing field `name`"));
        }
        Ok(node)
    }
}

/// Reads `on`: a map from label to edge, or a list of labelled edges.
struct EdgesSeed {
    /// `node `x``, for messages.
    ctx: String,
}

impl EdgesSeed {
    fn duplicate(&self, edges: &[EdgeDef], label: &str) -> Result<(), String> {
        if edges.iter().any(|e| e.label == label) {
            return Err(format!(
                "{}: label `{label}` is given twice under `on`; keep one edge per label",
                self.ctx
            ));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for EdgesSeed {
    type Value = Vec<EdgeDef>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<EdgeDef>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EdgesSeed {
    type Value = Vec<EdgeDef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from label to edge")
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<EdgeDef>, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<EdgeDef>, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<EdgeDef>, A::Error> {
        let mut edges: Vec<EdgeDef> = Vec::new();
        while let Some(label) =
            map.next_key_seed(Key(|label: &str| self.duplicate(&edges, label)))?
        {
            let ctx = format!("{}: edge `{label}`", self.ctx);
            edges.push(map.next_value_seed(EdgeSeed {
                ctx,
                label: Some(label),
            })?);
        }
        Ok(edges)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<EdgeDef>, A::Error> {
        let mut edges: Vec<EdgeDef> = Vec::new();
        let ctx = format!("{}: edge", self.ctx);
        while let Some(edge) = seq.next_element_seed(EdgeSeed {
            ctx: ctx.clone(),
            label: None,
        })? {
            self.duplicate(&edges, &edge.label)
                .map_err(de::Error::custom)?;
            edges.push(edge);
        }
        Ok(edges)
    }
}

impl<'de> Deserialize<'de> for EdgeDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EdgeSeed {
            ctx: "edge".to_owned(),
            label: None,
        })
    }
}

/// Reads an edge: a target node name, null (terminal), or an object. `label` is the key it was
/// found under, or `None` for a standalone edge, which is then an object with a `label` field.
struct EdgeSeed {
    /// `node `x`: edge `y``, for messages.
    ctx: String,
    label: Option<String>,
}

impl EdgeSeed {
    fn edge(&self, to: Option<String>) -> EdgeDef {
        EdgeDef {
            label: self.label.clone().unwrap_or_default(),
            to,
            retry: None,
            exhausted: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for EdgeSeed {
    type Value = EdgeDef;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<EdgeDef, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EdgeSeed {
    type Value = EdgeDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a target node name, `~` for a terminal label, or `{ to: ..., retry: ..., exhausted: ... }`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EdgeDef, E> {
        Ok(self.edge(Some(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<EdgeDef, E> {
        Ok(self.edge(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<EdgeDef, E> {
        Ok(self.edge(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EdgeDef, A::Error> {
        let extra = if self.label.is_none() {
            Some("label")
        } else {
            None
        };
        let mut edge = self.edge(None);
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key_seed(field_key(&self.ctx, &EDGE_FIELDS, extra, &seen))? {
            match key.as_str() {
                "label" => edge.label = map.next_value()?,
                "to" => edge.to = map.next_value()?,
                "retry" => {
                    let ctx = format!("{}: retry", self.ctx);
                    edge.retry = map.next_value_seed(OptionSeed(RetrySeed { ctx }))?;
                }
                _ => edge.exhausted = map.next_value()?,
            }
            seen.push(key);
        }
        if !seen.iter().any(|k| k == "to") {
            return Err(de::Error::custom(format_args!(
                "{}: missing field `to`; name the target node, or write `to: ~` for a terminal label",
                self.ctx
            )));
        }
        if extra.is_some() && !seen.iter().any(|k| k == "label") {
            return Err(de::Error::custom(format_args!(
                "{}: missing field `label`",
                self.ctx
            )));
        }
        Ok(edge)
    }
}

impl<'de> Deserialize<'de> for Retry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RetrySeed {
            ctx: "retry".to_owned(),
        }
        .deserialize(deserializer)
    }
}

/// Reads a retry budget; `ctx` names the edge it belongs to.
struct RetrySeed {
    ctx: String,
}

impl<'de> DeserializeSeed<'de> for RetrySeed {
    type Value = Retry;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Retry, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RetrySeed {
    type Value = Retry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a retry budget such as `{ max: 3, delay: 1s, backoff: 2.0, max_delay: 1m }`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Retry, A::Error> {
        let mut max = None;
        let mut retry = Retry {
            max: 0,
            delay: Duration::ZERO,
            backoff: 1.0,
            max_delay: None,
        };
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key_seed(field_key(&self.ctx, &RETRY_FIELDS, None, &seen))? {
            match key.as_str() {
                "max" => max = Some(map.next_value::<u32>()?),
                "delay" => {
                    let ctx = format!("{}: `delay`", self.ctx);
                    retry.delay = map
                        .next_value_seed(DurationSeed { ctx })?
                        .unwrap_or_default();
                }
                "backoff" => retry.backoff = map.next_value::<Option<f64>>()?.unwrap_or(1.0),
                _ => {
                    let ctx = format!("{}: `max_delay`", self.ctx);
                    retry.max_delay = map.next_value_seed(DurationSeed { ctx })?;
                }
            }
            seen.push(key);
        }
        retry.max = max.ok_or_else(|| {
            de::Error::custom(format_args!(
                "{}: missing field `max`; say how many times in a row the edge may be taken",
                self.ctx
            ))
        })?;
        Ok(retry)
    }
}

/// A map key, checked by `F` as it is read, so that an error points at the key itself.
struct Key<F>(F);

impl<'de, F: FnOnce(&str) -> Result<(), String>> DeserializeSeed<'de> for Key<F> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<F: FnOnce(&str) -> Result<(), String>> Visitor<'_> for Key<F> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v).map_err(E::custom)?;
        Ok(v.to_owned())
    }
}

/// A field name of an object: one of `fields` (or `extra`), and not one already `seen`.
fn field_key<'s>(
    ctx: &'s str,
    fields: &'s [&'s str],
    extra: Option<&'s str>,
    seen: &'s [String],
) -> Key<impl FnOnce(&str) -> Result<(), String> + 's> {
    Key(move |key: &str| {
        if !fields.contains(&key) && extra != Some(key) {
            let expected: Vec<String> = extra
                .iter()
                .chain(fields)
                .map(|f| format!("`{f}`"))
                .collect();
            return Err(format!(
                "{ctx}: unknown field `{key}`; expected one of {}",
                expected.join(", ")
            ));
        }
        if seen.iter().any(|s| s == key) {
            return Err(format!("{ctx}: field `{key}` is given twice; keep one"));
        }
        Ok(())
    })
}

/// Reads null as `None` and anything else with the inner seed.
struct OptionSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(OptionVisitor(self.0, PhantomData))
    }
}

struct OptionVisitor<'de, S>(S, PhantomData<&'de ()>);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptionVisitor<'de, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// Reads an optional duration string; `ctx` names the node and field for messages.
struct DurationSeed {
    ctx: String,
}

impl<'de> DeserializeSeed<'de> for DurationSeed {
    type Value = Option<Duration>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DurationSeed {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `30s`, `5m` or `1h30m`")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Duration>, E> {
        duration::parse(v)
            .map(Some)
            .map_err(|e| E::custom(format_args!("{}: {e}", self.ctx)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const ORDER: &str = include_str!("../../example-worker/graphs/order.yaml");

    fn error_of(text: &str) -> String {
        parse_yaml(text)
            .expect_err("input must be rejected")
            .message
    }

    #[test]
    fn parses_the_spec_shape() {
        let def = parse_yaml(ORDER).unwrap();
        assert_eq!(def.name, "order");
        assert_eq!(def.start, "reserve");
        assert_eq!(def.max_steps, Some(500));
        assert_eq!(def.deadline, Some(Duration::from_secs(7200)));
        assert_eq!(def.on_deadline.as_deref(), Some("escalate"));
        let reserve = &def.nodes.0[0];
        assert_eq!(reserve.name, "reserve");
        assert_eq!(reserve.operation.as_deref(), Some("inventory.reserve"));
        assert_eq!(reserve.timeout, Some(Duration::from_secs(30)));
        assert_eq!(reserve.heartbeat, Some(Duration::from_secs(10)));
        let labels: Vec<&str> = reserve.edges.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["reserved", "out_of_stock", "error", "timeout"]);
        let error = reserve.edge("error").unwrap();
        assert_eq!(error.to.as_deref(), Some("reserve"));
        assert_eq!(error.exhausted.as_deref(), Some("escalate"));
        assert_eq!(
            error.retry,
            Some(Retry {
                max: 3,
                delay: Duration::from_secs(1),
                backoff: 2.0,
                max_delay: Some(Duration::from_secs(60)),
            })
        );
        let confirm = def.nodes.0.iter().find(|n| n.name == "confirm").unwrap();
        assert_eq!(confirm.edge("sent").unwrap().to, None);
        assert_eq!(confirm.params["template"], "order_confirmed");
        let escalate = def.nodes.0.iter().find(|n| n.name == "escalate").unwrap();
        assert!(escalate.human);
        assert_eq!(
            escalate.edge("timeout").unwrap().retry.unwrap().delay,
            Duration::ZERO
        );
    }

    #[test]
    fn yaml_and_json_round_trip() {
        let def = parse_yaml(ORDER).unwrap();
        assert_eq!(parse_yaml(&to_yaml(&def)).unwrap(), def);
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["nodes"][5]["name"], "confirm");
        assert_eq!(
            json["nodes"][5]["on"][0],
            serde_json::json!({"label": "sent", "to": null})
        );
        assert_eq!(json["nodes"][0]["timeout"], "30s");
        assert_eq!(json["nodes"][0]["on"][2]["retry"]["max_delay"], "1m");
        let text = serde_json::to_string(&json).unwrap();
        assert_eq!(serde_json::from_value::<GraphDef>(json).unwrap(), def);
        assert_eq!(serde_json::from_str::<GraphDef>(&text).unwrap(), def);
    }

    #[test]
    fn map_form_reads_from_json_too() {
        let json = serde_json::json!({
            "name": "g", "start": "a",
            "nodes": {"a": {"operation": "x", "timeout": "1m", "on": {"ok": null, "again": {"to": "a", "retry": {"max": 2}}}}}
        });
        let def: GraphDef = serde_json::from_value(json).unwrap();
        assert_eq!(def.nodes.0[0].timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            def.nodes.0[0].edge("again").unwrap().retry.map(|r| r.max),
            Some(2)
        );
    }

    #[test]
    fn list_form_rejects_duplicates_too() {
        let json = serde_json::json!({"name": "g", "start": "a", "nodes": [
            {"name": "a", "operation": "x", "on": [{"label": "ok", "to": null}, {"label": "ok", "to": "a"}]},
        ]});
        let err = serde_json::from_value::<GraphDef>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("node `a`: label `ok` is given twice"), "{err}");
        let json = serde_json::json!({"name": "g", "start": "a", "nodes": [
            {"name": "a", "operation": "x"}, {"name": "a", "operation": "y"},
        ]});
        let err = serde_json::from_value::<GraphDef>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("node `a` is defined twice"), "{err}");
    }

    #[test]
    fn standalone_node_and_edge_carry_their_name_and_label() {
        let def = parse_yaml(ORDER).unwrap();
        let node = &def.nodes.0[0];
        let json = serde_json::to_value(node).unwrap();
        assert_eq!(json["name"], "reserve");
        assert_eq!(serde_json::from_value::<NodeDef>(json).unwrap(), *node);
        let edge = &node.edges[0];
        let json = serde_json::to_value(edge).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"label": "reserved", "to": "charge"})
        );
        assert_eq!(serde_json::from_value::<EdgeDef>(json).unwrap(), *edge);
        let missing =
            serde_json::from_value::<EdgeDef>(serde_json::json!({"to": "x"})).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `label`"),
            "{missing}"
        );
    }

    #[test]
    fn terminal_edge_object_serializes_to_null() {
        let text = "name: g\nstart: a\nnodes:\n  a:\n    operation: op\n    on:\n      \
                    done: { to: ~, retry: { max: 2 } }\n";
        let def = parse_yaml(text).unwrap();
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(
            json["nodes"][0]["on"][0],
            serde_json::json!({"label": "done", "to": null, "retry": {"max": 2}})
        );
        assert_eq!(serde_json::from_value::<GraphDef>(json).unwrap(), def);
    }

    #[test]
    fn duplicate_node_is_rejected_by_name() {
        let text =
            "name: g\nstart: a\nnodes:\n  a:\n    operation: op\n  a:\n    operation: other\n";
        let message = error_of(text);
        assert!(message.contains("node `a` is defined twice"), "{message}");
        assert!(message.starts_with("line 6, column 3: "), "{message}");
    }

    #[test]
    fn duplicate_label_is_rejected_naming_node_and_label() {
        let text = "name: g\nstart: a\nnodes:\n  a:\n    operation: op\n    on:\n      ok: ~\n      ok: a\n";
        let message = error_of(text);
        assert!(
            message.contains("node `a`: label `ok` is given twice"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_fields_are_rejected_everywhere() {
        let cases = [
            (
                "name: g\nname: h\nstart: a\nnodes: {}\n",
                "duplicate field `name`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    operation: x\n    operation: y\n",
                "node `a`: field `operation` is given twice",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { to: a, to: b }\n",
                "node `a`: edge `e`: field `to` is given twice",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { to: a, retry: { max: 1, max: 2 } }\n",
                "node `a`: edge `e`: retry: field `max` is given twice",
            ),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        let cases = [
            (
                "name: g\nstart: a\nnodes: {}\ncolour: red\n",
                "unknown field `colour`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    operaton: x\n",
                "node `a`: unknown field `operaton`; expected one of `operation`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { target: b }\n",
                "node `a`: edge `e`: unknown field `target`; expected one of `to`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { to: a, retry: { max: 1, jitter: 2 } }\n",
                "node `a`: edge `e`: retry: unknown field `jitter`",
            ),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn shape_errors_say_where_and_what() {
        let cases = [
            (
                "name: g\nstart: a\nnodes:\n  a:\n    timeout: -5s\n",
                "node `a`: `timeout`: invalid duration `-5s`: durations cannot be negative",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { to: a, retry: { max: 1, delay: 1.5s } }\n",
                "node `a`: edge `e`: retry: `delay`: invalid duration `1.5s`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    timeout: 5\n",
                "node `a`: `timeout`: invalid duration `5`: `5` has no unit",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    timeout: [5s]\n",
                "expected a duration",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { retry: { max: 1 } }\n",
                "node `a`: edge `e`: missing field `to`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: { to: a, retry: {} }\n",
                "node `a`: edge `e`: retry: missing field `max`",
            ),
            (
                "name: g\nstart: a\nnodes:\n  a:\n    on:\n      e: [a]\n",
                "a target node name",
            ),
            ("name: g\nstart: a\nnodes:\n  a: {\n", "line"),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let text = "name: g\nstart: a\nnodes:\n  a:\n    operation: x\n    params:\n      \
                    l0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n      \
                    l1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n      \
                    l2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n      \
                    l3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n      \
                    l4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n      \
                    l5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n      \
                    l6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n      \
                    l7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n      \
                    l8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n";
        let started = Instant::now();
        let message = error_of(text);
        assert!(
            started.elapsed().as_secs() < 2,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            message.contains("too many values") || message.contains("repetition limit"),
            "{message}"
        );
    }

    #[test]
    fn one_large_anchor_repeated_is_rejected() {
        let big: Vec<String> = (0..20_000).map(|i| format!("v{i}")).collect();
        let mut text = format!(
            "name: g\nstart: a\nnodes:\n  a:\n    params:\n      big: &big [{}]\n",
            big.join(",")
        );
        for i in 0..2_000 {
            text.push_str(&format!("      k{i}: *big\n"));
        }
        let started = Instant::now();
        let message = error_of(&text);
        assert!(
            started.elapsed().as_secs() < 2,
            "took {:?}",
            started.elapsed()
        );
        assert!(message.contains("too many values"), "{message}");
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let text = format!(
            "name: g\nstart: a\nnodes:\n  a:\n    params:\n      deep: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let message = error_of(&text);
        assert!(message.contains("nests deeper than 64 levels"), "{message}");
    }

    #[test]
    fn oversized_file_is_rejected_before_parsing() {
        let text = format!("name: g\n# {}\n", "x".repeat(10 * 1024 * 1024));
        let started = Instant::now();
        let message = error_of(&text);
        assert!(
            started.elapsed().as_millis() < 100,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            message.contains("the limit is 1048576 bytes (1 MiB)"),
            "{message}"
        );
    }

    #[test]
    fn json_schema_lists_exactly_the_fields_the_parser_accepts() {
        let text = include_str!("../../docs/graph.schema.json");
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let sorted = |fields: &[&str]| -> Vec<String> {
            let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            fields.sort();
            fields
        };
        let graph_fields = [
            "name",
            "description",
            "start",
            "max_steps",
            "deadline",
            "on_deadline",
            "nodes",
        ];
        assert_eq!(keys(&schema["properties"]), sorted(&graph_fields));
        assert_eq!(
            keys(&schema["$defs"]["node"]["properties"]),
            sorted(&NODE_FIELDS)
        );
        assert_eq!(
            keys(&schema["$defs"]["edge"]["oneOf"][2]["properties"]),
            sorted(&EDGE_FIELDS)
        );
        assert_eq!(
            keys(&schema["$defs"]["retry"]["properties"]),
            sorted(&RETRY_FIELDS)
        );
    }

    #[test]
    fn empty_and_multi_document_input_is_rejected() {
        assert!(
            error_of("").contains("missing field") || error_of("").contains("EOF"),
            "{}",
            error_of("")
        );
        let two = "name: g\nstart: a\nnodes: {}\n---\nname: h\nstart: a\nnodes: {}\n";
        assert!(
            error_of(two).contains("more than one document"),
            "{}",
            error_of(two)
        );
    }

    #[test]
    fn empty_on_and_null_params_read_as_empty() {
        let text = "name: g\nstart: a\nnodes:\n  a:\n    operation: x\n    params: ~\n    on: ~\n";
        let def = parse_yaml(text).unwrap();
        assert!(def.nodes.0[0].edges.is_empty());
        assert!(def.nodes.0[0].params.is_empty());
    }
}
