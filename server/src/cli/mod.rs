//! The `rondo` command line: `serve`, `migrate` and the operator commands. Operator commands
//! are thin gRPC clients of a running server; `graph validate`, `graph simulate` and
//! `graph show FILE` work offline on definition files. Rule: commands write only to the
//! writers they are given, so tests can run them in-process and read what they printed.

pub mod graph;
pub mod inbox;
pub mod output;
pub mod schedule;
pub mod serve;
pub mod workflow;

use std::error::Error as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::config::ServeConfig;
pub use output::OutputFormat;
use output::Printer;

/// Server address used when neither `--server` nor `RONDO_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7233";

/// How long to wait for the TCP/HTTP2 connection to the server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `rondo`: run the Rondo server, or operate one.
#[derive(Debug, Parser)]
#[command(
    name = "rondo",
    version,
    about = "Rondo workflow engine: server and operator CLI"
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log filter: `--log`/`RONDO_LOG`, else `RUST_LOG`, else `info` for the server-side
    /// commands and `warn` for operator commands, whose output is the point.
    pub fn log_directives(&self) -> &str {
        let fallback = match self.command {
            Command::Serve(_) | Command::Migrate(_) | Command::DevDb(_) => "info",
            Command::Graph(_) | Command::Workflow(_) | Command::Inbox(_) | Command::Schedule(_) => {
                "warn"
            }
        };
        let global = &self.global;
        global
            .log_filter
            .as_deref()
            .or(global.rust_log.as_deref())
            .unwrap_or(fallback)
    }
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Address of the Rondo gRPC API.
    #[arg(long, global = true, env = "RONDO_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Output format of results.
    #[arg(long, short = 'o', global = true, env = "RONDO_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Who you are, recorded in history by operator actions (move, retry, inbox complete,
    /// cancel). Defaults to your login name.
    #[arg(long, global = true, env = "RONDO_OPERATOR")]
    pub operator: Option<String>,
    /// Login name, the fallback identity when no `--operator` is given. A hidden flag so that
    /// clap, the only reader of the environment, picks it up from `USER`.
    #[arg(long, global = true, env = "USER", hide = true)]
    pub login_user: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "RONDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` env-filter syntax (`info`, `rondo_server=debug`). Unset:
    /// `RUST_LOG`, else `info` for `serve` and `migrate`, `warn` for operator commands.
    #[arg(long = "log", global = true, env = "RONDO_LOG")]
    pub log_filter: Option<String>,
    /// The conventional `RUST_LOG` filter, the fallback for `--log`; hidden, like
    /// `login_user`, so that only clap reads the environment.
    #[arg(long, global = true, env = "RUST_LOG", hide = true)]
    pub rust_log: Option<String>,
}

impl GlobalArgs {
    /// The operator identity for actions recorded in history: `--operator`/`RONDO_OPERATOR`,
    /// else the login name. Operator actions refuse to run anonymously.
    pub fn operator(&self) -> Result<String, CliError> {
        [&self.operator, &self.login_user]
            .into_iter()
            .flatten()
            .map(|name| name.trim())
            .find(|name| !name.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                CliError::Usage(
                    "operator identity unknown: pass --operator NAME or set RONDO_OPERATOR"
                        .to_owned(),
                )
            })
    }
}

/// Format of the logs the binary writes on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The commands of `rondo`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: gRPC API, HTTP metrics/health port, engine loops.
    Serve(ServeConfig),
    /// Apply pending database migrations and exit.
    Migrate(serve::MigrateArgs),
    /// Start (or stop) a private PostgreSQL cluster for development; prints its URL.
    #[command(hide = true)]
    DevDb(serve::DevDbArgs),
    /// Validate, store, show and simulate graph definitions.
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    /// Start, inspect and act on workflows.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Work the operator inbox: tasks of human nodes.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    /// Manage schedules that start workflows from cron expressions or intervals.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
}

