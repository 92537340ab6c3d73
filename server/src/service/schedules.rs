//! Schedule use cases: create, read, list, pause, resume, delete, and firing due ticks from
//! the sweeper.
//!
//! Ticks. A cron schedule ticks at each match of its expression on the wall clock of its time
//! zone (UTC when none is given), so `0 9 * * *` stays at 09:00 local across daylight-saving
//! changes; a wall-clock time skipped by a change fires at the first instant after the gap,
//! and one that happens twice fires once. An interval schedule ticks at `created_at + k *
//! interval`, a grid that does not drift with the sweeper's latency.
//!
//! Firing. Every server's sweeper claims due schedules with `FOR UPDATE SKIP LOCKED`, one
//! transaction per schedule: start the workflow (idempotency key `schedule:<id>:<tick>`, actor
//! `schedule:<id>`), record the tick, and move `next_fire_at` on, all or nothing. So each tick
//! fires exactly once however many servers run.
//!
//! Missed ticks. When ticks were missed (every server was down, or the database was away), the
//! schedule does not replay them one by one: it fires once, for the most recent missed tick,
//! and continues with the first tick after now. Ticks missed while paused are skipped: resuming
//! continues with the first tick after now. With the SKIP overlap policy a tick that comes while
//! the workflow of the previous tick is still PENDING or RUNNING starts nothing.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::Value;

use super::Service;
use super::error::ServiceError;
use super::step::Outbox;
use super::types::NewStart;
use crate::store::schedules::{self, DueSchedule, NewSchedule, Overlap, ScheduleRecord, TickDone};
use crate::store::workflows::{self, WorkflowStatus};

/// Shortest interval between ticks.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval between ticks; yearly and rarer schedules are cron expressions.
const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest schedule id.
const MAX_ID_LEN: usize = 128;

/// A schedule to create, as the client asked for it.
#[derive(Debug, Clone)]
pub struct CreateSchedule {
    /// Unique id: letters, digits, `_`, `-` and `.`.
    pub id: String,
    /// Graph to start.
    pub graph: String,
    /// Graph version; 0 for the latest at each tick.
    pub graph_version: u32,
    /// Input JSON text of each workflow ("" for `{}`).
    pub input: String,
    /// Cron expression; exactly one of `cron` and `interval`.
    pub cron: Option<String>,
    /// IANA time zone of `cron`; UTC when absent.
    pub time_zone: Option<String>,
    /// Fixed interval; exactly one of `cron` and `interval`.
    pub interval: Option<Duration>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Create it paused.
    pub paused: bool,
}

/// One page of schedules.
#[derive(Debug, Clone)]
pub struct SchedulePage {
    /// Schedules by id.
    pub schedules: Vec<ScheduleRecord>,
    /// Token for the next page.
    pub next_page_token: Option<String>,
}

