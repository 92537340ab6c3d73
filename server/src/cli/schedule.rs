//! `rondo schedule`: create, list, pause, resume and delete schedules that start workflows
//! from a cron expression or a fixed interval.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use rondo_gen::v1;
use rondo_gen::v1::schedule_service_client::ScheduleServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::output::{self, Printer, Table};
use super::{CliError, GlobalArgs, connect, json_object, present, proto_duration};
use crate::config::parse_duration;

/// Subcommands of `rondo schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule.
    Create(CreateArgs),
    /// List schedules with their next and last runs.
    List,
    /// Pause a schedule: no runs start until it is resumed.
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Resume a paused schedule from its next tick; ticks missed while paused are skipped.
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Delete a schedule; workflows it started are untouched.
    Delete {
        /// Schedule id.
        id: String,
    },
}

/// Flags of `rondo schedule create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Unique id of the schedule.
    pub id: String,
    /// Graph to start.
    #[arg(long)]
    pub graph: String,
    /// Graph version; the latest at each tick when absent.
    #[arg(long)]
    pub version: Option<u32>,
    /// When it fires.
    #[command(flatten)]
    pub cadence: Cadence,
    /// IANA time zone of the cron expression (`Europe/Paris`); UTC when absent.
    #[arg(long, conflicts_with = "every")]
    pub tz: Option<String>,
    /// Input of every workflow started, a JSON object.
    #[arg(long, value_parser = json_object)]
    pub input: Option<String>,
    /// What a tick does while the previous workflow still runs.
    #[arg(long, value_enum, default_value_t = Overlap::Skip)]
    pub overlap: Overlap,
    /// Create the schedule paused.
    #[arg(long)]
    pub paused: bool,
}

/// When a schedule fires: exactly one of a cron expression and a fixed interval.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Cadence {
    /// Cron expression, 5 or 6 fields (`0 9 * * MON-FRI`).
    #[arg(long)]
    pub cron: Option<String>,
    /// Fixed interval between ticks (`15m`).
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
}

/// Overlap policy accepted by `--overlap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Overlap {
    /// Skip the tick.
    Skip,
    /// Start another workflow anyway.
    Allow,
}

impl From<Overlap> for v1::OverlapPolicy {
    fn from(o: Overlap) -> Self {
        match o {
            Overlap::Skip => v1::OverlapPolicy::Skip,
            Overlap::Allow => v1::OverlapPolicy::Allow,
        }
    }
}

/// Runs one `rondo schedule` subcommand.
pub async fn run(
    cmd: ScheduleCommand,
    global: &GlobalArgs,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut client = ScheduleServiceClient::new(connect(&global.server).await?);
    match cmd {
        ScheduleCommand::Create(args) => {
            let request = v1::CreateScheduleRequest {
                schedule: Some(schedule_from_args(args)),
            };
            let response = client.create_schedule(request).await?.into_inner();
            print_schedule(p, &present(response.schedule, "schedule")?, "created")
        }
        ScheduleCommand::List => list(&mut client, p).await,
        ScheduleCommand::Pause { id } => {
            let response = client
                .pause_schedule(v1::PauseScheduleRequest { id })
                .await?
                .into_inner();
            print_schedule(p, &present(response.schedule, "schedule")?, "paused")
        }
        ScheduleCommand::Resume { id } => {
            let response = client
                .resume_schedule(v1::ResumeScheduleRequest { id })
                .await?
                .into_inner();
            print_schedule(p, &present(response.schedule, "schedule")?, "resumed")
        }
        ScheduleCommand::Delete { id } => {
            client
                .delete_schedule(v1::DeleteScheduleRequest { id: id.clone() })
                .await?;
            if p.is_json() {
                p.json(&json!({ "deleted": id }))?;
            } else {
                writeln!(p.out, "schedule {id}: deleted")?;
            }
            Ok(())
        }
    }
}

/// The schedule `rondo schedule create` asks for.
fn schedule_from_args(args: CreateArgs) -> v1::Schedule {
    v1::Schedule {
        id: args.id,
        graph: args.graph,
        graph_version: args.version.unwrap_or(0),
        input: args.input.unwrap_or_default(),
        cron: args.cadence.cron.unwrap_or_default(),
        time_zone: args.tz.unwrap_or_default(),
        interval: args.cadence.every.map(proto_duration),
        overlap: v1::OverlapPolicy::from(args.overlap) as i32,
        paused: args.paused,
        ..Default::default()
    }
}

/// `0 9 * * MON-FRI (Europe/Paris)` or `every 15m`.
fn cadence_text(s: &v1::Schedule) -> String {
    if s.cron.is_empty() {
        return format!("every {}", output::proto_duration_text(s.interval.as_ref()));
    }
    let zone = if s.time_zone.is_empty() {
        "UTC"
    } else {
        &s.time_zone
    };
    format!("{} ({zone})", s.cron)
}

/// `order` for the latest version, `order@3` for a pinned one.
fn graph_text(s: &v1::Schedule) -> String {
    if s.graph_version == 0 {
        s.graph.clone()
    } else {
        output::graph_ref(&s.graph, s.graph_version)
    }
}

