//! `rondo graph`: validate, apply, list, get, show and simulate graph definitions.
//! `validate`, `simulate` and `show FILE` run offline with the engine's own parser and
//! validator, so a file that passes here passes on the server too.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use rondo_engine::{GraphDef, Validated};
use rondo_gen::convert::{graph_from_proto, graph_to_proto};
use rondo_gen::v1;
use rondo_gen::v1::graph_service_client::GraphServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::output::{self, Printer, Table};
use super::{CliError, GlobalArgs, connect, present};

/// Hex digits of a graph hash shown in text output; enough to tell versions apart.
const SHORT_HASH: usize = 12;

/// Subcommands of `rondo graph`.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Check graph files offline (no server): every error, then warnings.
    Validate {
        /// Definition files (`.yaml`, `.yml` or `.json`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate graph files, then store them on the server (a changed graph gets a new version).
    Apply {
        /// Definition files (`.yaml`, `.yml` or `.json`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List graphs stored on the server with their latest version.
    List,
    /// Print a stored graph definition as YAML.
    Get {
        /// Graph name.
        name: String,
        /// Version; the latest when absent.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Render a graph as Graphviz DOT or Mermaid: an existing file is read locally, anything
    /// else is a graph name fetched from the server.
    Show {
        /// Definition file or graph name.
        graph: String,
        /// Version of a stored graph; the latest when absent.
        #[arg(long)]
        version: Option<u32>,
        /// Diagram language.
        #[arg(long, value_enum, default_value_t = RenderFormat::Dot)]
        format: RenderFormat,
    },
    /// Walk a graph file offline, answering each job with the next of the given labels.
    Simulate {
        /// Definition file.
        file: PathBuf,
        /// Labels in the order the jobs answer (`reserved,timeout,charged`).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
    },
}

/// Diagram language of `rondo graph show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// Mermaid flowchart (renders in GitHub markdown).
    Mermaid,
}

/// Runs one `rondo graph` subcommand.
pub async fn run(
    cmd: GraphCommand,
    global: &GlobalArgs,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    match cmd {
        GraphCommand::Validate { files } => validate(&files, p),
        GraphCommand::Apply { files } => apply(&files, &global.server, p).await,
        GraphCommand::List => list(&global.server, p).await,
        GraphCommand::Get { name, version } => get(&name, version, &global.server, p).await,
        GraphCommand::Show {
            graph,
            version,
            format,
        } => show(&graph, version, format, &global.server, p).await,
        GraphCommand::Simulate { file, labels } => simulate(&file, &labels, p),
    }
}

/// Reads and parses a definition file; the extension picks the format.
fn read_def(path: &Path) -> Result<GraphDef, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str::<GraphDef>(&text).map_err(|e| e.to_string()),
        Some("yaml" | "yml") => rondo_engine::parse_yaml(&text).map_err(|e| e.to_string()),
        _ => Err("unsupported file type: use .yaml, .yml or .json".to_owned()),
    }
}