impl Service {
    /// Creates a schedule; its first tick is the first after now.
    pub async fn create_schedule(
        &self,
        req: CreateSchedule,
    ) -> Result<ScheduleRecord, ServiceError> {
        check_id(&req.id)?;
        if req.graph.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`graph` is required: name the graph the schedule starts".into(),
            ));
        }
        let cadence = Cadence::parse(req.cron.as_deref(), req.time_zone.as_deref(), req.interval)?;
        let input = Value::Object(self.parse_object("input", &req.input)?);
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        self.graph(&tx, &req.graph, super::to_i32(req.graph_version))
            .await?;
        let now = schedules::now(&tx).await?;
        let next_fire_at = cadence
            .next_after(now, now)
            .ok_or_else(|| never_fires(&req))?;
        let new = NewSchedule {
            id: &req.id,
            graph_name: &req.graph,
            graph_version: super::to_i32(req.graph_version),
            input: &input,
            cron: req.cron.as_deref(),
            time_zone: req.time_zone.as_deref(),
            interval_ms: req.interval.map(super::millis),
            overlap: req.overlap,
            paused: req.paused,
            next_fire_at,
            created_at: now,
        };
        let created = schedules::insert(&tx, &new).await?.ok_or_else(|| {
            ServiceError::AlreadyExists(format!(
                "schedule `{}` already exists; pick another id, or delete it first with \
                 `rondo schedule delete {}`",
                req.id, req.id
            ))
        })?;
        tx.commit().await?;
        Ok(created)
    }

    /// Reads a schedule.
    pub async fn get_schedule(&self, id: &str) -> Result<ScheduleRecord, ServiceError> {
        let client = self.pool().get().await?;
        schedules::get(&client, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Lists schedules by id, after `page_token` (the last id of the previous page).
    pub async fn list_schedules(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<SchedulePage, ServiceError> {
        let limit = super::workflows::page_size(page_size);
        let client = self.pool().get().await?;
        let mut rows = schedules::list(&client, page_token, limit + 1).await?;
        let next_page_token = if i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit {
            rows.pop();
            rows.last().map(|s| s.id.clone())
        } else {
            None
        };
        Ok(SchedulePage {
            schedules: rows,
            next_page_token,
        })
    }

    /// Pauses a schedule; pausing a paused schedule changes nothing.
    pub async fn pause_schedule(&self, id: &str) -> Result<ScheduleRecord, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (schedule, _) = schedules::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if schedule.paused {
            return Ok(schedule);
        }
        let paused = schedules::set_paused(&tx, id, true, schedule.next_fire_at)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok(paused)
    }

    /// Resumes a paused schedule from the first tick after now, so ticks missed while paused
    /// are skipped; resuming an active schedule changes nothing.
    pub async fn resume_schedule(&self, id: &str) -> Result<ScheduleRecord, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (schedule, now) = schedules::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !schedule.paused {
            return Ok(schedule);
        }
        let next = Cadence::of(&schedule)?
            .next_after(schedule.created_at, now)
            .ok_or_else(|| no_next(&schedule))?;
        let resumed = schedules::set_paused(&tx, id, false, next)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok(resumed)
    }

    /// Deletes a schedule; the workflows it started are untouched.
    pub async fn delete_schedule(&self, id: &str) -> Result<(), ServiceError> {
        let client = self.pool().get().await?;
        if schedules::delete(&client, id).await? {
            Ok(())
        } else {
            Err(not_found(id))
        }
    }

    /// Handles up to `limit` due ticks, one transaction each. A schedule whose tick fails is
    /// logged and left for the next sweep, so it cannot hold the others back. Returns how many
    /// ticks were handled (fired or skipped).
    pub async fn fire_due_schedules(&self, limit: i64) -> Result<usize, ServiceError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut failed = Vec::new();
        let mut handled = 0;
        while handled + failed.len() < limit {
            let mut client = self.pool().get().await?;
            let tx = client.transaction().await?;
            let Some(due) = schedules::lock_due(&tx, &failed).await? else {
                break;
            };
            let id = due.schedule.id.clone();
            let mut outbox = Outbox::new();
            let result = match self.handle_tick(&tx, due, &mut outbox).await {
                Ok(()) => self.commit(tx, outbox).await.map(drop),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => handled += 1,
                Err(ServiceError::Unavailable(m)) => return Err(ServiceError::Unavailable(m)),
                Err(error) => {
                    tracing::warn!(schedule_id = %id, %error, "schedule tick failed; retrying at the next sweep");
                    failed.push(id);
                }
            }
        }
        Ok(handled)
    }

    /// Fires (or, by the overlap policy, skips) the tick of a due schedule locked by `tx`, and
    /// moves the schedule to its first tick after now.
    async fn handle_tick(
        &self,
        tx: &impl crate::store::GenericClient,
        due: DueSchedule,
        outbox: &mut Outbox,
    ) -> Result<(), ServiceError> {
        let DueSchedule {
            schedule: s,
            now,
            last_status,
        } = due;
        let tick = Cadence::of(&s)?
            .catch_up(s.created_at, s.next_fire_at, now)
            .ok_or_else(|| no_next(&s))?;
        if tick.at > s.next_fire_at {
            tracing::info!(schedule_id = %s.id, missed_from = %s.next_fire_at, tick = %tick.at, "schedule missed ticks; firing the latest once");
        }
        let running = matches!(
            last_status,
            Some(WorkflowStatus::Pending | WorkflowStatus::Running)
        );
        if s.overlap == Overlap::Skip && running {
            tracing::info!(schedule_id = %s.id, tick = %tick.at, "schedule tick skipped: the previous workflow still runs");
            let done = TickDone {
                id: s.id,
                next_fire_at: tick.next,
                fired: None,
            };
            schedules::advance(tx, &done).await?;
            return Ok(());
        }
        let key = tick_key(&s.id, tick.at);
        let actor = format!("schedule:{}", s.id);
        let new = NewStart {
            graph: &s.graph_name,
            version: u32::try_from(s.graph_version).unwrap_or(0),
            input: &s.input,
            idempotency_key: Some(&key),
            start_at: None,
            schedule_id: Some(&s.id),
            actor: &actor,
        };
        let workflow_id = match self.insert_workflow(tx, &new, outbox).await? {
            Some(id) => id,
            None => {
                workflows::get_by_key(tx, &key)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal(format!("idempotency key `{key}` vanished"))
                    })?
                    .id
            }
        };
        tracing::info!(schedule_id = %s.id, %workflow_id, tick = %tick.at, "schedule fired");
        let done = TickDone {
            id: s.id,
            next_fire_at: tick.next,
            fired: Some((tick.at, workflow_id)),
        };
        schedules::advance(tx, &done).await?;
        Ok(())
    }
}

