//! Rondo's pure core: the graph model and its validation, rendering, and the rules that
//! advance a workflow. Rule: no IO, no clock, no async, no transport types. Time and
//! randomness come in as arguments, so everything here is unit-testable in microseconds and
//! the same code serves the server, the SDK's graph builder and offline `rondo graph` commands.

pub mod advance;
pub mod duration;
pub mod model;
pub mod render;
pub mod simulate;
pub mod template;
pub mod validate;
pub mod yaml;

pub use advance::{EngineError, Entry, Incident, IncidentReason, Next, Position, Step, Streak};
pub use model::{EdgeDef, Graph, GraphDef, NodeDef, Nodes, Retry};
pub use validate::{Problem, Validated};
pub use yaml::{ParseError, parse_yaml};
