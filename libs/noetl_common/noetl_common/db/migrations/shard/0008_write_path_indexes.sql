-- Indexes every row written on the step path paid for (an entry per row) that no
-- query needs (issue 24: at equal durability a step's cost is what it writes).
--
-- command (execution_id, step): no query filters commands by step; the key
-- (execution_id, command_id) serves every read by execution.
DROP INDEX IF EXISTS noetl.command_execution_pidx;
-- event (execution_id, event_type, event_id): a read of one execution's log filtered by type (a
-- page or count of one type, the step.enter a step.exit's duration is measured from) walks the
-- key (execution_id, event_id) and filters; every event paid an entry for those rare reads.
DROP INDEX IF EXISTS noetl.event_type_pidx;
-- event (command_id, event_id): only re-send detection read it, off the hot path; it now reads
-- the execution's log by its key from the command's own id on (store.events.firsts_for_commands).
DROP INDEX IF EXISTS noetl.event_command_pidx;
-- event (created_at) BRIN: from the days of purging by age; retention drops whole slices now and
-- no query filters the log by time.
DROP INDEX IF EXISTS noetl.event_created_pbrin;
-- The read models are read by key only: the listing orders and filters on the execution row and
-- joins execution_summary by execution_id; step_timeline is read by (execution_id, entry_id). Their
-- other indexes made every fold pay entries (and every status change a non-HOT update).
DROP INDEX IF EXISTS noetl.execution_summary_listing_pidx;
DROP INDEX IF EXISTS noetl.execution_summary_status_pidx;
DROP INDEX IF EXISTS noetl.execution_summary_path_pidx;
DROP INDEX IF EXISTS noetl.step_timeline_step_pidx;
