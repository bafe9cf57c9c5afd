-- Per-shard schema: everything keyed by an execution this shard owns.
-- Ids (execution_id, event_id, command_id, outbox id) are app-minted snowflakes, shard-affine;
-- there are no sequences or id-generating defaults. No foreign keys to the cluster database
-- (catalog lives elsewhere) nor between shards (a parent execution may live on another shard).

CREATE SCHEMA IF NOT EXISTS noetl;

-- One row per execution: identity, lifecycle and the engine's compact state, updated in the
-- same transaction as the event that changed it (the event log stays the source of truth).
CREATE TABLE noetl.execution (
    execution_id         bigint      PRIMARY KEY,
    catalog_id           bigint      NOT NULL,
    path                 text        NOT NULL,
    version              integer     NOT NULL,
    status               text        NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    parent_execution_id  bigint,
    parent_command_id    bigint,                 -- the parent's command that started this child
    workload             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Engine state (compact, incrementally updated), msgspec-encoded: bytes round-trip exactly
    -- (replay must reproduce them) and skip jsonb parsing on every event.
    state                bytea,
    state_codec          text        NOT NULL DEFAULT 'msgpack' CHECK (state_codec IN ('msgpack', 'json')),
    state_event_id       bigint,                 -- last event folded into `state`
    last_event_id        bigint,
    last_event_type      text,
    last_step            text,
    result               jsonb,
    error                text,
    requested_by         text,
    meta                 jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    ended_at             timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_listing_idx ON noetl.execution (created_at DESC, execution_id DESC);
CREATE INDEX execution_status_idx ON noetl.execution (status, created_at DESC)
    WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX execution_parent_idx ON noetl.execution (parent_execution_id)
    WHERE parent_execution_id IS NOT NULL;
CREATE INDEX execution_path_idx ON noetl.execution (path, created_at DESC);

-- The append-only event log. (execution_id, event_id) pages one execution's events; event_id is
-- also unique on its own so a re-sent event is recognised whatever execution it claims.
CREATE TABLE noetl.event (
    execution_id         bigint      NOT NULL,
    event_id             bigint      NOT NULL,
    event_type           text        NOT NULL,
    node_name            text,                   -- the step (or playbook path / 'workflow')
    node_type            text,
    status               text,
    catalog_id           bigint,
    parent_event_id      bigint,
    parent_execution_id  bigint,
    command_id           bigint,                 -- the command this event belongs to, if any
    worker_id            text,
    attempt              integer,
    iteration            integer,                -- loop iteration index, if any
    duration_ms          double precision,
    payload              jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- {result, error, context, ...}
    error                text,                   -- copied out of payload for filtering
    meta                 jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, event_id)
);
CREATE UNIQUE INDEX event_event_id_key ON noetl.event (event_id);
CREATE INDEX event_type_idx ON noetl.event (execution_id, event_type, event_id);
CREATE INDEX event_command_idx ON noetl.event (command_id, event_id) WHERE command_id IS NOT NULL;
CREATE INDEX event_created_brin ON noetl.event USING brin (created_at);

-- Append-only: rows may be purged by retention (DELETE) but never rewritten.
CREATE FUNCTION noetl.event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'noetl.event is append-only (event_id %)', OLD.event_id
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER event_no_update BEFORE UPDATE ON noetl.event
    FOR EACH ROW EXECUTE FUNCTION noetl.event_is_append_only();

