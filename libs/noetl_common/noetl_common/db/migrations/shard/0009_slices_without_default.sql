-- The per-execution tables keep slices only, no default partition. Retention detaches a slice
-- with DETACH PARTITION ... CONCURRENTLY, which locks the parent in SHARE UPDATE EXCLUSIVE mode
-- (writers and readers go on) and which Postgres refuses while a table has a default partition;
-- a plain DETACH locks the parent against every writer. Creating a slice ahead also gets cheaper:
-- ATTACH no longer locks and scans the default partition every writer's plan includes.
--
-- The shard creates slices ahead of time (store.partitions.ensure_ahead, before it serves and
-- then from a loop), so a row past them means that loop stopped for the whole lead time: the
-- write now fails loudly ("no partition of relation ... found for row") instead of landing in a
-- default partition that would then block creating its slice.
--
-- Rows already in a default partition (ids past every slice) keep their place: each table's
-- default becomes a slice of its own from the lowest such id to the next whole second past the
-- highest, the same bounds in every table, named as the shard names slices (p<UTC start>); the
-- shard's next slices start where it ends.

DO $$
DECLARE
    tables text[] := ARRAY['event', 'command', 'transient', 'execution_summary', 'step_timeline',
                           'step_result', 'loop_items', 'loop_result', 'result_store', 'execution'];
    t text;
    lo bigint;
    top bigint;
    hi bigint;
    name text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('SELECT least($1, min(execution_id)), greatest($2, max(execution_id)) FROM noetl.%I',
                       t || '_default') INTO lo, top USING lo, top;
    END LOOP;
    IF lo IS NOT NULL THEN
        -- snowflakes: ms since 2024-01-01 above 22 bits (noetl_common.ids)
        name := 'p' || to_char(to_timestamp(((lo >> 22) + 1704067200000) / 1000.0) AT TIME ZONE 'UTC',
                               'YYYYMMDD"t"HH24MISS');
        hi := ((((top >> 22) + 1704067200000) / 1000 + 1) * 1000 - 1704067200000) << 22;
    END IF;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('ALTER TABLE noetl.%I DETACH PARTITION noetl.%I', t, t || '_default');
        IF lo IS NULL THEN
            EXECUTE format('DROP TABLE noetl.%I', t || '_default');
        ELSE
            EXECUTE format('ALTER TABLE noetl.%I RENAME TO %I', t || '_default', t || '_' || name);
            EXECUTE format('ALTER TABLE noetl.%I ATTACH PARTITION noetl.%I FOR VALUES FROM (%s) TO (%s)',
                           t, t || '_' || name, lo, hi);
        END IF;
    END LOOP;
END;
$$;
