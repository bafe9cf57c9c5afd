-- Listing by any status (FAILED among many COMPLETED, say) is keyset-paginated too: the partial
-- index only covered open executions.
DROP INDEX IF EXISTS noetl.execution_status_idx;
CREATE INDEX IF NOT EXISTS execution_status_listing_idx
    ON noetl.execution (status, created_at DESC, execution_id DESC);

-- The reaper deletes published outbox rows past their retention, oldest first.
CREATE INDEX IF NOT EXISTS outbox_published_idx ON noetl.outbox (published_at) WHERE status = 'published';
