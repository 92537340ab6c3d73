//! `rondo inbox`: the operator's side of human nodes. List open tasks, read one with its
//! workflow's history, and complete it with one of its labels under the operator's name.

use clap::Subcommand;
use rondo_gen::v1;
use rondo_gen::v1::inbox_service_client::InboxServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::output::{self, Printer, Table};
use super::{CliError, GlobalArgs, connect, json_object, present};

/// Subcommands of `rondo inbox`.
#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// List open tasks, oldest first.
    List {
        /// Only tasks of this graph.
        #[arg(long)]
        graph: Option<String>,
        /// Only tasks at this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one task: prompt, labels, vars and the workflow's history.
    Show {
        /// Job id of the task.
        job: i64,
    },
    /// Complete a task with one of its labels (needs --operator).
    Complete {
        /// Job id of the task.
        job: i64,
        /// The label to answer with.
        #[arg(long)]
        label: String,
        /// Why; recorded in history.
        #[arg(long)]
        comment: Option<String>,
        /// Output merged into the workflow's vars, a JSON object.
        #[arg(long, value_parser = json_object)]
        data: Option<String>,
    },
}

/// Runs one `rondo inbox` subcommand.
pub async fn run(
    cmd: InboxCommand,
    global: &GlobalArgs,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    match cmd {
        InboxCommand::List { graph, node } => {
            let mut client = client(&global.server).await?;
            list(
                &mut client,
                graph.unwrap_or_default(),
                node.unwrap_or_default(),
                p,
            )
            .await
        }
        InboxCommand::Show { job } => show(&mut client(&global.server).await?, job, p).await,
        InboxCommand::Complete {
            job,
            label,
            comment,
            data,
        } => {
            let request = v1::CompleteTaskRequest {
                job_id: job,
                label: label.clone(),
                comment: comment.unwrap_or_default(),
                output: data.unwrap_or_default(),
                operator: global.operator()?,
            };
            let response = client(&global.server)
                .await?
                .complete_task(request)
                .await?
                .into_inner();
            let wf = present(response.workflow, "workflow")?;
            if p.is_json() {
                p.json(&output::workflow_json(&wf))?;
            } else {
                writeln!(
                    p.out,
                    "task {job}: answered {label}; workflow {} now {}",
                    wf.id,
                    output::workflow_state(&wf)
                )?;
            }
            Ok(())
        }
    }
}

/// Connects an InboxService client.
async fn client(server: &str) -> Result<InboxServiceClient<Channel>, CliError> {
    Ok(InboxServiceClient::new(connect(server).await?))
}

/// A task as a JSON object.
fn task_json(task: &v1::Task) -> Value {
    json!({
        "job_id": task.job_id,
        "workflow_id": task.workflow_id,
        "graph": task.graph,
        "graph_version": task.graph_version,
        "node": task.node,
        "prompt": task.prompt,
        "labels": task.labels,
        "vars": output::payload(&task.vars),
        "attempt": task.attempt,
        "from_node": output::opt(&task.from_node),
        "waiting_since": output::time_json(task.waiting_since.as_ref()),
        "due_at": output::time_json(task.due_at.as_ref()),
    })
}

/// Lists every open task, following page tokens to the end.
async fn list(
    client: &mut InboxServiceClient<Channel>,
    graph: String,
    node: String,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = v1::ListTasksRequest {
            graph: graph.clone(),
            node: node.clone(),
            page_size: 0,
            page_token,
        };
        let page = client.list_tasks(request).await?.into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if p.is_json() {
        let tasks: Vec<Value> = tasks.iter().map(task_json).collect();
        p.json(&json!({ "tasks": tasks }))?;
    } else if tasks.is_empty() {
        writeln!(p.err, "the inbox is empty")?;
    } else {
        let mut table = Table::new(&[
            "JOB",
            "WORKFLOW",
            "NODE",
            "LABELS",
            "WAITING SINCE",
            "DUE",
            "PROMPT",
        ]);
        for task in &tasks {
            table.row(vec![
                task.job_id.to_string(),
                task.workflow_id.clone(),
                task.node.clone(),
                task.labels.join(","),
                output::time_text(task.waiting_since.as_ref()),
                output::time_text(task.due_at.as_ref()),
                task.prompt.clone(),
            ]);
        }
        table.write(p.out)?;
    }
    Ok(())
}

