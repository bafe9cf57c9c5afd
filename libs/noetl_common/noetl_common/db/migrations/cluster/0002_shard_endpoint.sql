-- Where each shard can be reached, recorded by the shard at start-up, so the router, the outbox
-- publisher and the projector find shards added to a running fleet without a restart.
CREATE TABLE noetl.shard_endpoint (
    shard_index  integer     PRIMARY KEY CHECK (shard_index BETWEEN 0 AND 1023),
    url          text        NOT NULL CHECK (url ~ '^https?://'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
