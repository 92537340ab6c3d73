//! Schedules end to end: each tick fires exactly once with two servers on one database, pause
//! stops firing and resume continues from now, the SKIP overlap policy, cron schedules, and
//! the errors a client gets for a bad schedule.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rondo_gen::v1;
use rondo_server::testing::{TestDb, TestServer};
use tonic::Code;

use crate::support::{Clients, clients, eventually, history, put_yaml};

/// A graph whose workflows stay RUNNING: nobody polls its operation.
const IDLE: &str = "
name: idle
start: wait
nodes:
  wait:
    operation: test.idle
    timeout: 5m
    on: { done: ~, error: ~ }
";

/// A server sweeping every 50 ms, so ticks fire promptly.
async fn fast_server(db_url: &str) -> TestServer {
    TestServer::start_with(db_url, |cfg| cfg.sweep_interval = Duration::from_millis(50)).await
}

fn every(id: &str, interval: Duration, overlap: v1::OverlapPolicy) -> v1::Schedule {
    v1::Schedule {
        id: id.into(),
        graph: "idle".into(),
        input: r#"{"from": "schedule"}"#.into(),
        interval: Some(interval.try_into().unwrap()),
        overlap: overlap.into(),
        ..Default::default()
    }
}

async fn create(c: &mut Clients, schedule: v1::Schedule) -> Result<v1::Schedule, tonic::Status> {
    let req = v1::CreateScheduleRequest {
        schedule: Some(schedule),
    };
    c.schedules
        .create_schedule(req)
        .await
        .map(|r| r.into_inner().schedule.unwrap())
}

async fn get(c: &mut Clients, id: &str) -> Result<v1::Schedule, tonic::Status> {
    let req = v1::GetScheduleRequest { id: id.into() };
    c.schedules
        .get_schedule(req)
        .await
        .map(|r| r.into_inner().schedule.unwrap())
}

async fn pause(c: &mut Clients, id: &str) -> v1::Schedule {
    let req = v1::PauseScheduleRequest { id: id.into() };
    c.schedules
        .pause_schedule(req)
        .await
        .expect("pause")
        .into_inner()
        .schedule
        .unwrap()
}

async fn resume(c: &mut Clients, id: &str) -> v1::Schedule {
    let req = v1::ResumeScheduleRequest { id: id.into() };
    c.schedules
        .resume_schedule(req)
        .await
        .expect("resume")
        .into_inner()
        .schedule
        .unwrap()
}

async fn delete(c: &mut Clients, id: &str) -> Result<(), tonic::Status> {
    let req = v1::DeleteScheduleRequest { id: id.into() };
    c.schedules.delete_schedule(req).await.map(|_| ())
}

/// The workflows a schedule started, oldest first.
async fn started_by(c: &mut Clients, id: &str) -> Vec<v1::Workflow> {
    let req = v1::ListWorkflowsRequest {
        graph: "idle".into(),
        page_size: 1000,
        ..Default::default()
    };
    let mut workflows = c
        .workflows
        .list_workflows(req)
        .await
        .expect("list")
        .into_inner()
        .workflows;
    workflows.retain(|w| w.schedule_id == id);
    workflows.reverse();
    workflows
}

fn time(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp set");
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap()).unwrap()
}