/// Shows one task with its workflow's history.
async fn show(
    client: &mut InboxServiceClient<Channel>,
    job: i64,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let response = client
        .get_task(v1::GetTaskRequest { job_id: job })
        .await?
        .into_inner();
    let task = present(response.task, "task")?;
    if p.is_json() {
        let history: Vec<Value> = response.history.iter().map(output::event_json).collect();
        p.json(&json!({ "task": task_json(&task), "history": history }))?;
        return Ok(());
    }
    let fields = [
        ("job", task.job_id.to_string()),
        ("workflow", task.workflow_id.clone()),
        ("graph", output::graph_ref(&task.graph, task.graph_version)),
        ("node", task.node.clone()),
        ("from", output::or_dash(&task.from_node).to_owned()),
        ("attempt", task.attempt.to_string()),
        (
            "waiting since",
            output::time_text(task.waiting_since.as_ref()),
        ),
        ("due", output::time_text(task.due_at.as_ref())),
        ("labels", task.labels.join(", ")),
    ];
    for (key, value) in fields {
        writeln!(p.out, "{:<14} {value}", format!("{key}:"))?;
    }
    writeln!(p.out, "prompt:")?;
    for line in task.prompt.lines() {
        writeln!(p.out, "  {line}")?;
    }
    writeln!(p.out, "vars:")?;
    for line in output::payload_text(&task.vars).lines() {
        writeln!(p.out, "  {line}")?;
    }
    writeln!(p.out, "history:")?;
    output::history_table(&response.history).write(p.out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn complete_takes_label_comment_and_data() {
        let cli = Cli::try_parse_from([
            "rondo",
            "inbox",
            "complete",
            "42",
            "--label",
            "retry",
            "--comment",
            "bank is back",
            "--data",
            r#"{"ok": true}"#,
        ])
        .unwrap();
        let Command::Inbox(InboxCommand::Complete {
            job,
            label,
            comment,
            data,
        }) = cli.command
        else {
            panic!("complete")
        };
        assert_eq!(
            (job, label.as_str(), comment.as_deref()),
            (42, "retry", Some("bank is back"))
        );
        assert_eq!(data.as_deref(), Some(r#"{"ok":true}"#));
        assert!(
            Cli::try_parse_from(["rondo", "inbox", "complete", "42"]).is_err(),
            "label is required"
        );
        assert!(
            Cli::try_parse_from(["rondo", "inbox", "complete", "x", "--label", "a"]).is_err(),
            "job is a number"
        );
    }

    #[tokio::test]
    async fn complete_refuses_to_run_anonymously() {
        let mut cli = Cli::try_parse_from([
            "rondo",
            "--server",
            "http://127.0.0.1:1",
            "inbox",
            "complete",
            "1",
            "--label",
            "a",
        ])
        .unwrap();
        cli.global.operator = None;
        cli.global.login_user = None;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(crate::cli::run(cli, &mut out, &mut err).await, 2);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with("error: operator identity unknown: pass --operator NAME"),
            "{err}"
        );
    }

    #[test]
    fn task_json_parses_vars() {
        let task = v1::Task {
            job_id: 7,
            vars: r#"{"order_id":"o-1"}"#.into(),
            labels: vec!["retry".into()],
            ..Default::default()
        };
        let doc = task_json(&task);
        assert_eq!(doc["vars"]["order_id"], json!("o-1"));
        assert_eq!(doc["labels"], json!(["retry"]));
        assert_eq!(doc["due_at"], Value::Null);
    }
}
