-- The lean hot path: a step transition is one statement of writes.

-- Bumped on every state write: the shard's in-memory copy of an execution's results and loop data
-- is valid only while its version matches the row's.
ALTER TABLE noetl.execution ADD COLUMN IF NOT EXISTS state_version bigint NOT NULL DEFAULT 0;
-- The worker pool the execute request named (NoETL's `execution_pool`); commands of the execution
-- go there, before any rule by path.
ALTER TABLE noetl.execution ADD COLUMN IF NOT EXISTS execution_pool text;

-- Step results and loop data live in rows of their own, appended as they happen, so the engine
-- state written on every event stays small however long the history.
CREATE TABLE IF NOT EXISTS noetl.step_result (
    execution_id  bigint      NOT NULL,
    step          text        NOT NULL,
    result        jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, step)
);

-- A loop's collection, in chunks (a cursor loop appends one per frame); `run` tells apart
-- successive runs of the same loop step.
CREATE TABLE IF NOT EXISTS noetl.loop_items (
    execution_id  bigint  NOT NULL,
    step          text    NOT NULL,
    run           integer NOT NULL,
    item_offset   integer NOT NULL,
    items         jsonb   NOT NULL,
    PRIMARY KEY (execution_id, step, run, item_offset)
);

CREATE TABLE IF NOT EXISTS noetl.loop_result (
    execution_id  bigint  NOT NULL,
    step          text    NOT NULL,
    run           integer NOT NULL,
    idx           integer NOT NULL,
    result        jsonb,
    PRIMARY KEY (execution_id, step, run, idx)
);

-- The outbox holds only what is not yet published: a published row is deleted, so claims cost
-- the same on a shard that has published millions of messages. A claim reads the oldest rows
-- without leasing them (one publisher serves a shard; a re-publish is dropped by JetStream's
-- duplicate window), so the lease columns go.
DELETE FROM noetl.outbox WHERE status = 'published';
UPDATE noetl.outbox SET status = 'pending' WHERE status = 'claimed';
DROP INDEX IF EXISTS noetl.outbox_published_idx;
DROP INDEX IF EXISTS noetl.outbox_claimed_idx;
DROP INDEX IF EXISTS noetl.outbox_ready_idx;
ALTER TABLE noetl.outbox DROP COLUMN IF EXISTS claimed_by, DROP COLUMN IF EXISTS claim_expires_at;

-- An Idempotency-Key replay is found in O(1), not by scanning the execution's batches.
CREATE INDEX IF NOT EXISTS event_batch_key_idx ON noetl.event (execution_id, (meta->>'idempotency_key'))
    WHERE event_type = 'batch.accepted';

-- A write statement sent without a transaction around it states what must hold (each execution
-- whose state it writes still at the version it was computed from; an Idempotency-Key not answered
-- yet); when that fails this raises, and the whole statement writes nothing.
CREATE OR REPLACE FUNCTION noetl.expect_written(written bigint, expected bigint, known_batch bigint)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    IF known_batch > 0 THEN
        RAISE EXCEPTION 'this Idempotency-Key was answered before' USING ERRCODE = 'NTL02';
    END IF;
    IF written <> expected THEN
        RAISE EXCEPTION 'execution changed by another writer' USING ERRCODE = 'NTL01';
    END IF;
    RETURN 1;
END;
$$;
