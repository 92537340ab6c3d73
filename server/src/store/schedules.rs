//! Schedule rows. A due schedule is claimed with `FOR UPDATE SKIP LOCKED`, so with several
//! servers each due row is handled by exactly one of them at a time.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::StoreError;
use super::workflows::WorkflowStatus;

/// What a tick does while the workflow of the previous tick still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Skip the tick.
    Skip,
    /// Start another workflow anyway.
    Allow,
}

impl Overlap {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "skip" => Ok(Overlap::Skip),
            "allow" => Ok(Overlap::Allow),
            other => Err(StoreError::Corrupt(format!("schedule overlap `{other}`"))),
        }
    }
}

/// One schedule as stored.
#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    /// Id chosen by the client.
    pub id: String,
    /// Graph to start.
    pub graph_name: String,
    /// Graph version; 0 means the latest at each tick.
    pub graph_version: i32,
    /// Input of each workflow (a JSON object).
    pub input: Value,
    /// Cron expression; exactly one of `cron` and `interval_ms` is set.
    pub cron: Option<String>,
    /// IANA time zone of `cron`; `None` means UTC.
    pub time_zone: Option<String>,
    /// Fixed interval in milliseconds.
    pub interval_ms: Option<i64>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// True while paused.
    pub paused: bool,
    /// Next tick.
    pub next_fire_at: DateTime<Utc>,
    /// Last tick that started a workflow.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Workflow started by the last tick.
    pub last_workflow_id: Option<Uuid>,
    /// Creation time; interval ticks are counted from it.
    pub created_at: DateTime<Utc>,
}

/// Columns selected for a [`ScheduleRecord`], prefixed `s.`: a macro so queries stay
/// compile-time constants built with `concat!`.
macro_rules! schedule_columns {
    () => {
        "s.id, s.graph_name, s.graph_version, s.input, s.cron, s.time_zone, s.interval_ms, \
         s.overlap, s.paused, s.next_fire_at, s.last_fired_at, s.last_workflow_id, s.created_at"
    };
}

/// Number of columns in `schedule_columns!()`.
const SCHEDULE_COLUMN_COUNT: usize = 13;

impl ScheduleRecord {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(ScheduleRecord {
            id: row.try_get(0)?,
            graph_name: row.try_get(1)?,
            graph_version: row.try_get(2)?,
            input: row.try_get(3)?,
            cron: row.try_get(4)?,
            time_zone: row.try_get(5)?,
            interval_ms: row.try_get(6)?,
            overlap: Overlap::parse(row.try_get(7)?)?,
            paused: row.try_get(8)?,
            next_fire_at: row.try_get(9)?,
            last_fired_at: row.try_get(10)?,
            last_workflow_id: row.try_get(11)?,
            created_at: row.try_get(12)?,
        })
    }
}

const NOW: &str = "SELECT now()";

/// The database clock: inside a transaction, the time it began, the same `now()` every
/// statement of the transaction sees.
pub async fn now(client: &impl GenericClient) -> Result<DateTime<Utc>, StoreError> {
    let stmt = client.prepare_cached(NOW).await?;
    Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
}

/// A new schedule to insert.
#[derive(Debug)]
pub struct NewSchedule<'a> {
    /// Id.
    pub id: &'a str,
    /// Graph name.
    pub graph_name: &'a str,
    /// Graph version (0: the latest at each tick).
    pub graph_version: i32,
    /// Input of each workflow.
    pub input: &'a Value,
    /// Cron expression.
    pub cron: Option<&'a str>,
    /// Time zone of the cron expression.
    pub time_zone: Option<&'a str>,
    /// Interval in milliseconds.
    pub interval_ms: Option<i64>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Created paused.
    pub paused: bool,
    /// First tick.
    pub next_fire_at: DateTime<Utc>,
    /// Creation time, the database clock the first tick was computed from.
    pub created_at: DateTime<Utc>,
}

const INSERT: &str = concat!(
    "INSERT INTO schedules AS s (id, graph_name, graph_version, input, cron, time_zone, \
       interval_ms, overlap, paused, next_fire_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (id) DO NOTHING RETURNING ",
    schedule_columns!()
);

/// Inserts a schedule; `None` when the id is taken.
pub async fn insert(
    client: &impl GenericClient,
    new: &NewSchedule<'_>,
) -> Result<Option<ScheduleRecord>, StoreError> {
    let stmt = client.prepare_cached(INSERT).await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &new.id,
                &new.graph_name,
                &new.graph_version,
                new.input,
                &new.cron,
                &new.time_zone,
                &new.interval_ms,
                &new.overlap.as_str(),
                &new.paused,
                &new.next_fire_at,
                &new.created_at,
            ],
        )
        .await?;
    row.as_ref().map(ScheduleRecord::from_row).transpose()
}

const GET: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s WHERE s.id = $1"
);

