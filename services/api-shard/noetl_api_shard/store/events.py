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
READ_COLUMNS = ", ".join(_COLUMNS) + ", created_at"


async def get(conn: asyncpg.Connection | asyncpg.Pool, event_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {READ_COLUMNS} FROM noetl.event WHERE event_id = $1", event_id)


async def firsts_for_commands(conn: asyncpg.Connection, command_ids: list[int],
                              event_types: list[str]) -> dict[tuple[int, str], int]:
    """(command_id, event_type) -> the first such event's id, for re-send detection (by the
    command index: cost independent of the execution's history)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (command_id, event_type) command_id, event_type, event_id FROM noetl.event "
        "WHERE command_id = ANY($1::bigint[]) AND event_type = ANY($2::text[]) "
        "ORDER BY command_id, event_type, event_id", command_ids, event_types)
    return {(r["command_id"], r["event_type"]): r["event_id"] for r in rows}


async def page(pool: asyncpg.Pool, execution_id: int, *, after_event_id: int | None,
               limit: int, event_type: str | None = None, offset: int = 0) -> list[asyncpg.Record]:
    """One execution's events in log order: keyset-paginated by `after_event_id` (O(page) at any
    history length), or NoETL's page/offset (the skipped rows are read and dropped)."""
    return await pool.fetch(
        f"SELECT {READ_COLUMNS} FROM noetl.event WHERE execution_id = $1 "
        "AND ($2::bigint IS NULL OR event_id > $2) AND ($3::text IS NULL OR event_type = $3) "
        "ORDER BY event_id LIMIT $4 OFFSET $5",
        execution_id, after_event_id, event_type, limit, offset)


async def engine_inputs(pool: asyncpg.Pool, execution_id: int, page_size: int) -> list[asyncpg.Record]:
    """The whole log of an execution, in order, with what a replay reads."""
    rows: list[asyncpg.Record] = []
    after = None
    while True:
        page = await pool.fetch("SELECT event_id, event_type, status, command_id, payload, error FROM noetl.event "
                                "WHERE execution_id = $1 AND ($2::bigint IS NULL OR event_id > $2) "
                                "ORDER BY event_id LIMIT $3", execution_id, after, page_size)
        rows.extend(page)
        if len(page) < page_size:
            return rows
        after = page[-1]["event_id"]


async def count(pool: asyncpg.Pool, execution_id: int, event_type: str | None = None) -> int:
    return await pool.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1 "
                               "AND ($2::text IS NULL OR event_type = $2)", execution_id, event_type)


async def count_after(pool: asyncpg.Pool, execution_id: int, after_event_id: int, event_type: str | None) -> int:
    return await pool.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1 AND event_id > $2 "
                               "AND ($3::text IS NULL OR event_type = $3)", execution_id, after_event_id, event_type)