/// Reads, parses and validates a definition file; every error comes back, not just the first.
fn check(path: &Path) -> Result<Validated, Vec<String>> {
    let def = read_def(path).map_err(|e| vec![e])?;
    def.validate()
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

/// `abcdef012345…`
fn short_hash(hash: &str) -> String {
    match hash.get(..SHORT_HASH) {
        Some(prefix) if hash.len() > SHORT_HASH => format!("{prefix}…"),
        _ => hash.to_owned(),
    }
}

/// Checks every file; reports all errors of all files, then fails when any file had one.
fn validate(files: &[PathBuf], p: &mut Printer<'_>) -> Result<(), CliError> {
    let mut failed = false;
    let mut docs = Vec::new();
    for path in files {
        let file = path.display().to_string();
        match check(path) {
            Ok(valid) => {
                let warnings: Vec<String> =
                    valid.warnings.iter().map(ToString::to_string).collect();
                if p.is_json() {
                    docs.push(json!({
                        "file": file, "ok": true, "graph": valid.graph.name(), "hash": valid.graph.hash(),
                        "errors": [], "warnings": warnings,
                    }));
                } else {
                    writeln!(
                        p.out,
                        "{file}: ok (graph {}, hash {})",
                        valid.graph.name(),
                        short_hash(valid.graph.hash())
                    )?;
                    for warning in &warnings {
                        writeln!(p.err, "{file}: warning: {warning}")?;
                    }
                }
            }
            Err(errors) => {
                failed = true;
                if p.is_json() {
                    docs.push(
                        json!({ "file": file, "ok": false, "errors": errors, "warnings": [] }),
                    );
                } else {
                    for error in &errors {
                        writeln!(p.err, "{file}: error: {error}")?;
                    }
                }
            }
        }
    }
    if p.is_json() {
        p.json(&json!({ "files": docs }))?;
    }
    if failed {
        Err(CliError::Reported(1))
    } else {
        Ok(())
    }
}

/// Validates every file first and stores none unless all are valid, then puts them in order.
async fn apply(files: &[PathBuf], server: &str, p: &mut Printer<'_>) -> Result<(), CliError> {
    let mut valid = Vec::new();
    let mut failed = false;
    for path in files {
        match check(path) {
            Ok(v) => valid.push((path, v)),
            Err(errors) => {
                failed = true;
                for error in &errors {
                    writeln!(p.err, "{}: error: {error}", path.display())?;
                }
            }
        }
    }
    if failed {
        return Err(CliError::Reported(1));
    }
    let mut client = GraphServiceClient::new(connect(server).await?);
    let mut docs = Vec::new();
    for (path, v) in valid {
        let request = v1::PutGraphRequest {
            graph: Some(graph_to_proto(v.graph.def())),
        };
        let response = client.put_graph(request).await?.into_inner();
        let stored = present(response.graph, "graph")?;
        let name = v.graph.name();
        if p.is_json() {
            docs.push(json!({
                "file": path.display().to_string(),
                "name": name,
                "version": stored.version,
                "hash": stored.hash,
                "created": response.created,
                "created_at": output::time_json(stored.created_at.as_ref()),
                "warnings": response.warnings.iter().map(output::problem_json).collect::<Vec<_>>(),
            }));
        } else {
            let note = if response.created { "new" } else { "unchanged" };
            writeln!(p.out, "{name}: version {} ({note})", stored.version)?;
            for warning in &response.warnings {
                writeln!(p.err, "{name}: warning: {}", output::problem_text(warning))?;
            }
        }
    }
    if p.is_json() {
        p.json(&json!({ "graphs": docs }))?;
    }
    Ok(())
}

/// Lists every graph, following page tokens to the end.
async fn list(server: &str, p: &mut Printer<'_>) -> Result<(), CliError> {
    let mut client = GraphServiceClient::new(connect(server).await?);
    let mut graphs = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = v1::ListGraphsRequest {
            page_size: 0,
            page_token,
        };
        let page = client.list_graphs(request).await?.into_inner();
        graphs.extend(page.graphs);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if p.is_json() {
        let docs: Vec<Value> = graphs
            .iter()
            .map(|g| {
                json!({
                    "name": g.name,
                    "latest_version": g.latest_version,
                    "latest_hash": g.latest_hash,
                    "updated_at": output::time_json(g.updated_at.as_ref()),
                })
            })
            .collect();
        p.json(&json!({ "graphs": docs }))?;
    } else if graphs.is_empty() {
        writeln!(
            p.err,
            "no graphs stored yet: add one with `rondo graph apply FILE`"
        )?;
    } else {
        let mut table = Table::new(&["NAME", "VERSION", "HASH", "UPDATED"]);
        for g in &graphs {
            table.row(vec![
                g.name.clone(),
                g.latest_version.to_string(),
                short_hash(&g.latest_hash),
                output::time_text(g.updated_at.as_ref()),
            ]);
        }
        table.write(p.out)?;
    }
    Ok(())
}

/// Fetches one stored version (the latest for `None`) and its definition in the engine's model.
async fn fetch(
    client: &mut GraphServiceClient<Channel>,
    name: &str,
    version: Option<u32>,
) -> Result<(v1::GraphVersion, GraphDef), CliError> {
    let request = v1::GetGraphRequest {
        name: name.to_owned(),
        version: version.unwrap_or(0),
    };
    let stored = present(client.get_graph(request).await?.into_inner().graph, "graph")?;
    let proto = present(stored.graph.as_ref(), "graph definition")?;
    let def = graph_from_proto(proto).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        CliError::Failed(format!(
            "the server sent graph `{name}` in a form this CLI cannot read: {}",
            problems.join("; ")
        ))
    })?;
    Ok((stored, def))
}