-- One row per issued command; command_id is the event_id of its `command.issued` event.
-- A claim is a lease: CLAIMED/RUNNING rows whose lease expired may be re-issued by a reaper.
CREATE TABLE noetl.command (
    command_id           bigint      PRIMARY KEY,
    execution_id         bigint      NOT NULL,
    catalog_id           bigint,
    step                 text        NOT NULL,
    tool_kind            text        NOT NULL,
    pool                 text,                   -- worker pool the notification is routed to
    iteration            integer,                -- loop iteration index, if any
    context              jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- rendered tool config, input, ...
    status               text        NOT NULL DEFAULT 'ISSUED'
        CHECK (status IN ('ISSUED', 'CLAIMED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    attempt              integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_attempts         integer     NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    worker_id            text,
    lease_expires_at     timestamptz,
    heartbeat_at         timestamptz,
    claimed_at           timestamptz,
    started_at           timestamptz,
    completed_at         timestamptz,
    result               jsonb,
    error                text,
    meta                 jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_execution_idx ON noetl.command (execution_id, step);
CREATE INDEX command_open_idx ON noetl.command (execution_id, status)
    WHERE status IN ('ISSUED', 'CLAIMED', 'RUNNING');
CREATE INDEX command_lease_idx ON noetl.command (lease_expires_at)
    WHERE status IN ('CLAIMED', 'RUNNING');

-- Transactional outbox: written in the same transaction as what it announces; the publisher
-- claims rows with a lease (claim_expires_at), so a crashed publisher's rows come back.
-- 'failed' means "last attempt failed, retry at available_at"; 'published' is final.
CREATE TABLE noetl.outbox (
    id                   bigint      PRIMARY KEY,   -- also the JetStream Nats-Msg-Id (dedupe)
    execution_id         bigint,
    event_id             bigint,
    subject              text        NOT NULL,
    payload              jsonb       NOT NULL,
    headers              jsonb,
    status               text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'claimed', 'published', 'failed')),
    attempts             integer     NOT NULL DEFAULT 0,
    available_at         timestamptz NOT NULL DEFAULT now(),   -- next attempt not before
    claimed_by           text,
    claim_expires_at     timestamptz,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    published_at         timestamptz
);
CREATE INDEX outbox_ready_idx ON noetl.outbox (available_at, id)
    WHERE status IN ('pending', 'failed');
CREATE INDEX outbox_claimed_idx ON noetl.outbox (claim_expires_at)
    WHERE status = 'claimed';

-- Execution variables (/api/vars and engine-computed values).
CREATE TABLE noetl.transient (
    execution_id         bigint      NOT NULL,
    name                 text        NOT NULL,
    value                jsonb       NOT NULL,
    var_type             text        NOT NULL DEFAULT 'user_defined'
        CHECK (var_type IN ('user_defined', 'step_result', 'computed', 'iterator_state')),
    source_step          text,
    access_count         integer     NOT NULL DEFAULT 0,
    accessed_at          timestamptz,
    expires_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, name)
);

-- Read models folded by the projector from published events. Updates are monotonic:
-- writers only apply an event whose id is greater than last_event_id.
CREATE TABLE noetl.execution_summary (
    execution_id         bigint      PRIMARY KEY,
    catalog_id           bigint,
    path                 text,
    version              integer,
    status               text        NOT NULL,
    parent_execution_id  bigint,
    started_at           timestamptz,
    ended_at             timestamptz,
    duration_ms          double precision,
    event_count          bigint      NOT NULL DEFAULT 0,
    step_count           integer     NOT NULL DEFAULT 0,
    failed_step_count    integer     NOT NULL DEFAULT 0,
    last_event_id        bigint,
    last_event_type      text,
    last_step            text,
    error                text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_summary_listing_idx ON noetl.execution_summary (started_at DESC, execution_id DESC);
CREATE INDEX execution_summary_status_idx ON noetl.execution_summary (status, started_at DESC);
CREATE INDEX execution_summary_path_idx ON noetl.execution_summary (path, started_at DESC);

-- One row per step run: keyed by its command_id, or by the opening event's id for steps the
-- server resolves without a command (skipped, routed).
CREATE TABLE noetl.step_timeline (
    execution_id         bigint      NOT NULL,
    entry_id             bigint      NOT NULL,
    step                 text        NOT NULL,
    tool_kind            text,
    iteration            integer,
    attempt              integer     NOT NULL DEFAULT 1,
    status               text        NOT NULL,
    worker_id            text,
    issued_at            timestamptz,
    started_at           timestamptz,
    ended_at             timestamptz,
    duration_ms          double precision,
    error                text,
    last_event_id        bigint,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, entry_id)
);
CREATE INDEX step_timeline_step_idx ON noetl.step_timeline (execution_id, step, entry_id);