/// Reads one schedule.
pub async fn get(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<ScheduleRecord>, StoreError> {
    let stmt = client.prepare_cached(GET).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(ScheduleRecord::from_row)
        .transpose()
}

const LOCK: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    ", now() FROM schedules s WHERE s.id = $1 FOR UPDATE"
);

/// Locks one schedule for a change; returns it with the database clock.
pub async fn lock(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<(ScheduleRecord, DateTime<Utc>)>, StoreError> {
    let stmt = client.prepare_cached(LOCK).await?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some((
        ScheduleRecord::from_row(&row)?,
        row.try_get(SCHEDULE_COLUMN_COUNT)?,
    )))
}

const LIST: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s WHERE s.id > $1 ORDER BY s.id LIMIT $2"
);

/// Schedules after `after_id`, by id.
pub async fn list(
    client: &impl GenericClient,
    after_id: &str,
    limit: i64,
) -> Result<Vec<ScheduleRecord>, StoreError> {
    let stmt = client.prepare_cached(LIST).await?;
    let rows = client.query(&stmt, &[&after_id, &limit]).await?;
    rows.iter().map(ScheduleRecord::from_row).collect()
}

const SET_PAUSED: &str = concat!(
    "UPDATE schedules AS s SET paused = $2, next_fire_at = $3 WHERE s.id = $1 RETURNING ",
    schedule_columns!()
);

/// Pauses or resumes a schedule and sets its next tick; `None` when it does not exist.
pub async fn set_paused(
    client: &impl GenericClient,
    id: &str,
    paused: bool,
    next_fire_at: DateTime<Utc>,
) -> Result<Option<ScheduleRecord>, StoreError> {
    let stmt = client.prepare_cached(SET_PAUSED).await?;
    let row = client
        .query_opt(&stmt, &[&id, &paused, &next_fire_at])
        .await?;
    row.as_ref().map(ScheduleRecord::from_row).transpose()
}

const DELETE: &str = "DELETE FROM schedules WHERE id = $1";

/// Deletes a schedule; false when it did not exist.
pub async fn delete(client: &impl GenericClient, id: &str) -> Result<bool, StoreError> {
    let stmt = client.prepare_cached(DELETE).await?;
    Ok(client.execute(&stmt, &[&id]).await? > 0)
}

/// A due schedule, locked by the caller's transaction.
#[derive(Debug, Clone)]
pub struct DueSchedule {
    /// The schedule.
    pub schedule: ScheduleRecord,
    /// The database clock.
    pub now: DateTime<Utc>,
    /// Status of the workflow its last tick started, if that workflow still exists.
    pub last_status: Option<WorkflowStatus>,
}

const LOCK_DUE: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    ", now(), w.status FROM schedules s \
     LEFT JOIN workflows w ON w.id = s.last_workflow_id \
     WHERE NOT s.paused AND s.next_fire_at <= now() AND s.id <> ALL($1) \
     ORDER BY s.next_fire_at LIMIT 1 FOR UPDATE OF s SKIP LOCKED"
);

/// Locks the most overdue schedule no other transaction holds, leaving out `skip`; `None`
/// when no other schedule is due.
pub async fn lock_due(
    client: &impl GenericClient,
    skip: &[String],
) -> Result<Option<DueSchedule>, StoreError> {
    let stmt = client.prepare_cached(LOCK_DUE).await?;
    let Some(row) = client.query_opt(&stmt, &[&skip]).await? else {
        return Ok(None);
    };
    let last_status = row
        .try_get::<_, Option<&str>>(SCHEDULE_COLUMN_COUNT + 1)?
        .map(WorkflowStatus::parse)
        .transpose()?;
    Ok(Some(DueSchedule {
        schedule: ScheduleRecord::from_row(&row)?,
        now: row.try_get(SCHEDULE_COLUMN_COUNT)?,
        last_status,
    }))
}

/// What a handled tick leaves behind.
#[derive(Debug)]
pub struct TickDone {
    /// Schedule id.
    pub id: String,
    /// The tick after this one.
    pub next_fire_at: DateTime<Utc>,
    /// The tick and the workflow it started; `None` when the tick was skipped.
    pub fired: Option<(DateTime<Utc>, Uuid)>,
}

const ADVANCE: &str = "UPDATE schedules SET next_fire_at = $2, \
     last_fired_at = coalesce($3, last_fired_at), \
     last_workflow_id = coalesce($4, last_workflow_id) WHERE id = $1";

/// Moves a schedule past a tick, recording the workflow the tick started, if any.
pub async fn advance(client: &impl GenericClient, done: &TickDone) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(ADVANCE).await?;
    let (at, workflow_id) = done
        .fired
        .map_or((None, None), |(at, id)| (Some(at), Some(id)));
    client
        .execute(&stmt, &[&done.id, &done.next_fire_at, &at, &workflow_id])
        .await?;
    Ok(())
}