/// The idempotency key of the workflow a tick starts: one workflow per tick, whoever retries.
fn tick_key(id: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{id}:{}",
        tick.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

fn check_id(id: &str) -> Result<(), ServiceError> {
    if id.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "`id` is required: name the schedule, e.g. `nightly-report`".into(),
        ));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ServiceError::InvalidArgument(format!(
            "`id` is {} characters long, over the limit of {MAX_ID_LEN}; use a shorter name",
            id.len()
        )));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ServiceError::InvalidArgument(format!(
            "`id` `{id}` contains `{bad}`; use only letters, digits, `_`, `-` and `.`"
        )));
    }
    Ok(())
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!(
        "schedule `{id}` not found; `rondo schedule list` shows the schedules"
    ))
}

fn never_fires(req: &CreateSchedule) -> ServiceError {
    ServiceError::InvalidArgument(match &req.cron {
        Some(expr) => format!(
            "`cron` `{expr}` never fires; check the day of month against the month (`30 2` is February 30th)"
        ),
        None => "`interval` is out of range; use 1s to 366d".into(),
    })
}

/// An INVALID_ARGUMENT error with a message naming the field and the fix.
fn bad_arg<T>(message: String) -> Result<T, ServiceError> {
    Err(ServiceError::InvalidArgument(message))
}

fn no_next(s: &ScheduleRecord) -> ServiceError {
    ServiceError::Internal(format!("schedule `{}` has no tick after now", s.id))
}

/// When a schedule ticks. Pure: the clock is an argument.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// Matches of a cron expression on the wall clock of a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its time zone.
        zone: Tz,
    },
    /// `anchor + k * interval` for k = 1, 2, ..., the anchor being the schedule's creation.
    Every(TimeDelta),
}

/// A due tick: the one that fires, and the one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The tick that fires.
    pub at: DateTime<Utc>,
    /// The first tick after now, the schedule's next.
    pub next: DateTime<Utc>,
}

impl Cadence {
    /// Checks a cadence as a client gives it: exactly one of `cron` and `interval`, a cron
    /// expression of 5 or 6 fields, a known IANA time zone, an interval of 1s to 366d.
    pub fn parse(
        cron: Option<&str>,
        time_zone: Option<&str>,
        interval: Option<Duration>,
    ) -> Result<Cadence, ServiceError> {
        match (cron, interval) {
            (Some(_), Some(_)) => bad_arg(
                "set exactly one of `cron` and `interval`, not both: a schedule follows either a cron \
                 expression or a fixed interval"
                    .into(),
            ),
            (None, None) => bad_arg(
                "one of `cron` (e.g. `0 9 * * MON-FRI`) or `interval` (e.g. `15m`) is required: say when \
                 the schedule fires"
                    .into(),
            ),
            (Some(expr), None) => {
                let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
                let cron = parser.parse(expr).or_else(|e| {
                    bad_arg(format!(
                        "`cron` `{expr}` is not a valid cron expression: {e}; use 5 fields (minute hour \
                         day-of-month month day-of-week) or 6 with seconds first, e.g. `0 9 * * MON-FRI`"
                    ))
                })?;
                let zone = match time_zone {
                    None => Tz::UTC,
                    Some(name) => Tz::from_str(name).or_else(|_| {
                        bad_arg(format!(
                            "`time_zone` `{name}` is not a known IANA time zone; use a name like \
                             `Europe/Paris` or `America/New_York`, or leave it empty for UTC"
                        ))
                    })?,
                };
                Ok(Cadence::Cron { cron: Box::new(cron), zone })
            }
            (None, Some(every)) => {
                if time_zone.is_some() {
                    return bad_arg(
                        "`time_zone` applies to `cron` only; drop it for an `interval` schedule".into(),
                    );
                }
                if every < MIN_INTERVAL {
                    return bad_arg(format!(
                        "`interval` is {every:?}, under the minimum of 1s; use 1s or more"
                    ));
                }
                if every > MAX_INTERVAL {
                    return bad_arg(format!(
                        "`interval` is {every:?}, over the maximum of 366d; use a cron expression for \
                         yearly schedules"
                    ));
                }
                let every = TimeDelta::from_std(every).or_else(|_| bad_arg("`interval` is out of range".into()))?;
                Ok(Cadence::Every(every))
            }
        }
    }

