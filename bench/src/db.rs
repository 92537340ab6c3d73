//! The benchmark's own SQL on Rondo's database: seeding rows shaped like the ones the server
//! writes (ready jobs to drain, and a big completed history), and reading PostgreSQL's
//! transaction counter.
//!
//! Seeding goes straight into the tables, many rows per statement, because making 100,000
//! workflows through the API would take minutes and measure the API instead of what comes
//! after. Each row carries the columns and values the server's own statements would have
//! written (see `server/src/store/`), so the server cannot tell them from its own.

use std::time::{Duration, Instant};

use anyhow::Context;
use rondo_server::ServeConfig;
use serde_json::json;
use tokio_postgres::{Client, NoTls};

/// A UUID version 7 (the server makes workflow ids with `Uuid::now_v7`) for the instant `$at`:
/// its 48-bit millisecond timestamp and version written over a random UUID, whose variant
/// bits are already right. Time-ordered ids fill the primary key index as the server's do.
macro_rules! uuid_v7_at {
    ($at:literal) => {
        concat!(
            "overlay(overlay(replace(gen_random_uuid()::text, '-', '') \
               PLACING lpad(to_hex((extract(epoch FROM ",
            $at,
            ") * 1000)::bigint), 12, '0') FROM 1 FOR 12) \
             PLACING '7' FROM 13 FOR 1)::uuid"
        )
    };
}

/// Transactions committed and rolled back in this database so far.
const XACTS: &str = "SELECT xact_commit + xact_rollback FROM pg_stat_database \
     WHERE datname = current_database()";

/// Reserves `$1` job ids from the `jobs.id` identity and returns the last; the seeded jobs
/// take them explicitly, so that each workflow row can name its job in the same statement.
/// Only a job created by the server between the `nextval` and the `setval` could take an id
/// of the range, and the benchmark creates none while it seeds; the primary key would make
/// the seeding fail if one did.
const RESERVE_JOB_IDS: &str = "SELECT setval(pg_get_serial_sequence('jobs', 'id'), \
     nextval(pg_get_serial_sequence('jobs', 'id')) + $1::bigint - 1)";

/// `$1` RUNNING one-step workflows of graph `$2` (latest version), each at node `$3` with one
/// READY job of operation `$4` (ids from `$5` up, lease `$6` ms), as `StartWorkflow` leaves
/// them: the workflow row after its first step, the job, and the `workflow_started` and
/// `node_entered` events. `$7` is the start request's canonical JSON, whose SHA-256 the
/// server stores as `request_hash`.
const SEED_READY: &str = concat!(
    "WITH g AS (SELECT max(version) AS version FROM graphs WHERE name = $2::text), \
     wf AS ( \
       INSERT INTO workflows (id, graph_name, graph_version, status, current_node, input, \
         vars, step_count, streaks, request_hash, current_job_id) \
       SELECT ",
    uuid_v7_at!("now()"),
    ", $2::text, g.version, 'running', $3::text, '{}'::jsonb, '{}'::jsonb, 0, '{}'::jsonb, \
         encode(sha256(convert_to($7::text, 'UTF8')), 'hex'), $5::bigint + i \
       FROM generate_series(0, $1::int - 1) AS i CROSS JOIN g \
       RETURNING id, current_job_id), \
     made AS ( \
       INSERT INTO jobs (id, workflow_id, node, operation, state, attempt, idempotency_key, \
         timeout_ms) OVERRIDING SYSTEM VALUE \
       SELECT current_job_id, id, $3::text, $4::text, 'ready', 1, \
         id::text || ':' || $3::text || ':0', $6::bigint FROM wf \
       RETURNING id, workflow_id, idempotency_key) \
     INSERT INTO events (workflow_id, kind, node, job_id, attempt, actor, data) \
     SELECT made.workflow_id, e.kind, e.node, e.job_id, e.attempt, e.actor, e.data \
     FROM made CROSS JOIN g CROSS JOIN LATERAL (VALUES \
       (1, 'workflow_started', NULL::text, NULL::bigint, NULL::int, 'client', \
        jsonb_build_object('graph', $2::text, 'version', g.version, 'start_at', NULL)), \
       (2, 'node_entered', $3::text, made.id, 1, 'engine', \
        jsonb_build_object('from', NULL, 'delay_ms', 0, 'idempotency_key', \
          made.idempotency_key))) AS e(seq, kind, node, job_id, attempt, actor, data) \
     ORDER BY made.id, e.seq"
);

