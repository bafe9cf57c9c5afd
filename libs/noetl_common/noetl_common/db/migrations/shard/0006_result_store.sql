-- NoETL's result store (`/api/result/*`): large step results kept out of the event log. The event
-- carries a reference (`noetl://execution/<execution_id>/result/<name>/<result_id>`); the data
-- lives here, on the shard that owns the execution (result_id is minted by that shard too).
CREATE TABLE IF NOT EXISTS noetl.result_store (
    result_id     bigint      PRIMARY KEY,
    execution_id  bigint      NOT NULL,
    name          text        NOT NULL,
    scope         text        NOT NULL DEFAULT 'execution'
        CHECK (scope IN ('step', 'execution', 'workflow', 'permanent')),
    store         text        NOT NULL DEFAULT 'db',
    source_step   text,
    data          jsonb,                  -- the stored value itself (a JSON null is stored as NULL)
    bytes         bigint      NOT NULL,   -- size of its JSON text
    sha256        text        NOT NULL,   -- of its JSON text
    correlation   jsonb,
    extracted     jsonb,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- By execution (list, cleanup) and by name within it (latest result of a step).
CREATE INDEX IF NOT EXISTS result_store_execution_idx ON noetl.result_store (execution_id, name, result_id);
