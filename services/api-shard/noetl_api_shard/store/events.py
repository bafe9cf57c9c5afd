"""noetl.event (shard DB): the append-only log every piece of execution state derives from."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec


class NewEvent(msgspec.Struct, kw_only=True):
    event_id: int
    execution_id: int
    event_type: str
    node_name: str | None = None
    node_type: str | None = None
    status: str | None = None
    catalog_id: int | None = None
    parent_event_id: int | None = None
    parent_execution_id: int | None = None
    command_id: int | None = None
    worker_id: str | None = None
    attempt: int | None = None
    iteration: int | None = None
    duration_ms: float | None = None
    payload: dict[str, Any] = {}
    error: str | None = None
    meta: dict[str, Any] | None = None


_COLUMNS = ("event_id", "execution_id", "event_type", "node_name", "node_type", "status", "catalog_id",
            "parent_event_id", "parent_execution_id", "command_id", "worker_id", "attempt", "iteration",
            "duration_ms", "payload", "error", "meta")
_INSERT = (f"INSERT INTO noetl.event ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) ON CONFLICT DO NOTHING")

READ_COLUMNS = ", ".join(_COLUMNS) + ", created_at"


def _values(event: NewEvent) -> tuple[Any, ...]:
    return tuple(getattr(event, c) for c in _COLUMNS)


async def insert(conn: asyncpg.Connection, event: NewEvent) -> bool:
    """True when written; False when this event_id was already in the log (a re-send)."""
    status = await conn.execute(_INSERT, *_values(event))
    return status.endswith(" 1")


async def insert_many(conn: asyncpg.Connection, events: list[NewEvent]) -> None:
    if events:
        await conn.executemany(_INSERT, [_values(e) for e in events])


async def get(conn: asyncpg.Connection | asyncpg.Pool, event_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {READ_COLUMNS} FROM noetl.event WHERE event_id = $1", event_id)


async def find_for_command(conn: asyncpg.Connection, execution_id: int, command_id: int,
                           event_types: tuple[str, ...]) -> asyncpg.Record | None:
    """The first event of one of `event_types` already logged for a command (dedupe of re-sends)."""
    return await conn.fetchrow(
        f"SELECT {READ_COLUMNS} FROM noetl.event WHERE execution_id = $1 AND command_id = $2 "
        "AND event_type = ANY($3::text[]) ORDER BY event_id LIMIT 1",
        execution_id, command_id, list(event_types))


async def page(pool: asyncpg.Pool, execution_id: int, *, after_event_id: int | None,
               limit: int, event_type: str | None = None) -> list[asyncpg.Record]:
    """One execution's events in log order, keyset-paginated (O(page) at any history length)."""
    return await pool.fetch(
        f"SELECT {READ_COLUMNS} FROM noetl.event WHERE execution_id = $1 "
        "AND ($2::bigint IS NULL OR event_id > $2) AND ($3::text IS NULL OR event_type = $3) "
        "ORDER BY event_id LIMIT $4",
        execution_id, after_event_id, event_type, limit)


async def count(pool: asyncpg.Pool, execution_id: int) -> int:
    return await pool.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1", execution_id)