/// `$1` COMPLETED chain workflows of graph `$2` (latest version), each of `$3` steps through
/// nodes `s1`..`s{$3}` of operation `$4`, every job (ids from `$5` up, lease `$6` ms)
/// COMPLETED by worker `$8` with label `$9`, and one `job_completed` event per job. The
/// first workflow started `$10` seconds ago, each next one a second later, its steps 10 ms
/// apart. `$7` is the start request's canonical JSON, as in [`SEED_READY`].
const SEED_HISTORY: &str = concat!(
    "WITH g AS (SELECT max(version) AS version FROM graphs WHERE name = $2::text), \
     wf AS ( \
       INSERT INTO workflows (id, graph_name, graph_version, status, current_node, input, \
         vars, step_count, streaks, outcome, request_hash, current_job_id, created_at, \
         updated_at, ended_at) \
       SELECT ",
    uuid_v7_at!("t.at"),
    ", $2::text, g.version, 'completed', NULL, '{}'::jsonb, '{}'::jsonb, $3::int, \
         '{}'::jsonb, $9::text, encode(sha256(convert_to($7::text, 'UTF8')), 'hex'), \
         $5::bigint + i::bigint * $3::int + $3::int - 1, t.at, \
         t.at + $3::int * interval '10 ms', t.at + $3::int * interval '10 ms' \
       FROM generate_series(0, $1::int - 1) AS i CROSS JOIN g \
       CROSS JOIN LATERAL (SELECT now() - ($10::int - i) * interval '1 second' AS at) AS t \
       RETURNING id, created_at, current_job_id), \
     made AS ( \
       INSERT INTO jobs (id, workflow_id, node, operation, state, attempt, idempotency_key, \
         from_node, available_at, timeout_ms, lease_token, lease_expires_at, worker, label, \
         output, ended_by, created_at, leased_at, ended_at) OVERRIDING SYSTEM VALUE \
       SELECT wf.current_job_id - $3::int + k, wf.id, 's' || k::text, $4::text, 'completed', \
         1, wf.id::text || ':s' || k::text || ':' || (k - 1)::text, \
         CASE WHEN k > 1 THEN 's' || (k - 1)::text END, c.at, $6::bigint, \
         gen_random_uuid(), c.at + interval '1 ms' + $6::bigint * interval '1 ms', $8::text, \
         $9::text, '{}'::jsonb, $8::text, c.at, c.at + interval '1 ms', c.at + interval '5 ms' \
       FROM wf CROSS JOIN generate_series(1, $3::int) AS k \
       CROSS JOIN LATERAL (SELECT wf.created_at + (k - 1) * interval '10 ms' AS at) AS c \
       RETURNING id, workflow_id, node, attempt, ended_at) \
     INSERT INTO events (workflow_id, at, kind, node, label, job_id, attempt, actor) \
     SELECT workflow_id, ended_at, 'job_completed', node, $9::text, id, attempt, $8::text \
     FROM made ORDER BY id"
);

/// Run apart: VACUUM refuses to run inside a transaction block.
const VACUUM: &str = "VACUUM ANALYZE workflows, jobs, events";

/// Most workflows of history seeded by one statement (and one transaction), so that no
/// single transaction writes millions of rows.
const HISTORY_CHUNK: u32 = 10_000;

/// What seeded rows are made of.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// Graph of the workflows.
    pub graph: &'a str,
    /// Operation of every job.
    pub operation: &'a str,
    /// Label a completed job ended with.
    pub label: &'a str,
    /// Identity of the worker that completed them.
    pub worker: &'a str,
}

/// Connects to the database at `db_url`; the connection lives until the client is dropped.
pub async fn connect(db_url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(db_url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "benchmark's PostgreSQL connection failed");
        }
    });
    Ok(client)
}

/// Transactions committed or rolled back in `client`'s database so far, by
/// `pg_stat_database`; other sessions' counts reach it when they go idle, within a second or
/// so of their transactions. Each call is one transaction of its own.
pub async fn transactions(client: &Client) -> anyhow::Result<i64> {
    Ok(client.query_one(XACTS, &[]).await?.try_get(0)?)
}

/// Seeds `count` RUNNING one-step workflows at `node`, each with its READY job, in one
/// transaction; returns how long it took.
pub async fn seed_ready(
    client: &mut Client,
    shape: &Shape<'_>,
    node: &str,
    count: u32,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let tx = client.transaction().await?;
    let first = reserve_job_ids(&tx, i64::from(count)).await?;
    tx.execute(
        SEED_READY,
        &[
            &i32::try_from(count)?,
            &shape.graph,
            &node,
            &shape.operation,
            &first,
            &default_lease_ms()?,
            &request_json(shape.graph),
        ],
    )
    .await
    .context("seeding ready jobs")?;
    tx.commit().await?;
    Ok(started.elapsed())
}