/// Prints a stored definition as YAML (which `rondo graph apply` reads back) or JSON.
async fn get(
    name: &str,
    version: Option<u32>,
    server: &str,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut client = GraphServiceClient::new(connect(server).await?);
    let (stored, def) = fetch(&mut client, name, version).await?;
    if p.is_json() {
        let definition = serde_json::to_value(&def)
            .map_err(|e| CliError::Failed(format!("cannot convert graph `{name}` to JSON: {e}")))?;
        p.json(&json!({
            "name": def.name,
            "version": stored.version,
            "hash": stored.hash,
            "created_at": output::time_json(stored.created_at.as_ref()),
            "definition": definition,
        }))?;
    } else {
        writeln!(
            p.out,
            "# {} version {}, hash {}, stored {}",
            def.name,
            stored.version,
            short_hash(&stored.hash),
            output::time_text(stored.created_at.as_ref())
        )?;
        write!(p.out, "{}", rondo_engine::yaml::to_yaml(&def))?;
    }
    Ok(())
}

/// Renders a local file or a stored graph.
async fn show(
    graph: &str,
    version: Option<u32>,
    format: RenderFormat,
    server: &str,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let path = Path::new(graph);
    let def = if path.exists() {
        if version.is_some() {
            return Err(CliError::Usage(format!(
                "--version applies to stored graphs, but `{graph}` is a local file"
            )));
        }
        read_def(path).map_err(|e| CliError::Usage(format!("{graph}: {e}")))?
    } else {
        let mut client = GraphServiceClient::new(connect(server).await?);
        fetch(&mut client, graph, version).await?.1
    };
    let (name, text) = match format {
        RenderFormat::Dot => ("dot", rondo_engine::render::dot(&def)),
        RenderFormat::Mermaid => ("mermaid", rondo_engine::render::mermaid(&def)),
    };
    if p.is_json() {
        p.json(&json!({ "graph": def.name, "format": name, "text": text }))?;
    } else {
        write!(p.out, "{text}")?;
        if !text.ends_with('\n') {
            writeln!(p.out)?;
        }
    }
    Ok(())
}

