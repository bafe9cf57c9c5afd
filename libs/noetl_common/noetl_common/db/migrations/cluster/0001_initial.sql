-- Cluster-wide schema, shared by every shard: catalog, secrets, worker pools, the shard map.
-- Ids are app-minted snowflakes; secrets are stored only as AES-256-GCM ciphertext (base64 text).

CREATE SCHEMA IF NOT EXISTS noetl;

-- Registered resources (playbooks, agents, ...). A path's versions are 1, 2, 3...; a register
-- takes a per-path advisory lock so concurrent registers never collide (UNIQUE backs it up).
CREATE TABLE noetl.catalog (
    catalog_id   bigint      PRIMARY KEY,
    path         text        NOT NULL,
    version      integer     NOT NULL CHECK (version >= 1),
    kind         text        NOT NULL,            -- as the document says: Playbook, Agent, ...
    content      text        NOT NULL,            -- the YAML (re-dumped only when an end step was added)
    payload      json,                            -- the parsed document, normalised; json (not jsonb)
                                                  -- keeps key order, which `set:` semantics need
    layout       jsonb,
    meta         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    archived_at  timestamptz,
    UNIQUE (path, version)
);
CREATE INDEX catalog_kind_idx ON noetl.catalog (lower(kind), path, version DESC);

CREATE TABLE noetl.credential (
    id              bigint      PRIMARY KEY,
    name            text        NOT NULL UNIQUE,
    type            text        NOT NULL,
    data_encrypted  text        NOT NULL,         -- AES-256-GCM, associated data = name
    meta            jsonb,
    tags            text[],
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credential_type_idx ON noetl.credential (type);

-- Cached tokens / secrets scoped to a catalog entry and optionally an execution.
-- cache_key: global `<name>:<catalog_id>:global`, local `<name>:<catalog_id>:<execution_id>`,
-- shared `<name>:<catalog_id>:shared:<execution_id>`.
CREATE TABLE noetl.keychain (
    cache_key              text        PRIMARY KEY,
    keychain_name          text        NOT NULL,
    catalog_id             bigint      NOT NULL,
    credential_type        text,
    cache_type             text        NOT NULL DEFAULT 'token' CHECK (cache_type IN ('token', 'secret')),
    scope_type             text        NOT NULL DEFAULT 'global' CHECK (scope_type IN ('global', 'local', 'shared')),
    execution_id           bigint,
    parent_execution_id    bigint,
    data_encrypted         text        NOT NULL,  -- AES-256-GCM, associated data = cache_key
    renew_config_encrypted text,                  -- may hold secrets too, so encrypted alike
    auto_renew             boolean     NOT NULL DEFAULT false,
    expires_at             timestamptz,           -- NULL = never expires
    access_count           integer     NOT NULL DEFAULT 0,
    accessed_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keychain_catalog_idx ON noetl.keychain (catalog_id, keychain_name);
CREATE INDEX keychain_execution_idx ON noetl.keychain (execution_id) WHERE execution_id IS NOT NULL;
CREATE INDEX keychain_expires_idx ON noetl.keychain (expires_at) WHERE expires_at IS NOT NULL;

-- Worker pools and other runtime components; a re-register is an upsert on (kind, name) and
-- doubles as a heartbeat.
CREATE TABLE noetl.runtime (
    runtime_id    bigint      PRIMARY KEY,
    name          text        NOT NULL,
    kind          text        NOT NULL DEFAULT 'worker_pool'
        CHECK (kind IN ('worker_pool', 'server_api', 'broker')),
    uri           text,
    status        text        NOT NULL DEFAULT 'ready',
    labels        jsonb,
    capabilities  jsonb,
    capacity      integer,
    runtime       jsonb,                          -- {type, pid, hostname, meta}
    heartbeat     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, name)
);
CREATE INDEX runtime_heartbeat_idx ON noetl.runtime (kind, status, heartbeat);

-- Shard map epochs: from effective_from_ms (unix ms) on, new ids spread over shard_count shards.
CREATE TABLE noetl.shard_map (
    effective_from_ms  bigint      PRIMARY KEY CHECK (effective_from_ms >= 0),
    shard_count        integer     NOT NULL CHECK (shard_count BETWEEN 1 AND 1024),
    created_at         timestamptz NOT NULL DEFAULT now()
);