/// Seeds at least `jobs` COMPLETED jobs as workflows of `steps` steps each (whole
/// workflows, so the count rounds up), with one event per job, in transactions of
/// [`HISTORY_CHUNK`] workflows; returns the number of workflows.
pub async fn seed_history(
    client: &mut Client,
    shape: &Shape<'_>,
    steps: u32,
    jobs: u32,
) -> anyhow::Result<u32> {
    let workflows = jobs.div_ceil(steps);
    let lease_ms = default_lease_ms()?;
    let request = request_json(shape.graph);
    let mut done = 0;
    while done < workflows {
        let chunk = HISTORY_CHUNK.min(workflows - done);
        let tx = client.transaction().await?;
        let first = reserve_job_ids(&tx, i64::from(chunk) * i64::from(steps)).await?;
        tx.execute(
            SEED_HISTORY,
            &[
                &i32::try_from(chunk)?,
                &shape.graph,
                &i32::try_from(steps)?,
                &shape.operation,
                &first,
                &lease_ms,
                &request,
                &shape.worker,
                &shape.label,
                &i32::try_from(workflows - done)?,
            ],
        )
        .await
        .context("seeding completed workflows")?;
        tx.commit().await?;
        done += chunk;
    }
    Ok(workflows)
}

/// Brings the planner's statistics and the visibility map up to date after a bulk of writes,
/// as autovacuum would after a while, then checkpoints: seeding the history writes about a
/// gigabyte of WAL, and the checkpoint it sets off would otherwise run, and flush, during the
/// measurement. Returns how long it took. A role that may not checkpoint gets a warning.
pub async fn vacuum(client: &Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    client.batch_execute(VACUUM).await?;
    if let Err(error) = client.batch_execute("CHECKPOINT").await {
        eprintln!("warning: CHECKPOINT failed ({error}); the next phase may measure one");
    }
    Ok(started.elapsed())
}

/// Reserves `count` job ids; returns the first.
async fn reserve_job_ids(tx: &tokio_postgres::Transaction<'_>, count: i64) -> anyhow::Result<i64> {
    let last: i64 = tx.query_one(RESERVE_JOB_IDS, &[&count]).await?.try_get(0)?;
    Ok(last - count + 1)
}

/// The lease of a job of a node without a timeout: the server's default, which the
/// benchmark's server keeps.
fn default_lease_ms() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        ServeConfig::new("").default_lease.as_millis(),
    )?)
}

