//! `rondo workflow`: start, inspect, wait for, cancel, move and retry workflows.
//! Operator actions (move, retry) always carry the state the operator saw, so two operators
//! acting at once cannot both win.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Subcommand, ValueEnum};
use rondo_gen::v1;
use rondo_gen::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::json;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::output::{self, Printer, Table};
use super::{CliError, GlobalArgs, connect, json_object, present, proto_duration};
use crate::config::parse_duration;

/// Subcommands of `rondo workflow`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Start a workflow of a graph and print its id; with --wait, wait until it ends and exit
    /// as `rondo workflow wait` does.
    Start(StartArgs),
    /// Show one workflow: status, node, vars, incident and current job.
    Get {
        /// Workflow id.
        id: String,
    },
    /// List workflows, newest first.
    List(ListArgs),
    /// Show a workflow's history, one line per event.
    History {
        /// Workflow id.
        id: String,
    },
    /// Cancel a pending, running or stuck workflow and its job in hand.
    Cancel {
        /// Workflow id.
        id: String,
        /// Why; recorded in history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Wait until a workflow ends. Exit code 0: completed; 1: ended otherwise (cancelled,
    /// stuck); 2: still running when the timeout ran out.
    Wait {
        /// Workflow id.
        id: String,
        /// How long to wait at most.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Move a running or stuck workflow to any node (operator escalation; needs --operator).
    Move {
        /// Workflow id.
        id: String,
        /// Node to enter.
        #[arg(long)]
        to: String,
        /// Why; recorded in history.
        #[arg(long)]
        reason: String,
        /// The state you saw.
        #[command(flatten)]
        expect: ExpectArgs,
    },
    /// Run the current node again with a fresh retry budget (resolves a stuck workflow in
    /// place; needs --operator).
    Retry {
        /// Workflow id.
        id: String,
        /// Why; recorded in history.
        #[arg(long)]
        reason: String,
        /// The state you saw.
        #[command(flatten)]
        expect: ExpectArgs,
    },
}

/// Flags of `rondo workflow start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Graph name.
    pub graph: String,
    /// Input, a JSON object; it becomes the workflow's initial vars.
    #[arg(long, value_parser = json_object)]
    pub input: Option<String>,
    /// At most one workflow exists per key: repeating the same start returns the existing one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Graph version; the latest when absent.
    #[arg(long)]
    pub version: Option<u32>,
    /// Start later: an RFC 3339 time (`2030-01-31T09:00:00Z`) or `+DURATION` (`+10m`).
    #[arg(long, value_parser = parse_start_at)]
    pub start_at: Option<StartAt>,
    /// Wait up to this long for the workflow to end, in the same call as the start, and exit
    /// as `rondo workflow wait` does (0: completed; 1: ended otherwise; 2: still running).
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

/// Flags of `rondo workflow list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only workflows in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Only workflows of this graph.
    #[arg(long)]
    pub graph: Option<String>,
    /// Only workflows at this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after a previous page.
    #[arg(long)]
    pub page_token: Option<String>,
}

/// Guard of an operator action: the state the operator saw. Without it the CLI reads the
/// workflow first and sends what it read.
#[derive(Debug, Clone, Args)]
pub struct ExpectArgs {
    /// Node you saw the workflow at; the action fails (ABORTED) if it has moved on.
    #[arg(long, requires = "expect_step")]
    pub expect_node: Option<String>,
    /// Step count you saw.
    #[arg(long, requires = "expect_node")]
    pub expect_step: Option<u32>,
}

/// Workflow status accepted by `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Waiting for its start time.
    Pending,
    /// Walking its graph.
    Running,
    /// Needs an operator.
    Stuck,
    /// Took a terminal label.
    Completed,
    /// Cancelled.
    Cancelled,
}

impl From<StatusFilter> for v1::WorkflowStatus {
    fn from(s: StatusFilter) -> Self {
        match s {
            StatusFilter::Pending => v1::WorkflowStatus::Pending,
            StatusFilter::Running => v1::WorkflowStatus::Running,
            StatusFilter::Stuck => v1::WorkflowStatus::Stuck,
            StatusFilter::Completed => v1::WorkflowStatus::Completed,
            StatusFilter::Cancelled => v1::WorkflowStatus::Cancelled,
        }
    }
}

/// When a workflow should start, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At this time.
    At(DateTime<Utc>),
    /// This long from now (`+10m`).
    After(Duration),
}

impl StartAt {
    /// The start time, counting a relative one from `now`; `None` when it overflows.
    pub fn resolve(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            StartAt::At(at) => Some(at),
            StartAt::After(d) => now.checked_add_signed(TimeDelta::from_std(d).ok()?),
        }
    }
}