/// Why a command failed. Printed once, by [`run`], as `error: ...` on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or input the user can fix; exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached at all.
    #[error("cannot connect to the rondo server at {server}")]
    Connect {
        /// The address tried.
        server: String,
        /// What the transport said.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error status. Not a `#[source]`: the status is the whole
    /// message, and tonic's own Display would repeat it.
    #[error("{}", status_text(.0))]
    Rpc(tonic::Status),
    /// An input file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write output")]
    Write(#[from] io::Error),
    /// A local operation (serving, migrating, the dev cluster) failed; the message says which.
    #[error("{0}")]
    Failed(String),
    /// The command already explained the failure on stderr and only sets the exit code.
    #[error("exit code {0}")]
    Reported(i32),
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Rpc(status)
    }
}

impl CliError {
    /// The process exit code: 2 for usage and bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Rpc(status) if status.code() == Code::InvalidArgument => 2,
            CliError::Reported(code) => *code,
            CliError::Connect { .. }
            | CliError::Rpc(_)
            | CliError::Read { .. }
            | CliError::Write(_)
            | CliError::Failed(_) => 1,
        }
    }
}

/// `<message> (NOT_FOUND)`, falling back on the code's description for an empty message.
fn status_text(status: &tonic::Status) -> String {
    let message = if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    };
    format!("{message} ({})", code_name(status.code()))
}

/// The canonical gRPC name of a status code, as in the protobuf documentation.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Runs one parsed command line, writing results to `out` and notes and errors to `err`, and
/// returns the process exit code. Tests call this directly to capture what a user would see.
pub async fn run(cli: Cli, out: &mut impl Write, err: &mut impl Write) -> i32 {
    let server = cli.global.server.clone();
    let mut printer = Printer {
        format: cli.global.output,
        out,
        err,
    };
    let result = match cli.command {
        Command::Serve(config) => serve::serve(config).await,
        Command::Migrate(args) => serve::migrate(args, &mut printer).await,
        Command::DevDb(args) => serve::dev_db(args, &mut printer).await,
        Command::Graph(cmd) => graph::run(cmd, &cli.global, &mut printer).await,
        Command::Workflow(cmd) => workflow::run(cmd, &cli.global, &mut printer).await,
        Command::Inbox(cmd) => inbox::run(cmd, &cli.global, &mut printer).await,
        Command::Schedule(cmd) => schedule::run(cmd, &cli.global, &mut printer).await,
    };
    match result {
        Ok(()) => 0,
        Err(error) => report(&error, &server, printer.err),
    }
}

/// Prints `error: ...` with its causes (and a hint when the server seems down) and returns the
/// exit code.
fn report(error: &CliError, server: &str, err: &mut dyn Write) -> i32 {
    if let CliError::Reported(code) = error {
        return *code;
    }
    let mut text = format!("error: {error}");
    let mut last = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        // Transport errors often wrap an error with the same text; say it once.
        let cause_text = cause.to_string();
        if cause_text != last {
            text.push_str(&format!(": {cause_text}"));
        }
        last = cause_text;
        source = cause.source();
    }
    let unreachable = match error {
        CliError::Connect { .. } => true,
        CliError::Rpc(status) => status.code() == Code::Unavailable,
        _ => false,
    };
    if unreachable {
        text.push_str(&format!(
            "\nhint: is a rondo server running at {server}? check --server or RONDO_SERVER"
        ));
    }
    // Nothing sensible is left to do when stderr itself cannot be written.
    let _ = writeln!(err, "{text}");
    error.exit_code()
}

/// Opens a connection to the server, failing fast with the address when it is unreachable.
pub async fn connect(server: &str) -> Result<Channel, CliError> {
    let invalid = |why: String| {
        CliError::Usage(format!(
            "invalid server address `{server}` (from --server or RONDO_SERVER): {why}"
        ))
    };
    if !server.contains("://") {
        return Err(invalid(format!("expected a URL like {DEFAULT_SERVER}")));
    }
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            server: server.to_owned(),
            source,
        })
}