/// A schedule as a JSON object.
fn schedule_json(s: &v1::Schedule) -> Value {
    json!({
        "id": s.id,
        "graph": s.graph,
        "graph_version": if s.graph_version == 0 { Value::Null } else { json!(s.graph_version) },
        "input": output::payload(&s.input),
        "cron": output::opt(&s.cron),
        "time_zone": output::opt(&s.time_zone),
        "interval": s.interval.as_ref().map_or(Value::Null, |d| json!(output::proto_duration_text(Some(d)))),
        "overlap": output::overlap_policy(s.overlap),
        "paused": s.paused,
        "next_fire_at": output::time_json(s.next_fire_at.as_ref()),
        "last_fired_at": output::time_json(s.last_fired_at.as_ref()),
        "last_workflow_id": output::opt(&s.last_workflow_id),
        "created_at": output::time_json(s.created_at.as_ref()),
    })
}

/// Prints a schedule after an action: `schedule nightly: created; every 1d, next run 2030-...`.
fn print_schedule(p: &mut Printer<'_>, s: &v1::Schedule, what: &str) -> Result<(), CliError> {
    if p.is_json() {
        p.json(&schedule_json(s))?;
    } else if s.paused {
        writeln!(
            p.out,
            "schedule {}: {what}; {}, paused",
            s.id,
            cadence_text(s)
        )?;
    } else {
        let next = output::time_text(s.next_fire_at.as_ref());
        writeln!(
            p.out,
            "schedule {}: {what}; {}, next run {next}",
            s.id,
            cadence_text(s)
        )?;
    }
    Ok(())
}

/// Lists every schedule, following page tokens to the end.
async fn list(
    client: &mut ScheduleServiceClient<Channel>,
    p: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut schedules = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_schedules(v1::ListSchedulesRequest {
                page_size: 0,
                page_token,
            })
            .await?
            .into_inner();
        schedules.extend(page.schedules);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if p.is_json() {
        let docs: Vec<Value> = schedules.iter().map(schedule_json).collect();
        p.json(&json!({ "schedules": docs }))?;
    } else if schedules.is_empty() {
        writeln!(
            p.err,
            "no schedules: create one with `rondo schedule create`"
        )?;
    } else {
        let mut table = Table::new(&[
            "ID",
            "GRAPH",
            "WHEN",
            "OVERLAP",
            "STATE",
            "NEXT RUN",
            "LAST RUN",
            "LAST WORKFLOW",
        ]);
        for s in &schedules {
            table.row(vec![
                s.id.clone(),
                graph_text(s),
                cadence_text(s),
                output::overlap_policy(s.overlap),
                if s.paused { "paused" } else { "active" }.to_owned(),
                if s.paused {
                    "-".to_owned()
                } else {
                    output::time_text(s.next_fire_at.as_ref())
                },
                output::time_text(s.last_fired_at.as_ref()),
                output::or_dash(&s.last_workflow_id).to_owned(),
            ]);
        }
        table.write(p.out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn create(args: &[&str]) -> Result<v1::Schedule, clap::Error> {
        let cli = Cli::try_parse_from(["rondo", "schedule", "create"].iter().chain(args))?;
        let Command::Schedule(ScheduleCommand::Create(args)) = cli.command else {
            panic!("create")
        };
        Ok(schedule_from_args(args))
    }

    #[test]
    fn create_takes_a_cron_expression_with_zone() {
        let s = create(&[
            "nightly",
            "--graph",
            "report",
            "--cron",
            "0 2 * * *",
            "--tz",
            "Europe/Paris",
            "--overlap",
            "allow",
        ])
        .unwrap();
        assert_eq!(
            (s.id.as_str(), s.graph.as_str(), s.cron.as_str()),
            ("nightly", "report", "0 2 * * *")
        );
        assert_eq!(s.time_zone, "Europe/Paris");
        assert_eq!(s.overlap, v1::OverlapPolicy::Allow as i32);
        assert_eq!(cadence_text(&s), "0 2 * * * (Europe/Paris)");
    }

    #[test]
    fn create_takes_an_interval() {
        let s = create(&[
            "poll",
            "--graph",
            "sync",
            "--every",
            "15m",
            "--input",
            r#"{"a":1}"#,
            "--paused",
        ])
        .unwrap();
        assert_eq!(
            s.interval,
            Some(prost_types::Duration {
                seconds: 900,
                nanos: 0
            })
        );
        assert_eq!(s.overlap, v1::OverlapPolicy::Skip as i32);
        assert!(s.paused);
        assert_eq!(cadence_text(&s), "every 15m");
        assert_eq!(graph_text(&s), "sync");
    }

    #[test]
    fn create_needs_exactly_one_cadence() {
        assert!(create(&["x", "--graph", "g"]).is_err(), "no cadence");
        assert!(
            create(&["x", "--graph", "g", "--cron", "* * * * *", "--every", "1m"]).is_err(),
            "both"
        );
        assert!(
            create(&["x", "--graph", "g", "--every", "1m", "--tz", "UTC"]).is_err(),
            "tz without cron"
        );
        assert!(
            create(&["x", "--graph", "g", "--every", "soon"]).is_err(),
            "bad duration"
        );
    }
}