/// The tick a workflow was started for, read from its idempotency key.
fn tick_of(schedule_id: &str, w: &v1::Workflow) -> DateTime<Utc> {
    let prefix = format!("schedule:{schedule_id}:");
    let tick = w
        .idempotency_key
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("key of {w:?}"));
    DateTime::parse_from_rfc3339(tick)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn with_two_servers_each_interval_tick_fires_exactly_once() {
    let db = TestDb::new().await;
    let a = fast_server(&db.url).await;
    let b = fast_server(&db.url).await;
    let mut ca = clients(&a).await;
    let mut cb = clients(&b).await;
    put_yaml(&mut ca, IDLE).await;

    let created = create(
        &mut ca,
        every("pulse", Duration::from_secs(1), v1::OverlapPolicy::Allow),
    )
    .await
    .unwrap();
    let anchor = time(created.created_at.as_ref());
    assert_eq!(
        time(created.next_fire_at.as_ref()),
        anchor + TimeDelta::seconds(1),
        "first tick is one interval in"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let paused = pause(&mut cb, "pulse").await;

    let workflows = started_by(&mut ca, "pulse").await;
    assert!(
        (3..=4).contains(&workflows.len()),
        "3 or 4 ticks in 3.5 s, got {}",
        workflows.len()
    );
    let ticks: Vec<_> = workflows.iter().map(|w| tick_of("pulse", w)).collect();
    let expected: Vec<_> = (1..=workflows.len())
        .map(|k| anchor + TimeDelta::seconds(k as i64))
        .collect();
    assert_eq!(
        ticks, expected,
        "one workflow per tick, none twice, none missed"
    );
    let last = workflows.last().unwrap();
    assert_eq!(paused.last_workflow_id, last.id);
    assert_eq!(time(paused.last_fired_at.as_ref()), *ticks.last().unwrap());
    assert_eq!(last.input, r#"{"from":"schedule"}"#);
    assert_eq!(last.status(), v1::WorkflowStatus::Running);

    let started = history(&mut ca, &workflows[0].id).await;
    assert_eq!(started[0].kind(), v1::EventKind::WorkflowStarted);
    assert_eq!(started[0].actor, "schedule:pulse");
}

#[tokio::test]
async fn pause_stops_firing_resume_continues_from_now_and_delete_removes() {
    let db = TestDb::new().await;
    let server = fast_server(&db.url).await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, IDLE).await;
    create(
        &mut c,
        every("beat", Duration::from_secs(1), v1::OverlapPolicy::Allow),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { (!started_by(&mut c, "beat").await.is_empty()).then_some(()) }
    })
    .await;

    let paused = pause(&mut c, "beat").await;
    assert!(paused.paused);
    assert_eq!(
        pause(&mut c, "beat").await,
        paused,
        "pausing again changes nothing"
    );
    let before = started_by(&mut c, "beat").await.len();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        started_by(&mut c, "beat").await.len(),
        before,
        "nothing fires while paused"
    );
    assert!(get(&mut c, "beat").await.unwrap().paused);

    let resumed = resume(&mut c, "beat").await;
    assert!(!resumed.paused);
    let next = time(resumed.next_fire_at.as_ref());
    let last = time(paused.last_fired_at.as_ref());
    assert!(
        next - last >= TimeDelta::seconds(3),
        "ticks missed while paused are skipped: {last} -> {next}"
    );
    let workflows = eventually(Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { Some(started_by(&mut c, "beat").await).filter(|w| w.len() > before) }
    })
    .await;
    assert_eq!(
        tick_of("beat", &workflows[before]),
        next,
        "the first tick after resuming fires, not a missed one"
    );

    delete(&mut c, "beat").await.unwrap();
    let left = started_by(&mut c, "beat").await.len();
    assert_eq!(
        get(&mut c, "beat").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        delete(&mut c, "beat").await.unwrap_err().code(),
        Code::NotFound
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        started_by(&mut c, "beat").await.len(),
        left,
        "a deleted schedule fires no more; its workflows stay"
    );
}

