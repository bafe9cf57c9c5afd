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


async def firsts_for_commands(conn: asyncpg.Connection, execution_id: int, command_ids: list[int],
                              event_types: list[str]) -> dict[tuple[int, str], int]:
    """(command_id, event_type) -> the first such event's id, for re-send detection. A command's
    events are minted after it (its `command.issued` has the command's own id), so this reads the
    execution's log by its key from the oldest command on: the commands' age, not the execution's
    history, bounds it (no index on event.command_id for every event to pay for)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (command_id, event_type) command_id, event_type, event_id FROM noetl.event "
        "WHERE execution_id = $1 AND event_id >= $2 AND command_id = ANY($3::bigint[]) "
        "AND event_type = ANY($4::text[]) ORDER BY command_id, event_type, event_id",
        execution_id, min(command_ids), command_ids, event_types)
    return {(r["command_id"], r["event_type"]): r["event_id"] for r in rows}


# NoETL's per-event `duration` (milliseconds), which its engine writes with each event: a
# step.exit's time since its step's latest step.enter; a *.completed / *.failed event's time since
# the execution began (NoETL means the same but looks up `playbook_initialized`, which never
# matches, so it writes 0); 0 for any other event. Computed on read, from the log itself, so every
# event ever written has it; a duration_ms a writer stored wins.
_DURATION = """coalesce(e.duration_ms, CASE
    WHEN e.event_type = 'step.exit' THEN (
        SELECT 1000 * extract(epoch FROM e.created_at - s.created_at)::float8 FROM noetl.event s
        WHERE s.execution_id = e.execution_id AND s.event_type = 'step.enter'
          AND s.node_name IS NOT DISTINCT FROM e.node_name AND s.event_id < e.event_id
        ORDER BY s.event_id DESC LIMIT 1)
    WHEN e.event_type LIKE '%.completed' OR e.event_type LIKE '%.failed' THEN (
        SELECT 1000 * extract(epoch FROM e.created_at - x.created_at)::float8 FROM noetl.execution x
        WHERE x.execution_id = e.execution_id)
    END, 0) AS duration"""
_VIEW_COLUMNS = ", ".join(f"e.{c}" for c in (*_COLUMNS, "created_at")) + ", " + _DURATION


async def page(pool: asyncpg.Pool, execution_id: int, *, limit: int, offset: int = 0,
               since_event_id: int | None = None, before_event_id: int | None = None,
               event_type: str | None = None) -> list[asyncpg.Record]:
    """One execution's events newest first, as NoETL pages them: events after `since_event_id`
    (NoETL's filter), before `before_event_id` (the fleet's key for the next, older page: O(page)
    at any history length), or NoETL's page/offset (the skipped rows are read and dropped)."""
    return await pool.fetch(
        f"SELECT {_VIEW_COLUMNS} FROM noetl.event e WHERE e.execution_id = $1 "
        "AND ($2::bigint IS NULL OR e.event_id > $2) AND ($3::bigint IS NULL OR e.event_id < $3) "
        "AND ($4::text IS NULL OR e.event_type = $4) ORDER BY e.event_id DESC LIMIT $5 OFFSET $6",
        execution_id, since_event_id, before_event_id, event_type, limit, offset)


async def log_after(pool: asyncpg.Pool, execution_id: int, after_event_id: int | None,
                    limit: int) -> list[asyncpg.Record]:
    """The log in order after a key (the SSE stream's replay and follow), with the same columns."""
    return await pool.fetch(
        f"SELECT {_VIEW_COLUMNS} FROM noetl.event e WHERE e.execution_id = $1 "
        "AND ($2::bigint IS NULL OR e.event_id > $2) ORDER BY e.event_id LIMIT $3",
        execution_id, after_event_id, limit)


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


async def count(pool: asyncpg.Pool, execution_id: int, event_type: str | None = None, *,
                since_event_id: int | None = None, from_event_id: int | None = None) -> int:
    """Events of an execution (of a type; after `since_event_id`; at or after `from_event_id`)."""
    return await pool.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1 "
                               "AND ($2::text IS NULL OR event_type = $2) AND ($3::bigint IS NULL OR event_id > $3) "
                               "AND ($4::bigint IS NULL OR event_id >= $4)",
                               execution_id, event_type, since_event_id, from_event_id)
