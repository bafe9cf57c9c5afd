-- Which events the read models already hold: projection is exactly once whatever the delivery
-- order (a crashed projector's batch comes back after newer events). Rows older than a day are
-- purged by the reaper; a redelivery that late would need a rebuild anyway.
CREATE TABLE IF NOT EXISTS noetl.projected_event (
    event_id      bigint      PRIMARY KEY,
    execution_id  bigint      NOT NULL,
    projected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projected_event_age_brin ON noetl.projected_event USING brin (projected_at);