/// Parses `--start-at`: an RFC 3339 time or `+DURATION`.
pub fn parse_start_at(s: &str) -> Result<StartAt, String> {
    if let Some(rest) = s.strip_prefix('+') {
        return parse_duration(rest).map(StartAt::After);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|at| StartAt::At(at.with_timezone(&Utc)))
        .map_err(|e| {
            format!(
                "{e}: expected an RFC 3339 time like 2030-01-31T09:00:00Z, or +DURATION like +10m"
            )
        })
}

/// Runs one `rondo workflow` subcommand.
pub async fn run(
    cmd: WorkflowCommand,
    global: &GlobalArgs,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let server = &global.server;
    match cmd {
        WorkflowCommand::Start(args) => {
            let request = start_request(&args, Utc::now())?;
            start(&mut client(server).await?, request, args.wait, p).await
        }
        WorkflowCommand::Get { id } => get(&mut client(server).await?, id, p).await,
        WorkflowCommand::List(args) => list(&mut client(server).await?, args, p).await,
        WorkflowCommand::History { id } => history(&mut client(server).await?, id, p).await,
        WorkflowCommand::Cancel { id, reason } => {
            // Cancelling needs no identity; when one is known it goes into history.
            let operator = global.operator().unwrap_or_default();
            let request = v1::CancelWorkflowRequest {
                id,
                reason: reason.unwrap_or_default(),
                operator,
            };
            let response = client(server)
                .await?
                .cancel_workflow(request)
                .await?
                .into_inner();
            print_action(p, &present(response.workflow, "workflow")?, "cancelled")
        }
        WorkflowCommand::Wait { id, timeout } => {
            let deadline = Instant::now() + timeout;
            let (wf, done) = wait(&mut client(server).await?, id, deadline).await?;
            report_end(p, &wf, done, timeout)
        }
        WorkflowCommand::Move {
            id,
            to,
            reason,
            expect,
        } => {
            let operator = global.operator()?;
            let mut client = client(server).await?;
            let expected = Some(expected_state(&mut client, &id, expect).await?);
            let request = v1::MoveWorkflowRequest {
                id,
                to: to.clone(),
                reason,
                operator,
                expected,
            };
            let wf = present(
                client.move_workflow(request).await?.into_inner().workflow,
                "workflow",
            )?;
            print_action(p, &wf, &format!("moved to {to}"))
        }
        WorkflowCommand::Retry { id, reason, expect } => {
            let operator = global.operator()?;
            let mut client = client(server).await?;
            let expected = Some(expected_state(&mut client, &id, expect).await?);
            let request = v1::RetryWorkflowRequest {
                id,
                reason,
                operator,
                expected,
            };
            let wf = present(
                client.retry_workflow(request).await?.into_inner().workflow,
                "workflow",
            )?;
            print_action(p, &wf, "retried")
        }
    }
}

/// Connects a WorkflowService client.
async fn client(server: &str) -> Result<WorkflowServiceClient<Channel>, CliError> {
    Ok(WorkflowServiceClient::new(connect(server).await?))
}

