-- replaces sha256:071f1abb9bcaaf8f174aebfa66118cd7dcafe67fdbd88a8edc5c3e8f648c9ac8
-- (the text before the prepared path: shards that applied it are already partitioned)
-- Per-execution tables range-partitioned by execution_id. A snowflake id starts with its minting
-- time, so a range of execution ids is a time slice: retention drops whole slices (every table's
-- partition of it) instead of deleting rows. Commands, events and results route by their
-- execution's id, so an execution's whole history lives in one slice.
--
-- Migration of a shard that has data: each existing table is renamed to <table>_p0 and attached
-- as the partition of every id below the moment of the migration (no rows are copied); ATTACH
-- reads it once to prove the bound, and the keys that now include execution_id are indexed on it.
-- A shard prepared online before (`noetl_ops history prepare`, noetl_common.db.history_prepare)
-- has those indexes built and a validated CHECK (execution_id < bound) on every table, and the
-- bound recorded in noetl.history_prepare: p0 then ends at that bound, ATTACH adopts the indexes
-- and the check proves the partition bound, so nothing is read or built here.
-- The shard creates later slices itself, ahead of time (store.partitions); rows for a slice not
-- created yet land in <table>_default, which the shard reports (it should stay empty).
--
-- Keys: a primary key of a partitioned table must contain execution_id, so command and
-- result_store are keyed by (execution_id, id), and event_id, command_id, result_id stay indexed
-- on their own (a lookup by one of them alone probes each live partition's index once).

CREATE FUNCTION noetl.partition_boundary_now() RETURNS bigint LANGUAGE sql AS $$
    -- The snowflake of this instant with node and sequence 0 (noetl_common.ids: 41 bits of ms
    -- since 2024-01-01 above 22 bits).
    SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1704067200000) << 22)
$$;

-- Renames `tbl` to `tbl`_p0 and builds the partitioned `tbl` in its place with the same columns,
-- defaults and checks; the caller adds keys and indexes, then noetl.attach_legacy.
CREATE FUNCTION noetl.partition_like(tbl text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE noetl.%I RENAME TO %I', tbl, tbl || '_p0');
    EXECUTE format('CREATE TABLE noetl.%I (LIKE noetl.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE) PARTITION BY RANGE (execution_id)', tbl, tbl || '_p0');
    -- LIKE copied a prepared shard's bound check, which is p0's alone: on the parent it would
    -- refuse every later slice's rows.
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = format('noetl.%I', tbl)::regclass
               AND conname = 'prepared_p0_bound') THEN
        EXECUTE format('ALTER TABLE noetl.%I DROP CONSTRAINT prepared_p0_bound', tbl);
    END IF;
END;
$$;

CREATE FUNCTION noetl.attach_legacy(tbl text, boundary bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p0 regclass := format('noetl.%I', tbl || '_p0')::regclass;
    leftover regclass;
BEGIN
    -- An index build CONCURRENTLY that was interrupted leaves an invalid index, which no query
    -- uses and every write still pays for.
    FOR leftover IN SELECT indexrelid::regclass FROM pg_index WHERE indrelid = p0 AND NOT indisvalid LOOP
        EXECUTE format('DROP INDEX %s', leftover);
    END LOOP;
    -- A prepared key (the unique index the pre-step built under the name ATTACH would give it)
    -- becomes p0's primary key: ATTACH adopts a partition's index for the parent's key only
    -- through a key constraint. No scan: its columns are NOT NULL already.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = p0 AND contype = 'p')
       AND EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(format('noetl.%I', tbl || '_p0_pkey'))
                   AND indrelid = p0 AND indisunique) THEN
        EXECUTE format('ALTER TABLE noetl.%I ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I',
                       tbl || '_p0', tbl || '_p0_pkey', tbl || '_p0_pkey');
    END IF;
    EXECUTE format('ALTER TABLE noetl.%I ATTACH PARTITION noetl.%I FOR VALUES FROM (MINVALUE) TO (%s)',
                   tbl, tbl || '_p0', boundary);
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = p0 AND conname = 'prepared_p0_bound') THEN
        EXECUTE format('ALTER TABLE noetl.%I DROP CONSTRAINT prepared_p0_bound', tbl || '_p0');
    END IF;
    EXECUTE format('CREATE TABLE noetl.%I PARTITION OF noetl.%I DEFAULT', tbl || '_default', tbl);
END;
$$;

DO $$
DECLARE
    boundary bigint := noetl.partition_boundary_now();