    /// The cadence of a stored schedule.
    pub fn of(s: &ScheduleRecord) -> Result<Cadence, ServiceError> {
        let interval = s
            .interval_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        Cadence::parse(s.cron.as_deref(), s.time_zone.as_deref(), interval)
            .map_err(|e| ServiceError::Internal(format!("stored schedule `{}`: {e}", s.id)))
    }

    /// The first tick strictly after `t`; `None` when there is none. `anchor` is where an
    /// interval's ticks are counted from.
    pub fn next_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Cron { cron, zone } => cron
                .find_next_occurrence(&t.with_timezone(zone), false)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            Cadence::Every(every) => {
                let steps = steps(anchor, *every, t)?.max(0) + 1;
                grid(anchor, *every, steps)
            }
        }
    }

    /// The last tick at or before `t`; `None` when there is none.
    pub fn last_at_or_before(
        &self,
        anchor: DateTime<Utc>,
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Cron { cron, zone } => cron
                .find_previous_occurrence(&t.with_timezone(zone), true)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            Cadence::Every(every) => {
                let steps = steps(anchor, *every, t)?;
                if steps < 1 {
                    None
                } else {
                    grid(anchor, *every, steps)
                }
            }
        }
    }

    /// The catch-up rule: a schedule due at `scheduled` fires once, for the latest tick at or
    /// before `now` (so ticks missed meanwhile are not replayed), and continues with the first
    /// tick after `now`. `None` when `scheduled` is still ahead or no tick follows `now`.
    pub fn catch_up(
        &self,
        anchor: DateTime<Utc>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Tick> {
        if scheduled > now {
            return None;
        }
        let at = self
            .last_at_or_before(anchor, now)
            .filter(|at| *at >= scheduled)
            .unwrap_or(scheduled);
        let next = self.next_after(anchor, now)?;
        Some(Tick { at, next })
    }
}

/// Whole intervals from `anchor` to `t`, rounded down.
fn steps(anchor: DateTime<Utc>, every: TimeDelta, t: DateTime<Utc>) -> Option<i64> {
    let elapsed = (t - anchor).num_microseconds()?;
    let every = every.num_microseconds().filter(|us| *us > 0)?;
    Some(elapsed.div_euclid(every))
}

