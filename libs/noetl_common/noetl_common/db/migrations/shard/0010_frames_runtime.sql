-- NoETL's frames runtime (issue 23): a cursor loop with `spec.frame.process: frame` opens one stage
-- per loop run (noetl.stage, kind 'loop'); each claim batch is a frame of it (noetl.frame) with a
-- lease, an owner worker and its command. Columns are NoETL's (schema_ddl.sql); the differences:
--   * both tables are per-execution history, so they are range-partitioned by execution_id like the
--     others (0007): keyed by (execution_id, id), with the id indexed on its own in every slice (a
--     route names only the stage or frame), no foreign keys (a partitioned key needs the partition
--     key; retention drops the whole slice of every table together);
--   * NoETL's unique claim key (stage, worker slot, frame index) carries execution_id for the same
--     reason (a stage's frames share its execution, so it is the same key).
-- noetl.event gets NoETL's nullable stage_id / frame_id columns (catalog-only changes). No index on
-- frame_id: building one here would read every slice of the log at the shard's start (migrations run
-- before it serves), the downtime a shard with history must not have (`noetl_ops history prepare`);
-- NoETL's check `noetl.frame f LEFT JOIN noetl.event e ON e.frame_id = f.frame_id` scans the log.

ALTER TABLE noetl.event ADD COLUMN IF NOT EXISTS stage_id BIGINT;
ALTER TABLE noetl.event ADD COLUMN IF NOT EXISTS frame_id BIGINT;

CREATE TABLE IF NOT EXISTS noetl.stage (
    stage_id        BIGINT NOT NULL,
    execution_id    BIGINT NOT NULL,
    parent_event_id BIGINT,
    parent_stage_id BIGINT,
    loop_event_id   TEXT,
    opened_event_id BIGINT,
    closed_event_id BIGINT,
    kind            TEXT NOT NULL CHECK (kind IN ('loop', 'fanout', 'reduce')),
    step_name       TEXT NOT NULL,
    dsl_ref         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'OPEN',
    frame_policy    JSONB NOT NULL DEFAULT '{}'::jsonb,
    tenant_id       TEXT NOT NULL DEFAULT 'default',
    organization_id TEXT NOT NULL DEFAULT 'default',
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, stage_id)
) PARTITION BY RANGE (execution_id);
CREATE INDEX IF NOT EXISTS stage_id_pidx ON noetl.stage (stage_id);

CREATE TABLE IF NOT EXISTS noetl.frame (
    frame_id          BIGINT NOT NULL,
    stage_id          BIGINT NOT NULL,
    execution_id      BIGINT NOT NULL,
    parent_frame_id   BIGINT,
    command_id        BIGINT,
    claimed_event_id  BIGINT,
    terminal_event_id BIGINT,
    cursor            JSONB NOT NULL DEFAULT '{}'::jsonb,
    row_count         INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL DEFAULT 'PENDING',
    owner_worker      TEXT,
    lease_until       TIMESTAMPTZ,
    output_ref        JSONB,
    events_emitted    INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    tenant_id         TEXT NOT NULL DEFAULT 'default',
    organization_id   TEXT NOT NULL DEFAULT 'default',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at      TIMESTAMPTZ,
    PRIMARY KEY (execution_id, frame_id)
) PARTITION BY RANGE (execution_id);
CREATE INDEX IF NOT EXISTS frame_id_pidx ON noetl.frame (frame_id);
-- A claim looks for the stage's open frames (pending, or leased and maybe lapsed).
CREATE INDEX IF NOT EXISTS frame_open_pidx ON noetl.frame (stage_id, status, lease_until)
    WHERE status IN ('PENDING', 'CLAIMED', 'RUNNING');
CREATE UNIQUE INDEX IF NOT EXISTS frame_claim_key_pidx
    ON noetl.frame (execution_id, stage_id, (cursor->>'worker_slot_id'), (cursor->>'frame_index'))
    WHERE cursor ? 'worker_slot_id' AND cursor ? 'frame_index';

-- The new tables get a partition for every slice the execution table has, with the same bounds
-- (the shard creates later slices in every table, store.partitions.TABLES).
DO $$
DECLARE
    t text;
    part record;
BEGIN
    FOREACH t IN ARRAY ARRAY['stage', 'frame'] LOOP
        FOR part IN
            SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_namespace n ON n.oid = p.relnamespace
            WHERE n.nspname = 'noetl' AND p.relname = 'execution'
        LOOP
            EXECUTE format('CREATE TABLE IF NOT EXISTS noetl.%I PARTITION OF noetl.%I %s',
                           t || substr(part.name, length('execution') + 1), t, part.bound);
        END LOOP;
    END LOOP;
END;
$$;