BEGIN
    -- Prepared online: p0 ends at the bound every table's validated check proves.
    IF to_regclass('noetl.history_prepare') IS NOT NULL THEN
        SELECT coalesce(max(bound) FILTER (WHERE ready), boundary) INTO boundary FROM noetl.history_prepare;
    END IF;

    -- execution
    PERFORM noetl.partition_like('execution');
    ALTER TABLE noetl.execution ADD PRIMARY KEY (execution_id);
    CREATE INDEX execution_listing_pidx ON noetl.execution (created_at DESC, execution_id DESC);
    CREATE INDEX execution_status_listing_pidx ON noetl.execution (status, created_at DESC, execution_id DESC);
    CREATE INDEX execution_parent_pidx ON noetl.execution (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
    CREATE INDEX execution_path_pidx ON noetl.execution (path, created_at DESC);
    PERFORM noetl.attach_legacy('execution', boundary);

    -- event: the append-only trigger moves to the parent (it is cloned onto every partition)
    DROP TRIGGER event_no_update ON noetl.event;
    PERFORM noetl.partition_like('event');
    ALTER TABLE noetl.event ADD PRIMARY KEY (execution_id, event_id);
    CREATE INDEX event_id_pidx ON noetl.event (event_id);
    CREATE INDEX event_type_pidx ON noetl.event (execution_id, event_type, event_id);
    CREATE INDEX event_command_pidx ON noetl.event (command_id, event_id) WHERE command_id IS NOT NULL;
    CREATE INDEX event_created_pbrin ON noetl.event USING brin (created_at);
    CREATE INDEX event_batch_key_pidx ON noetl.event (execution_id, (meta->>'idempotency_key'))
        WHERE event_type = 'batch.accepted';
    -- the old unique event_id index would only duplicate event_id_pidx
    DROP INDEX noetl.event_event_id_key;
    PERFORM noetl.attach_legacy('event', boundary);
    CREATE TRIGGER event_no_update BEFORE UPDATE ON noetl.event
        FOR EACH ROW EXECUTE FUNCTION noetl.event_is_append_only();

    -- command: keyed by (execution_id, command_id); the old key on command_id alone goes
    PERFORM noetl.partition_like('command');
    ALTER TABLE noetl.command_p0 DROP CONSTRAINT command_pkey;
    ALTER TABLE noetl.command ADD PRIMARY KEY (execution_id, command_id);
    CREATE INDEX command_id_pidx ON noetl.command (command_id);
    CREATE INDEX command_execution_pidx ON noetl.command (execution_id, step);
    CREATE INDEX command_open_pidx ON noetl.command (execution_id, status)
        WHERE status IN ('ISSUED', 'CLAIMED', 'RUNNING');
    CREATE INDEX command_lease_pidx ON noetl.command (lease_expires_at) WHERE status IN ('CLAIMED', 'RUNNING');
    PERFORM noetl.attach_legacy('command', boundary);

    PERFORM noetl.partition_like('transient');
    ALTER TABLE noetl.transient ADD PRIMARY KEY (execution_id, name);
    PERFORM noetl.attach_legacy('transient', boundary);

    PERFORM noetl.partition_like('execution_summary');
    ALTER TABLE noetl.execution_summary ADD PRIMARY KEY (execution_id);
    CREATE INDEX execution_summary_listing_pidx ON noetl.execution_summary (started_at DESC, execution_id DESC);
    CREATE INDEX execution_summary_status_pidx ON noetl.execution_summary (status, started_at DESC);
    CREATE INDEX execution_summary_path_pidx ON noetl.execution_summary (path, started_at DESC);
    PERFORM noetl.attach_legacy('execution_summary', boundary);

    PERFORM noetl.partition_like('step_timeline');
    ALTER TABLE noetl.step_timeline ADD PRIMARY KEY (execution_id, entry_id);
    CREATE INDEX step_timeline_step_pidx ON noetl.step_timeline (execution_id, step, entry_id);
    PERFORM noetl.attach_legacy('step_timeline', boundary);

    PERFORM noetl.partition_like('step_result');
    ALTER TABLE noetl.step_result ADD PRIMARY KEY (execution_id, step);
    PERFORM noetl.attach_legacy('step_result', boundary);

    PERFORM noetl.partition_like('loop_items');
    ALTER TABLE noetl.loop_items ADD PRIMARY KEY (execution_id, step, run, item_offset);
    PERFORM noetl.attach_legacy('loop_items', boundary);

    PERFORM noetl.partition_like('loop_result');
    ALTER TABLE noetl.loop_result ADD PRIMARY KEY (execution_id, step, run, idx);
    PERFORM noetl.attach_legacy('loop_result', boundary);

    -- result_store: keyed by (execution_id, result_id); a reference names both
    PERFORM noetl.partition_like('result_store');
    ALTER TABLE noetl.result_store_p0 DROP CONSTRAINT result_store_pkey;
    ALTER TABLE noetl.result_store ADD PRIMARY KEY (execution_id, result_id);
    CREATE INDEX result_store_execution_pidx ON noetl.result_store (execution_id, name, result_id);
    PERFORM noetl.attach_legacy('result_store', boundary);
END;
$$;

DROP FUNCTION noetl.partition_like(text);
DROP FUNCTION noetl.attach_legacy(text, bigint);
DROP TABLE IF EXISTS noetl.history_prepare;

-- Retention's record: one row per run (what it removed, how long it held locks).
CREATE TABLE IF NOT EXISTS noetl.retention_run (
    started_at    timestamptz PRIMARY KEY DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    dropped       jsonb       NOT NULL DEFAULT '[]'::jsonb,   -- slices removed: name, bounds, rows, archive
    kept          jsonb       NOT NULL DEFAULT '[]'::jsonb,   -- slices past their age kept, and why
    lock_ms       double precision NOT NULL DEFAULT 0,        -- longest time a parent table was locked
    error         text
);
