"""noetl.execution (shard DB): one row per execution, holding the engine's compact state.

The row is the per-execution lock: every event that may advance the engine takes it
FOR UPDATE, so decisions for one execution are serialised while executions run in parallel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

COLUMNS = ("execution_id, catalog_id, path, version, status, parent_execution_id, parent_command_id, "
           "workload, state, state_event_id, last_event_id, last_event_type, last_step, result, error, "
           "requested_by, created_at, started_at, ended_at, updated_at")

_LISTED_COLUMNS = ", ".join(f"e.{c.strip()}" for c in COLUMNS.split(","))  # qualified for the summary join


class NewExecution(msgspec.Struct, kw_only=True):
    execution_id: int
    catalog_id: int
    path: str
    version: int
    workload: dict[str, Any]
    state: Any
    parent_execution_id: int | None = None
    parent_command_id: int | None = None
    requested_by: str | None = None


async def insert(conn: asyncpg.Connection, ex: NewExecution) -> None:
    await conn.execute(
        "INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status, parent_execution_id, "
        "parent_command_id, workload, state, requested_by, started_at) "
        "VALUES ($1,$2,$3,$4,'RUNNING',$5,$6,$7,$8,$9, now())",
        ex.execution_id, ex.catalog_id, ex.path, ex.version, ex.parent_execution_id, ex.parent_command_id,
        ex.workload, ex.state, ex.requested_by)


async def get(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM noetl.execution WHERE execution_id = $1", execution_id)


async def status(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> str | None:
    """Just the status (None: no such execution), without the engine state a full row carries."""
    return await conn.fetchval("SELECT status FROM noetl.execution WHERE execution_id = $1", execution_id)


async def lock(conn: asyncpg.Connection, execution_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM noetl.execution WHERE execution_id = $1 FOR UPDATE", execution_id)


async def save_state(conn: asyncpg.Connection, execution_id: int, *, state: Any, state_event_id: int | None,
                     last_event_id: int | None, last_event_type: str | None, last_step: str | None) -> None:
    await conn.execute(
        "UPDATE noetl.execution SET state = $2, state_event_id = coalesce($3, state_event_id), "
        "last_event_id = coalesce($4, last_event_id), last_event_type = coalesce($5, last_event_type), "
        "last_step = coalesce($6, last_step), updated_at = now() WHERE execution_id = $1",
        execution_id, state, state_event_id, last_event_id, last_event_type, last_step)


async def finish(conn: asyncpg.Connection, execution_id: int, status: str, result: Any, error: str | None) -> bool:
    """Terminal status, exactly once: False when the execution was already terminal."""
    outcome = await conn.execute(
        "UPDATE noetl.execution SET status = $2, result = $3, error = $4, ended_at = now(), updated_at = now() "
        "WHERE execution_id = $1 AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
        execution_id, status, result, error)
    return outcome.endswith(" 1")


async def children(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM noetl.execution WHERE parent_execution_id = $1 ORDER BY execution_id",
        execution_id)


async def page(pool: asyncpg.Pool, *, status: str | None, path: str | None, parent: int | None,
               before: tuple[datetime, int] | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (created_at, execution_id): O(page) at any table size.
    The order and status come from the execution row (read-your-writes: a just-started execution
    is listed at once); step counts and progress come from the projected summary, joined by key."""
    before_ts, before_id = before if before else (None, None)
    return await pool.fetch(
        f"SELECT {_LISTED_COLUMNS}, s.step_count, s.failed_step_count, s.event_count "
        "FROM noetl.execution e LEFT JOIN noetl.execution_summary s USING (execution_id) "
        "WHERE ($1::text IS NULL OR e.status = $1) "
        "AND ($2::text IS NULL OR e.path = $2) AND ($3::bigint IS NULL OR e.parent_execution_id = $3) "
        "AND ($4::timestamptz IS NULL OR (e.created_at, e.execution_id) < ($4, $5::bigint)) "
        "ORDER BY e.created_at DESC, e.execution_id DESC LIMIT $6",
        status, path, parent, before_ts, before_id, limit)