/// Builds the StartWorkflow request, resolving a relative start time against `now`.
fn start_request(
    args: &StartArgs,
    now: DateTime<Utc>,
) -> Result<v1::StartWorkflowRequest, CliError> {
    let start_at = args
        .start_at
        .map(|s| {
            s.resolve(now)
                .ok_or_else(|| CliError::Usage("--start-at: the time is out of range".to_owned()))
        })
        .transpose()?;
    Ok(v1::StartWorkflowRequest {
        graph: args.graph.clone(),
        version: args.version.unwrap_or(0),
        input: args.input.clone().unwrap_or_default(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        start_at: start_at.map(output::timestamp),
        wait: args.wait.map(proto_duration),
    })
}

/// Starts a workflow and prints its id (text) or the workflow (JSON); with `timeout`, waits
/// for it to end (in the start call, then with AwaitWorkflow while the server's cap on one
/// wait is shorter) and reports as [`WorkflowCommand::Wait`] does.
async fn start(
    client: &mut WorkflowServiceClient<Channel>,
    request: v1::StartWorkflowRequest,
    timeout: Option<Duration>,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let waiting = timeout.map(|t| (t, Instant::now() + t));
    let response = client.start_workflow(request).await?.into_inner();
    let wf = present(response.workflow, "workflow")?;
    if response.existing {
        writeln!(
            p.err,
            "note: the idempotency key matched workflow {} (existing); nothing new was started",
            wf.id
        )?;
    }
    if let Some((timeout, deadline)) = waiting {
        let (wf, done) = match response.done || Instant::now() >= deadline {
            true => (wf, response.done),
            false => wait(client, wf.id, deadline).await?,
        };
        return report_end(p, &wf, done, timeout);
    }
    if p.is_json() {
        p.json(&output::workflow_json(&wf))?;
    } else {
        writeln!(p.out, "{}", wf.id)?;
    }
    Ok(())
}

/// Shows one workflow.
async fn get(
    client: &mut WorkflowServiceClient<Channel>,
    id: String,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let wf = present(
        client
            .get_workflow(v1::GetWorkflowRequest { id })
            .await?
            .into_inner()
            .workflow,
        "workflow",
    )?;
    if p.is_json() {
        p.json(&output::workflow_json(&wf))?;
    } else {
        output::write_workflow(p.out, &wf)?;
    }
    Ok(())
}

/// Lists one page of workflows and says how to get the next.
async fn list(
    client: &mut WorkflowServiceClient<Channel>,
    args: ListArgs,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let request = v1::ListWorkflowsRequest {
        graph: args.graph.unwrap_or_default(),
        status: args
            .status
            .map_or(v1::WorkflowStatus::Unspecified, Into::into) as i32,
        current_node: args.node.unwrap_or_default(),
        page_size: args.limit,
        page_token: args.page_token.unwrap_or_default(),
    };
    let page = client.list_workflows(request).await?.into_inner();
    if p.is_json() {
        let workflows: Vec<_> = page.workflows.iter().map(output::workflow_json).collect();
        p.json(&json!({ "workflows": workflows, "next_page_token": output::opt(&page.next_page_token) }))?;
        return Ok(());
    }
    if page.workflows.is_empty() {
        writeln!(p.err, "no workflows match")?;
    } else {
        let mut table = Table::new(&["ID", "GRAPH", "STATUS", "NODE", "STEPS", "UPDATED"]);
        for wf in &page.workflows {
            table.row(vec![
                wf.id.clone(),
                output::graph_ref(&wf.graph, wf.graph_version),
                output::workflow_status(wf.status),
                output::or_dash(&wf.current_node).to_owned(),
                wf.step_count.to_string(),
                output::time_text(wf.updated_at.as_ref()),
            ]);
        }
        table.write(p.out)?;
    }
    if !page.next_page_token.is_empty() {
        writeln!(
            p.err,
            "more: add --page-token {} for the next page",
            page.next_page_token
        )?;
    }
    Ok(())
}

/// Prints a workflow's whole history.
async fn history(
    client: &mut WorkflowServiceClient<Channel>,
    id: String,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let request = v1::GetHistoryRequest {
        id,
        after_seq: 0,
        limit: 0,
    };
    let events = client.get_history(request).await?.into_inner().events;
    if p.is_json() {
        let events: Vec<_> = events.iter().map(output::event_json).collect();
        p.json(&json!({ "events": events }))?;
    } else {
        output::history_table(&events).write(p.out)?;
    }
    Ok(())
}

/// Long-polls until the workflow ends or `deadline` passes; returns it then, and whether it
/// ended.
async fn wait(
    client: &mut WorkflowServiceClient<Channel>,
    id: String,
    deadline: Instant,
) -> Result<(v1::Workflow, bool), CliError> {
    Ok(loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = v1::AwaitWorkflowRequest {
            id: id.clone(),
            wait: Some(proto_duration(remaining)),
        };
        let response = client.await_workflow(request).await?.into_inner();
        let wf = present(response.workflow, "workflow")?;
        if response.done || Instant::now() >= deadline {
            break (wf, response.done);
        }
    })
}

/// Prints how a wait of `timeout` ended, and turns it into the exit code documented on
/// [`WorkflowCommand::Wait`].
fn report_end(
    p: &mut Printer<'_>,
    wf: &v1::Workflow,
    done: bool,
    timeout: Duration,
) -> Result<(), CliError> {
    if p.is_json() {
        p.json(&output::workflow_json(wf))?;
    } else {
        writeln!(p.out, "{}: {}", wf.id, output::workflow_state(wf))?;
    }
    let completed = wf.status == v1::WorkflowStatus::Completed as i32;
    match (done, completed) {
        (true, true) => Ok(()),
        (true, false) => Err(CliError::Reported(1)),
        (false, _) => {
            let waited = rondo_engine::duration::format(timeout);
            writeln!(
                p.err,
                "error: workflow {} has not ended after {waited}",
                wf.id
            )?;
            Err(CliError::Reported(2))
        }
    }
}

/// The guard to send with an operator action: the flags when given, else what the server
/// shows now (so a concurrent action between this read and ours makes ours fail).
async fn expected_state(
    client: &mut WorkflowServiceClient<Channel>,
    id: &str,
    expect: ExpectArgs,
) -> Result<v1::ExpectedState, CliError> {
    if let (Some(node), Some(step_count)) = (expect.expect_node, expect.expect_step) {
        return Ok(v1::ExpectedState { node, step_count });
    }
    let request = v1::GetWorkflowRequest { id: id.to_owned() };
    let wf = present(
        client.get_workflow(request).await?.into_inner().workflow,
        "workflow",
    )?;
    Ok(v1::ExpectedState {
        node: wf.current_node,
        step_count: wf.step_count,
    })
}