#[tokio::test]
async fn skip_overlap_starts_nothing_while_the_previous_workflow_runs() {
    let db = TestDb::new().await;
    let server = fast_server(&db.url).await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, IDLE).await;
    create(
        &mut c,
        every(
            "lonely",
            Duration::from_secs(1),
            v1::OverlapPolicy::Unspecified,
        ),
    )
    .await
    .unwrap();
    let first = eventually(Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { started_by(&mut c, "lonely").await.pop() }
    })
    .await;
    // Wait until two more ticks have come and gone (under load a sweep may run late).
    let past = tick_of("lonely", &first) + TimeDelta::seconds(2);
    let s = eventually(Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let s = get(&mut c, "lonely").await.ok()?;
            (time(s.next_fire_at.as_ref()) > past).then_some(s)
        }
    })
    .await;
    assert_eq!(
        started_by(&mut c, "lonely").await.len(),
        1,
        "ticks are skipped while the first runs"
    );
    assert_eq!(
        s.overlap(),
        v1::OverlapPolicy::Skip,
        "unspecified means SKIP"
    );
    assert_eq!(s.last_workflow_id, first.id);

    let cancel = v1::CancelWorkflowRequest {
        id: first.id.clone(),
        reason: "make room".into(),
        ..Default::default()
    };
    c.workflows.cancel_workflow(cancel).await.unwrap();
    eventually(Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { (started_by(&mut c, "lonely").await.len() == 2).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_cron_schedule_fires_on_the_ticks_of_its_expression() {
    let db = TestDb::new().await;
    let server = fast_server(&db.url).await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, IDLE).await;
    let schedule = v1::Schedule {
        id: "every-2s".into(),
        graph: "idle".into(),
        cron: "*/2 * * * * *".into(),
        time_zone: "Asia/Kolkata".into(),
        overlap: v1::OverlapPolicy::Allow.into(),
        ..Default::default()
    };
    let created = create(&mut c, schedule).await.unwrap();
    assert_eq!(created.time_zone, "Asia/Kolkata");
    assert_eq!(
        time(created.next_fire_at.as_ref()).timestamp() % 2,
        0,
        "on an even second"
    );
    let first = eventually(Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { started_by(&mut c, "every-2s").await.pop() }
    })
    .await;
    let tick = tick_of("every-2s", &first);
    assert_eq!(
        (tick.timestamp() % 2, tick.timestamp_subsec_nanos()),
        (0, 0)
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_and_the_fix() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, IDLE).await;
    let cron = |id: &str, expr: &str| v1::Schedule {
        id: id.into(),
        graph: "idle".into(),
        cron: expr.into(),
        ..Default::default()
    };

    let bad_cron = create(&mut c, cron("bad", "0 25 * * *")).await.unwrap_err();
    assert_eq!(bad_cron.code(), Code::InvalidArgument);
    assert!(
        bad_cron
            .message()
            .starts_with("`cron` `0 25 * * *` is not a valid cron expression"),
        "{bad_cron:?}"
    );

    let both = v1::Schedule {
        interval: Some(Duration::from_secs(60).try_into().unwrap()),
        ..cron("both", "0 9 * * *")
    };
    let both = create(&mut c, both).await.unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    assert!(
        both.message()
            .contains("exactly one of `cron` and `interval`"),
        "{both:?}"
    );

    let zone = v1::Schedule {
        time_zone: "Europe/Atlantis".into(),
        ..cron("zone", "0 9 * * *")
    };
    let zone = create(&mut c, zone).await.unwrap_err();
    assert!(
        zone.message().contains("`time_zone` `Europe/Atlantis`"),
        "{zone:?}"
    );

    let fast = create(
        &mut c,
        every("fast", Duration::from_millis(500), v1::OverlapPolicy::Skip),
    )
    .await
    .unwrap_err();
    assert!(fast.message().contains("`interval`"), "{fast:?}");

    let id = create(&mut c, cron("no spaces", "0 9 * * *"))
        .await
        .unwrap_err();
    assert_eq!(id.code(), Code::InvalidArgument);
    assert!(id.message().contains("`id`"), "{id:?}");

    let input = v1::Schedule {
        input: "[1]".into(),
        ..cron("input", "0 9 * * *")
    };
    let input = create(&mut c, input).await.unwrap_err();
    assert!(
        input.message().contains("`input` must be a JSON object"),
        "{input:?}"
    );

    let missing = create(
        &mut c,
        v1::Schedule {
            graph: "nope".into(),
            ..cron("missing", "0 9 * * *")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("graph `nope`"), "{missing:?}");

    let ok = create(
        &mut c,
        v1::Schedule {
            time_zone: "Europe/Paris".into(),
            ..cron("daily", "0 9 * * *")
        },
    )
    .await
    .unwrap();
    let ahead = time(ok.next_fire_at.as_ref()) - time(ok.created_at.as_ref());
    assert!(
        ahead > TimeDelta::zero() && ahead <= TimeDelta::days(1),
        "next 09:00 Paris is within a day: {ahead}"
    );
    let taken = create(&mut c, cron("daily", "0 10 * * *"))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(
        taken.message().contains("schedule `daily` already exists"),
        "{taken:?}"
    );
    assert_eq!(
        resume(&mut c, "daily").await,
        ok,
        "resuming an active schedule changes nothing"
    );

    assert_eq!(
        get(&mut c, "ghost").await.unwrap_err().code(),
        Code::NotFound
    );
    let req = v1::PauseScheduleRequest { id: "ghost".into() };
    assert_eq!(
        c.schedules.pause_schedule(req).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn schedules_are_listed_by_id_in_pages() {
    let server = TestServer::start().await;
    let mut c = clients(&server).await;
    put_yaml(&mut c, IDLE).await;
    for id in ["c", "a", "b"] {
        let s = v1::Schedule {
            id: id.into(),
            graph: "idle".into(),
            cron: "0 9 * * *".into(),
            paused: true,
            ..Default::default()
        };
        assert!(create(&mut c, s).await.unwrap().paused, "created paused");
    }
    let first = c
        .schedules
        .list_schedules(v1::ListSchedulesRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await;
    let first = first.unwrap().into_inner();
    let ids: Vec<_> = first.schedules.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(!first.next_page_token.is_empty());
    let rest = v1::ListSchedulesRequest {
        page_size: 2,
        page_token: first.next_page_token,
    };
    let rest = c.schedules.list_schedules(rest).await.unwrap().into_inner();
    let ids: Vec<_> = rest.schedules.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["c"]);
    assert!(rest.next_page_token.is_empty(), "last page");
}
