"""noetl.runtime (cluster DB): worker pools. A register is an upsert that also beats the heart."""

from __future__ import annotations

from typing import Any

import asyncpg

WORKER_POOL = "worker_pool"
_COLUMNS = "runtime_id, name, kind, uri, status, labels, capabilities, capacity, runtime, heartbeat, created_at, updated_at"


async def register(pool: asyncpg.Pool, *, new_id: int, name: str, status: str, uri: str | None,
                   labels: Any, capabilities: Any, capacity: int | None,
                   runtime: dict[str, Any]) -> tuple[asyncpg.Record, bool]:
    """Upsert on (kind, name); returns (row, created)."""
    row = await pool.fetchrow(
        f"""INSERT INTO noetl.runtime (runtime_id, name, kind, uri, status, labels, capabilities, capacity,
                runtime, heartbeat)
            VALUES ($1, $2, '{WORKER_POOL}', $3, $4, $5, $6, $7, $8, now())
            ON CONFLICT (kind, name) DO UPDATE SET
                uri = EXCLUDED.uri, status = EXCLUDED.status, labels = EXCLUDED.labels,
                capabilities = EXCLUDED.capabilities, capacity = EXCLUDED.capacity,
                runtime = EXCLUDED.runtime, heartbeat = now(), updated_at = now()
            RETURNING {_COLUMNS}, (xmax = 0) AS created""",
        new_id, name, uri, status, labels, capabilities, capacity, runtime)
    return row, row["created"]


async def heartbeat(pool: asyncpg.Pool, name: str) -> asyncpg.Record | None:
    """Refresh a registered pool; an offline pool that beats again is back to ready."""
    return await pool.fetchrow(
        f"""UPDATE noetl.runtime SET heartbeat = now(), updated_at = now(),
                status = CASE WHEN status = 'offline' THEN 'ready' ELSE status END
            WHERE kind = '{WORKER_POOL}' AND name = $1 RETURNING {_COLUMNS}""", name)


async def deregister(pool: asyncpg.Pool, name: str) -> asyncpg.Record | None:
    """Mark offline (the row stays for history; a later register revives it)."""
    return await pool.fetchrow(
        f"""UPDATE noetl.runtime SET status = 'offline', updated_at = now()
            WHERE kind = '{WORKER_POOL}' AND name = $1 RETURNING {_COLUMNS}""", name)


async def list_pools(pool: asyncpg.Pool, *, runtime: str | None, status: str | None) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT {_COLUMNS} FROM noetl.runtime
            WHERE kind = '{WORKER_POOL}'
              AND ($1::text IS NULL OR runtime->>'type' = $1)
              AND ($2::text IS NULL OR status = $2)
            ORDER BY name""", runtime, status)