/// Prints the outcome of an action on a workflow: `ID: moved to charge; now running at ...`.
fn print_action(p: &mut Printer<'_>, wf: &v1::Workflow, what: &str) -> Result<(), CliError> {
    if p.is_json() {
        p.json(&output::workflow_json(wf))?;
    } else {
        writeln!(
            p.out,
            "{}: {what}; now {}",
            wf.id,
            output::workflow_state(wf)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> WorkflowCommand {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Workflow(cmd) = cli.command else {
            panic!("not a workflow command: {args:?}")
        };
        cmd
    }

    #[test]
    fn start_at_accepts_rfc3339_and_relative_durations() {
        let now = DateTime::parse_from_rfc3339("2030-01-31T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = parse_start_at("2030-01-31T10:00:00+01:00").unwrap();
        assert_eq!(at.resolve(now), Some(now));
        let later = parse_start_at("+1h30m").unwrap();
        assert_eq!(later, StartAt::After(Duration::from_secs(5400)));
        assert_eq!(later.resolve(now), Some(now + TimeDelta::minutes(90)));
        assert!(parse_start_at("tomorrow").unwrap_err().contains("RFC 3339"));
        assert!(parse_start_at("+soon").is_err());
    }

    #[test]
    fn start_request_resolves_start_time_and_input_must_be_an_object() {
        let now = Utc::now();
        let WorkflowCommand::Start(args) = parse(&[
            "rondo",
            "workflow",
            "start",
            "order",
            "--input",
            r#"{"id": 1}"#,
            "--start-at",
            "+10m",
        ]) else {
            panic!("start")
        };
        let request = start_request(&args, now).unwrap();
        assert_eq!(request.input, r#"{"id":1}"#);
        assert_eq!(
            output::datetime(request.start_at.as_ref()),
            Some(now + TimeDelta::minutes(10))
        );

        let err = Cli::try_parse_from(["rondo", "workflow", "start", "order", "--input", "[]"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("JSON object"), "{err}");
    }

    #[test]
    fn list_filters_parse() {
        let WorkflowCommand::List(args) = parse(&[
            "rondo", "workflow", "list", "--status", "stuck", "--limit", "5",
        ]) else {
            panic!("list")
        };
        assert_eq!(args.status, Some(StatusFilter::Stuck));
        assert_eq!(
            v1::WorkflowStatus::from(StatusFilter::Stuck),
            v1::WorkflowStatus::Stuck
        );
        assert_eq!(args.limit, 5);
        assert!(Cli::try_parse_from(["rondo", "workflow", "list", "--status", "done"]).is_err());
        assert!(Cli::try_parse_from(["rondo", "workflow", "list", "--limit", "0"]).is_err());
    }

    #[test]
    fn expect_flags_come_in_pairs() {
        let WorkflowCommand::Move { expect, to, .. } = parse(&[
            "rondo",
            "workflow",
            "move",
            "w1",
            "--to",
            "charge",
            "--reason",
            "bank is back",
            "--expect-node",
            "escalate",
            "--expect-step",
            "7",
        ]) else {
            panic!("move")
        };
        assert_eq!(to, "charge");
        assert_eq!(
            (expect.expect_node.as_deref(), expect.expect_step),
            (Some("escalate"), Some(7))
        );
        let half = [
            "rondo",
            "workflow",
            "retry",
            "w1",
            "--reason",
            "r",
            "--expect-node",
            "a",
        ];
        assert!(Cli::try_parse_from(half).is_err());
        assert!(
            Cli::try_parse_from(["rondo", "workflow", "move", "w1", "--to", "a"]).is_err(),
            "reason is required"
        );
    }

    #[test]
    fn wait_timeout_parses_durations() {
        let WorkflowCommand::Wait { timeout, .. } =
            parse(&["rondo", "workflow", "wait", "w1", "--timeout", "2m"])
        else {
            panic!("wait")
        };
        assert_eq!(timeout, Duration::from_secs(120));
    }

    #[tokio::test]
    async fn operator_actions_need_an_identity_before_connecting() {
        let mut cli = Cli::try_parse_from([
            "rondo",
            "--server",
            "http://127.0.0.1:1",
            "workflow",
            "retry",
            "w1",
            "--reason",
            "r",
        ])
        .unwrap();
        cli.global.operator = None;
        cli.global.login_user = None;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::cli::run(cli, &mut out, &mut err).await;
        assert_eq!(code, 2);
        assert!(
            String::from_utf8(err)
                .unwrap()
                .contains("operator identity unknown")
        );
    }
}
