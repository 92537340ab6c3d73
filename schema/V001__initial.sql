-- Rondo's initial schema. Forward-only: once applied, this file is never edited.
--
-- Hot paths and their indexes:
--   claiming ready jobs per operation   -> jobs_ready (partial, state = 'ready')
--   finding expired leases and clocks   -> jobs_expiry (partial, state = 'active')
--   the operator inbox                  -> jobs_inbox (partial, human jobs)
--   listing workflows by status / graph -> workflows_status_created, workflows_graph_created
--   deadlines and delayed starts        -> workflows_deadline, workflows_pending
--   due schedules                       -> schedules_due

CREATE TABLE graphs (
    name        text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    hash        text        NOT NULL,
    -- The definition in the engine's serde form (nodes and edges as ordered lists).
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version),
    UNIQUE (name, hash)
);

CREATE TABLE workflows (
    id               uuid        PRIMARY KEY,
    graph_name       text        NOT NULL,
    graph_version    integer     NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'cancelled', 'stuck')),
    -- NULL once a terminal label completed the workflow.
    current_node     text,
    input            jsonb       NOT NULL,
    vars             jsonb       NOT NULL,
    step_count       integer     NOT NULL DEFAULT 0,
    -- Open retry streaks by source node: {"node": {"label": "...", "count": n}}.
    streaks          jsonb       NOT NULL DEFAULT '{}',
    outcome          text,
    idempotency_key  text        UNIQUE,
    -- Hash of the start request, to tell a repeat from a conflicting reuse of the key.
    request_hash     text,
    schedule_id      text,
    start_at         timestamptz,
    deadline_at      timestamptz,
    incident_reason  text,
    incident_message text,
    incident_node    text,
    incident_label   text,
    incident_at      timestamptz,
    current_job_id   bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    FOREIGN KEY (graph_name, graph_version) REFERENCES graphs (name, version)
) WITH (fillfactor = 80);

CREATE INDEX workflows_created ON workflows (created_at DESC, id DESC);
CREATE INDEX workflows_status_created ON workflows (status, created_at DESC, id DESC);
CREATE INDEX workflows_graph_created ON workflows (graph_name, created_at DESC, id DESC);
CREATE INDEX workflows_deadline ON workflows (deadline_at)
    WHERE status IN ('running', 'stuck') AND deadline_at IS NOT NULL;
CREATE INDEX workflows_pending ON workflows (start_at) WHERE status = 'pending';

CREATE TABLE jobs (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id       uuid        NOT NULL REFERENCES workflows (id),
    node              text        NOT NULL,
    -- NULL for the jobs of human nodes, which wait in the operator inbox.
    operation         text,
    state             text        NOT NULL
        CHECK (state IN ('ready', 'active', 'completed', 'cancelled')),
    attempt           integer     NOT NULL,
    idempotency_key   text        NOT NULL,
    -- Node the workflow came from when it entered this one.
    from_node         text,
    available_at      timestamptz NOT NULL DEFAULT now(),
    -- The node's timeout: lease of an attempt, or a human node's reminder clock.
    timeout_ms        bigint,
    heartbeat_ms      bigint,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    worker            text,
    progress_percent  integer,
    progress_message  text,
    label             text,
    output            jsonb,
    -- Who ended the job: a worker identity, `operator:<name>` or `engine`.
    ended_by          text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    leased_at         timestamptz,
    ended_at          timestamptz
) WITH (fillfactor = 70);

CREATE INDEX jobs_ready ON jobs (operation, available_at, id) WHERE state = 'ready';
CREATE INDEX jobs_expiry ON jobs (lease_expires_at) WHERE state = 'active';
CREATE INDEX jobs_inbox ON jobs (created_at, id) WHERE state = 'active' AND operation IS NULL;
CREATE INDEX jobs_workflow ON jobs (workflow_id, id);

CREATE TABLE events (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id  uuid        NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text        NOT NULL,
    node         text,
    label        text,
    job_id       bigint,
    attempt      integer,
    actor        text        NOT NULL,
    message      text,
    data         jsonb
);

CREATE INDEX events_workflow ON events (workflow_id, id);

CREATE TABLE schedules (
    id               text        PRIMARY KEY,
    graph_name       text        NOT NULL,
    graph_version    integer     NOT NULL DEFAULT 0,
    input            jsonb       NOT NULL,
    cron             text,
    time_zone        text,
    interval_ms      bigint,
    overlap          text        NOT NULL CHECK (overlap IN ('skip', 'allow')),
    paused           boolean     NOT NULL DEFAULT false,
    next_fire_at     timestamptz NOT NULL,
    last_fired_at    timestamptz,
    last_workflow_id uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_ms IS NULL))
);

CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