/// Value parser of JSON-object flags (`--input`, `--data`): checks the text is a JSON object
/// and returns it compacted.
pub fn json_object(text: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(_) => Err("expected a JSON object like '{\"key\": \"value\"}'".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Unwraps a message field every successful response carries; its absence is a server bug.
pub fn present<T>(field: Option<T>, what: &str) -> Result<T, CliError> {
    field.ok_or_else(|| CliError::Failed(format!("the server's response has no {what}")))
}

/// Converts a CLI duration to a protobuf one (saturating: CLI durations are far below the limit).
pub fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_subcommand() {
        let cli = parse(&[
            "rondo",
            "workflow",
            "get",
            "w1",
            "--server",
            "http://h:1",
            "-o",
            "json",
        ]);
        assert_eq!(cli.global.server, "http://h:1");
        assert_eq!(cli.global.output, OutputFormat::Json);
    }

    #[test]
    fn operator_falls_back_to_login_name_and_is_required() {
        let mut global = parse(&["rondo", "--operator", "ana", "graph", "list"]).global;
        global.login_user = Some("root".into());
        assert_eq!(global.operator().unwrap(), "ana");
        global.operator = None;
        assert_eq!(global.operator().unwrap(), "root");
        global.login_user = Some("  ".into());
        let err = global.operator().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--operator"), "{err}");
    }

    #[test]
    fn log_filter_defaults_depend_on_the_command() {
        let mut cli = parse(&["rondo", "graph", "list"]);
        cli.global.rust_log = None;
        assert_eq!(cli.log_directives(), "warn");
        cli.global.rust_log = Some("debug".into());
        assert_eq!(cli.log_directives(), "debug");
        let mut cli = parse(&[
            "rondo",
            "--log",
            "rondo_server=trace",
            "migrate",
            "--database-url",
            "postgres://x",
        ]);
        assert_eq!(cli.log_directives(), "rondo_server=trace");
        cli.global.log_filter = None;
        cli.global.rust_log = None;
        assert_eq!(cli.log_directives(), "info");
    }

    #[test]
    fn json_flags_must_be_objects() {
        assert_eq!(json_object(r#"{ "a": 1 }"#).unwrap(), r#"{"a":1}"#);
        assert!(json_object("[1]").unwrap_err().contains("JSON object"));
        assert!(json_object("{").unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn rpc_errors_print_message_and_code() {
        let mut err = Vec::new();
        let code = report(
            &CliError::Rpc(tonic::Status::not_found("workflow `w1` not found")),
            "http://x",
            &mut err,
        );
        assert_eq!(code, 1);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "error: workflow `w1` not found (NOT_FOUND)\n"
        );

        let mut err = Vec::new();
        let code = report(
            &CliError::Rpc(tonic::Status::invalid_argument("bad input")),
            "http://x",
            &mut err,
        );
        assert_eq!(code, 2);

        let mut err = Vec::new();
        report(
            &CliError::Rpc(tonic::Status::unavailable("")),
            "http://x:1",
            &mut err,
        );
        let text = String::from_utf8(err).unwrap();
        assert!(
            text.contains("(UNAVAILABLE)") && text.contains("http://x:1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn server_address_needs_a_scheme() {
        let err = connect("localhost:7233").await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("expected a URL like http://"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreachable_server_names_the_address() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let cli = parse(&["rondo", "--server", "http://127.0.0.1:1", "graph", "list"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(cli, &mut out, &mut err).await;
        let text = String::from_utf8(err).unwrap();
        assert_eq!(code, 1);
        assert!(
            text.starts_with("error: cannot connect to the rondo server at http://127.0.0.1:1"),
            "{text}"
        );
        assert!(text.contains("RONDO_SERVER"), "{text}");
    }
}
