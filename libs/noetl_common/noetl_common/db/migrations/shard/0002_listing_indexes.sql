-- Listing by any status (FAILED among many COMPLETED, say) is keyset-paginated too: the partial
-- index only covered open executions.
DROP INDEX IF EXISTS noetl.execution_status_idx;
CREATE INDEX IF NOT EXISTS execution_status_listing_idx
    ON noetl.execution (status, created_at DESC, execution_id DESC);
