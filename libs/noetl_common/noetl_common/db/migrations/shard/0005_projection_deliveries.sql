-- Projection marks deliveries, not events: a published message carries all the events of one
-- shard transaction, JetStream redelivers whole messages, so one marker per message id is enough
-- to fold each message exactly once whatever the delivery order. Rows older than a day are purged
-- by the reaper; a redelivery that late would need a rebuild anyway.
CREATE TABLE IF NOT EXISTS noetl.projected_delivery (
    delivery_id   bigint      PRIMARY KEY,
    projected_at  timestamptz NOT NULL DEFAULT now()
);
-- Events already projected stay projected: an old-format message (one event, marked under its
-- event id) redelivered across the upgrade is still skipped.
INSERT INTO noetl.projected_delivery (delivery_id, projected_at)
SELECT event_id, projected_at FROM noetl.projected_event
ON CONFLICT DO NOTHING;
DROP TABLE noetl.projected_event;
-- Markers are inserted in time order, so a BRIN index serves the purge's age range.
CREATE INDEX IF NOT EXISTS projected_delivery_age_brin ON noetl.projected_delivery USING brin (projected_at);