/// The `steps`-th tick of an interval grid.
fn grid(anchor: DateTime<Utc>, every: TimeDelta, steps: i64) -> Option<DateTime<Utc>> {
    let offset = every.num_microseconds()?.checked_mul(steps)?;
    anchor.checked_add_signed(TimeDelta::microseconds(offset))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expr: &str, zone: Option<&str>) -> Cadence {
        Cadence::parse(Some(expr), zone, None).unwrap()
    }

    fn every(d: Duration) -> Cadence {
        Cadence::parse(None, None, Some(d)).unwrap()
    }

    fn invalid(cron: Option<&str>, zone: Option<&str>, interval: Option<Duration>) -> String {
        match Cadence::parse(cron, zone, interval) {
            Err(ServiceError::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    /// Any anchor: cron ticks ignore it.
    const ANY: DateTime<Utc> = DateTime::UNIX_EPOCH;

    #[test]
    fn cron_ticks_are_the_next_match_strictly_after_now_in_utc_by_default() {
        let c = cron("0 9 * * *", None);
        assert_eq!(
            c.next_after(ANY, utc("2024-01-01T08:59:59.5Z")),
            Some(utc("2024-01-01T09:00:00Z"))
        );
        assert_eq!(
            c.next_after(ANY, utc("2024-01-01T09:00:00Z")),
            Some(utc("2024-01-02T09:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ANY, utc("2024-01-02T09:00:00Z")),
            Some(utc("2024-01-02T09:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ANY, utc("2024-01-02T08:59:59Z")),
            Some(utc("2024-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn cron_with_seconds_ticks_on_whole_seconds() {
        let c = cron("*/10 * * * * *", None);
        assert_eq!(
            c.next_after(ANY, utc("2024-01-01T10:00:00.001Z")),
            Some(utc("2024-01-01T10:00:10Z"))
        );
        assert_eq!(
            c.last_at_or_before(ANY, utc("2024-01-01T10:00:19.9Z")),
            Some(utc("2024-01-01T10:00:10Z"))
        );
    }

    #[test]
    fn cron_in_a_time_zone_keeps_its_wall_clock_across_daylight_saving_changes() {
        let paris = Tz::Europe__Paris;
        let c = cron("0 9 * * *", Some("Europe/Paris"));
        // Paris moves from UTC+1 to UTC+2 on 2024-03-31.
        let before = c.next_after(ANY, utc("2024-03-30T00:00:00Z")).unwrap();
        let after = c.next_after(ANY, before).unwrap();
        assert_eq!(
            before,
            paris.with_ymd_and_hms(2024, 3, 30, 9, 0, 0).unwrap()
        );
        assert_eq!(before, utc("2024-03-30T08:00:00Z"));
        assert_eq!(after, utc("2024-03-31T07:00:00Z"), "09:00 local, now UTC+2");
        assert_eq!(
            after - before,
            TimeDelta::hours(23),
            "the day of the change is 23 hours long"
        );
    }

    #[test]
    fn cron_time_skipped_by_spring_forward_fires_once_after_the_gap() {
        // 02:30 does not exist in Paris on 2024-03-31 (02:00 CET jumps to 03:00 CEST).
        let c = cron("30 2 * * *", Some("Europe/Paris"));
        let ticks: Vec<_> =
            std::iter::successors(c.next_after(ANY, utc("2024-03-30T12:00:00Z")), |t| {
                c.next_after(ANY, *t)
            })
            .take(2)
            .collect();
        assert_eq!(
            ticks[0],
            utc("2024-03-31T01:00:00Z"),
            "03:00 CEST, the first instant after the gap"
        );
        assert_eq!(
            ticks[1],
            utc("2024-04-01T00:30:00Z"),
            "02:30 CEST the next day"
        );
    }

    #[test]
    fn cron_time_repeated_by_fall_back_fires_once() {
        // 02:30 happens twice in Paris on 2024-10-27 (03:00 CEST falls back to 02:00 CET).
        let c = cron("30 2 * * *", Some("Europe/Paris"));
        let first = c.next_after(ANY, utc("2024-10-26T12:00:00Z")).unwrap();
        assert_eq!(
            first,
            utc("2024-10-27T00:30:00Z"),
            "the first 02:30, in CEST"
        );
        assert_eq!(
            c.next_after(ANY, first),
            Some(utc("2024-10-28T01:30:00Z")),
            "no second 02:30"
        );
    }

    #[test]
    fn interval_ticks_sit_on_a_grid_from_the_anchor() {
        let anchor = utc("2024-01-01T12:00:00.250Z");
        let c = every(Duration::from_secs(1));
        assert_eq!(
            c.next_after(anchor, anchor),
            Some(utc("2024-01-01T12:00:01.250Z"))
        );
        assert_eq!(
            c.next_after(anchor, utc("2024-01-01T12:00:01.250Z")),
            Some(utc("2024-01-01T12:00:02.250Z"))
        );
        assert_eq!(
            c.next_after(anchor, utc("2024-01-01T12:00:05.9Z")),
            Some(utc("2024-01-01T12:00:06.250Z"))
        );
        assert_eq!(
            c.last_at_or_before(anchor, utc("2024-01-01T12:00:05.9Z")),
            Some(utc("2024-01-01T12:00:05.250Z"))
        );
        assert_eq!(
            c.last_at_or_before(anchor, utc("2024-01-01T12:00:01.0Z")),
            None,
            "no tick before the first"
        );
    }

    #[test]
    fn a_due_schedule_fires_its_own_tick_when_nothing_was_missed() {
        let anchor = utc("2024-01-01T12:00:00Z");
        let c = every(Duration::from_secs(60));
        let tick = c.catch_up(
            anchor,
            utc("2024-01-01T12:01:00Z"),
            utc("2024-01-01T12:01:00.040Z"),
        );
        assert_eq!(
            tick,
            Some(Tick {
                at: utc("2024-01-01T12:01:00Z"),
                next: utc("2024-01-01T12:02:00Z")
            })
        );
        assert_eq!(
            c.catch_up(
                anchor,
                utc("2024-01-01T12:01:00Z"),
                utc("2024-01-01T12:00:59Z")
            ),
            None,
            "not yet due"
        );
    }

    #[test]
    fn missed_ticks_fire_once_for_the_latest_and_continue_after_now() {
        let anchor = utc("2024-01-01T12:00:00Z");
        let c = every(Duration::from_secs(60));
        let tick = c.catch_up(
            anchor,
            utc("2024-01-01T12:01:00Z"),
            utc("2024-01-01T12:10:30Z"),
        );
        assert_eq!(
            tick,
            Some(Tick {
                at: utc("2024-01-01T12:10:00Z"),
                next: utc("2024-01-01T12:11:00Z")
            })
        );

        let hourly = cron("0 * * * *", None);
        let tick = hourly.catch_up(
            ANY,
            utc("2024-01-01T01:00:00Z"),
            utc("2024-01-01T05:30:00Z"),
        );
        assert_eq!(
            tick,
            Some(Tick {
                at: utc("2024-01-01T05:00:00Z"),
                next: utc("2024-01-01T06:00:00Z")
            })
        );
    }

    #[test]
    fn a_cadence_is_exactly_one_of_cron_and_interval() {
        let both = invalid(Some("* * * * *"), None, Some(Duration::from_secs(60)));
        assert!(
            both.contains("exactly one of `cron` and `interval`"),
            "{both}"
        );
        let neither = invalid(None, None, None);
        assert!(
            neither.contains("`cron`") && neither.contains("`interval`"),
            "{neither}"
        );
        let zone = invalid(None, Some("Europe/Paris"), Some(Duration::from_secs(60)));
        assert!(
            zone.contains("`time_zone` applies to `cron` only"),
            "{zone}"
        );
    }

    #[test]
    fn bad_cron_expressions_and_zones_are_named_in_the_error() {
        let bad = invalid(Some("61 * * * *"), None, None);
        assert!(
            bad.starts_with("`cron` `61 * * * *` is not a valid cron expression: "),
            "{bad}"
        );
        let seven = invalid(Some("0 0 9 * * * 2030"), None, None);
        assert!(seven.contains("`cron` `0 0 9 * * * 2030`"), "{seven}");
        let zone = invalid(Some("0 9 * * *"), Some("Mars/Olympus"), None);
        assert!(
            zone.contains("`time_zone` `Mars/Olympus` is not a known IANA time zone"),
            "{zone}"
        );
        assert!(
            Cadence::parse(Some("0 0 9 * * MON-FRI"), Some("America/New_York"), None).is_ok(),
            "6 fields"
        );
    }

    #[test]
    fn intervals_are_between_one_second_and_366_days() {
        let short = invalid(None, None, Some(Duration::from_millis(999)));
        assert!(short.contains("under the minimum of 1s"), "{short}");
        let long = invalid(None, None, Some(MAX_INTERVAL + Duration::from_secs(1)));
        assert!(long.contains("over the maximum of 366d"), "{long}");
        assert!(Cadence::parse(None, None, Some(MIN_INTERVAL)).is_ok());
    }

    #[test]
    fn a_cron_expression_that_never_matches_has_no_next_tick() {
        let c = cron("0 0 30 2 *", None);
        assert_eq!(c.next_after(ANY, utc("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn schedule_ids_are_letters_digits_and_a_few_marks() {
        assert!(check_id("nightly-report_v2.1").is_ok());
        for bad in ["", "has space", "slash/", "ünï"] {
            assert!(
                matches!(check_id(bad), Err(ServiceError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tick_keys_name_the_schedule_and_the_tick() {
        assert_eq!(
            tick_key("s", utc("2024-01-01T12:00:01.250Z")),
            "schedule:s:2024-01-01T12:00:01.250Z"
        );
        assert_eq!(
            tick_key("s", utc("2024-01-01T12:00:00Z")),
            "schedule:s:2024-01-01T12:00:00Z"
        );
    }
}