/// The canonical JSON of a start of the latest version of `graph` with input `{}` now,
/// written as the server writes it before hashing it into `request_hash`.
fn request_json(graph: &str) -> String {
    let input = json!({});
    let start_at: Option<i64> = None;
    json!({
        "graph": graph,
        "version": 0,
        "input": input,
        "start_at": start_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use rondo_server::testing::TestServer;
    use rondo_worker::StartOptions;
    use serde_json::Value;
    use tokio_postgres::types::ToSql;

    use super::*;
    use crate::workloads::{
        self, Batch, CHAIN_GRAPH, LABEL, ONE_STEP_GRAPH, ONE_STEP_NODE, OPERATION,
    };

    /// A graph's workflow rows as JSON, oldest first, without what differs between any two
    /// workflows.
    const WORKFLOWS: &str = "SELECT to_jsonb(w) - 'id' - 'created_at' - 'updated_at' \
         - 'ended_at' - 'current_job_id' FROM workflows w WHERE graph_name = $1 \
         ORDER BY created_at, id";

    /// A graph's workflow ids, oldest first.
    const IDS: &str = "SELECT id::text FROM workflows WHERE graph_name = $1 \
         ORDER BY created_at, id";

    /// A workflow's jobs as JSON, without ids, times and tokens; whether the idempotency key
    /// is `workflow:node:steps-before` for chain nodes `s1`, `s2`, ..., or `workflow:node:0`
    /// for other nodes; and whether the workflow names the last job as its current one.
    const JOBS: &str = "SELECT to_jsonb(j) - 'id' - 'workflow_id' - 'created_at' \
         - 'available_at' - 'leased_at' - 'ended_at' - 'lease_token' - 'lease_expires_at' \
         - 'idempotency_key' || jsonb_build_object( \
           'key_ok', j.idempotency_key = j.workflow_id::text || ':' || j.node || ':' \
             || CASE WHEN j.node ~ '^s[0-9]+$' THEN (substr(j.node, 2)::int - 1)::text \
                ELSE '0' END, \
           'is_current', w.current_job_id = j.id) \
         FROM jobs j JOIN workflows w ON w.id = j.workflow_id \
         WHERE w.id = $1::text::uuid ORDER BY j.id";

    /// A workflow's events (of kind `$2`, or all) as JSON, without ids and times, and whether
    /// each names a job of the workflow at the event's node.
    const EVENTS: &str = "SELECT to_jsonb(e) - 'id' - 'at' - 'workflow_id' - 'job_id' - 'data' \
         || jsonb_build_object('data', e.data - 'idempotency_key', \
           'job_ok', e.job_id IS NULL OR EXISTS (SELECT 1 FROM jobs j \
             WHERE j.id = e.job_id AND j.workflow_id = e.workflow_id AND j.node = e.node)) \
         FROM events e WHERE workflow_id = $1::text::uuid AND ($2::text IS NULL OR kind = $2) \
         ORDER BY id";

    async fn rows(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Value> {
        client
            .query(sql, params)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get(0).unwrap())
            .collect()
    }

    async fn ids(client: &Client, graph: &str) -> Vec<String> {
        client
            .query(IDS, &[&graph])
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get(0).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn seeded_ready_jobs_look_like_a_started_workflow() {
        let server = TestServer::start().await;
        workloads::put_graphs(&server.grpc_url(), 3).await.unwrap();
        let api = rondo_worker::Client::connect(&server.grpc_url()).unwrap();
        let options = StartOptions::new(ONE_STEP_GRAPH, json!({}));
        api.start_workflow(options).await.unwrap();
        let mut client = connect(server.db_url()).await.unwrap();
        let shape = Shape {
            graph: ONE_STEP_GRAPH,
            operation: OPERATION,
            label: LABEL,
            worker: "bench-poller",
        };
        seed_ready(&mut client, &shape, ONE_STEP_NODE, 2)
            .await
            .unwrap();

        let workflows = rows(&client, WORKFLOWS, &[&ONE_STEP_GRAPH]).await;
        assert_eq!(workflows.len(), 3);
        assert_eq!(workflows[0]["status"], "running");
        assert_eq!(workflows[1], workflows[0]);
        assert_eq!(workflows[2], workflows[0]);
        let ids = ids(&client, ONE_STEP_GRAPH).await;
        let all: Option<&str> = None;
        let made_jobs = rows(&client, JOBS, &[&ids[0]]).await;
        assert_eq!(made_jobs.len(), 1);
        assert_eq!(made_jobs[0]["state"], "ready");
        assert_eq!(made_jobs[0]["key_ok"], true);
        assert_eq!(made_jobs[0]["is_current"], true);
        let made_events = rows(&client, EVENTS, &[&ids[0], &all]).await;
        assert_eq!(made_events.len(), 2);
        for id in &ids[1..] {
            assert_eq!(rows(&client, JOBS, &[id]).await, made_jobs);
            assert_eq!(rows(&client, EVENTS, &[id, &all]).await, made_events);
        }
    }

    #[tokio::test]
    async fn seeded_history_looks_like_completed_chains() {
        let server = TestServer::start().await;
        let steps = 3;
        workloads::put_graphs(&server.grpc_url(), steps)
            .await
            .unwrap();
        let chain = Batch {
            graph: CHAIN_GRAPH,
            count: 1,
            steps,
            concurrency: 1,
        };
        workloads::run_batch(&server.grpc_url(), &chain)
            .await
            .unwrap();
        let mut client = connect(server.db_url()).await.unwrap();
        let shape = Shape {
            graph: CHAIN_GRAPH,
            operation: OPERATION,
            label: LABEL,
            worker: "bench-worker",
        };
        let seeded = seed_history(&mut client, &shape, steps, 5).await.unwrap();
        assert_eq!(seeded, 2, "5 jobs round up to 2 workflows of 3 steps");

        let workflows = rows(&client, WORKFLOWS, &[&CHAIN_GRAPH]).await;
        assert_eq!(workflows.len(), 3);
        // The seeded history is older than the workflow the server ran.
        assert_eq!(workflows[2]["status"], "completed");
        let ids = ids(&client, CHAIN_GRAPH).await;
        let completed = Some("job_completed");
        let made_jobs = rows(&client, JOBS, &[&ids[2]]).await;
        assert_eq!(made_jobs.len(), 3);
        assert!(made_jobs.iter().all(|job| job["key_ok"] == true));
        assert_eq!(made_jobs[2]["is_current"], true);
        let made_events = rows(&client, EVENTS, &[&ids[2], &completed]).await;
        assert_eq!(made_events.len(), 3);
        for (id, workflow) in ids.iter().zip(&workflows).take(2) {
            assert_eq!(*workflow, workflows[2]);
            assert_eq!(rows(&client, JOBS, &[id]).await, made_jobs);
            assert_eq!(rows(&client, EVENTS, &[id, &completed]).await, made_events);
        }
    }
}