/// Simulates a walk through a valid graph file.
fn simulate(file: &Path, labels: &[String], p: &mut Printer<'_>) -> Result<(), CliError> {
    let valid = match check(file) {
        Ok(valid) => valid,
        Err(errors) => {
            for error in &errors {
                writeln!(p.err, "{}: error: {error}", file.display())?;
            }
            return Err(CliError::Reported(1));
        }
    };
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let walk = rondo_engine::simulate::simulate(&valid.graph, &labels);
    if p.is_json() {
        p.json(
            &json!({ "graph": valid.graph.name(), "labels": labels, "text": walk.to_string() }),
        )?;
    } else {
        writeln!(p.out, "{walk}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, OutputFormat};

    /// A valid graph with one warning-free operation node and a terminal label.
    const GRAPH: &str = "name: hello\nstart: greet\nnodes:\n  greet:\n    operation: hello.greet\n    timeout: 10s\n    on:\n      greeted: ~\n      error: { to: greet, retry: { max: 2 }, exhausted: ask }\n  ask:\n    human: true\n    on:\n      retry: greet\n      give_up: ~\n";

    fn run_offline(
        cmd: GraphCommand,
        format: OutputFormat,
    ) -> (Result<(), CliError>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut p = Printer {
            format,
            out: &mut out,
            err: &mut err,
        };
        let result = match cmd {
            GraphCommand::Validate { files } => validate(&files, &mut p),
            GraphCommand::Simulate { file, labels } => simulate(&file, &labels, &mut p),
            other => panic!("not an offline command: {other:?}"),
        };
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn graph_commands_parse() {
        let cli = Cli::try_parse_from([
            "rondo",
            "graph",
            "show",
            "order",
            "--version",
            "3",
            "--format",
            "mermaid",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Graph(GraphCommand::Show {
                version: Some(3),
                format: RenderFormat::Mermaid,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "rondo",
            "graph",
            "simulate",
            "g.yaml",
            "--labels",
            "a,timeout,b",
        ])
        .unwrap();
        let Command::Graph(GraphCommand::Simulate { labels, .. }) = cli.command else {
            panic!("simulate")
        };
        assert_eq!(labels, ["a", "timeout", "b"]);
        assert!(
            Cli::try_parse_from(["rondo", "graph", "validate"]).is_err(),
            "validate needs a file"
        );
    }

    #[test]
    fn short_hash_keeps_twelve_digits() {
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab…");
        assert_eq!(short_hash("abc"), "abc");
    }

    #[test]
    fn validate_accepts_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.yaml");
        std::fs::write(&path, GRAPH).unwrap();
        let (result, out, _) = run_offline(
            GraphCommand::Validate {
                files: vec![path.clone()],
            },
            OutputFormat::Text,
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(
            out.starts_with(&format!("{}: ok (graph hello, hash ", path.display())),
            "{out}"
        );
    }

    #[test]
    fn validate_reports_every_error_of_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "name: bad\nstart: nowhere\nnodes:\n  a:\n    on: { done: missing }\n",
        )
        .unwrap();
        let odd = dir.path().join("graph.txt");
        std::fs::write(&odd, GRAPH).unwrap();
        let files = vec![bad.clone(), odd.clone(), dir.path().join("absent.yaml")];
        let (result, out, err) = run_offline(GraphCommand::Validate { files }, OutputFormat::Text);
        assert_eq!(result.unwrap_err().exit_code(), 1);
        assert!(out.is_empty(), "{out}");
        let bad_errors = err
            .lines()
            .filter(|l| l.starts_with(&format!("{}: error: ", bad.display())))
            .count();
        assert!(
            bad_errors >= 2,
            "expected several errors for bad.yaml:\n{err}"
        );
        assert!(
            err.contains(&format!("{}: error: unsupported file type", odd.display())),
            "{err}"
        );
        assert!(err.contains("absent.yaml: error: cannot read"), "{err}");
    }

    #[test]
    fn validate_prints_one_json_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.json");
        let def = rondo_engine::parse_yaml(GRAPH).unwrap();
        std::fs::write(&path, serde_json::to_string(&def).unwrap()).unwrap();
        let (result, out, _) = run_offline(
            GraphCommand::Validate { files: vec![path] },
            OutputFormat::Json,
        );
        assert!(result.is_ok(), "{result:?}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["files"][0]["ok"], json!(true));
        assert_eq!(doc["files"][0]["graph"], json!("hello"));
    }

    #[test]
    fn simulate_walks_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.yml");
        std::fs::write(&path, GRAPH).unwrap();
        let labels = vec!["error".to_owned(), "greeted".to_owned()];
        let (result, out, _) = run_offline(
            GraphCommand::Simulate { file: path, labels },
            OutputFormat::Text,
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(out.contains("greet"), "{out}");
    }
}
