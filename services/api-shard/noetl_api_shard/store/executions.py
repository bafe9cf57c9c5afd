"""noetl.execution (shard DB): one row per execution, holding the engine's compact state.

The row is the per-execution lock: every event that may advance the engine takes it
FOR UPDATE, so decisions for one execution are serialised while executions run in parallel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from noetl_common.vocabulary import TERMINAL_STATUSES

TERMINAL = TERMINAL_STATUSES

COLUMNS = ("execution_id, catalog_id, path, version, status, parent_execution_id, parent_command_id, "
           "workload, state_version, last_event_id, last_event_type, last_step, result, error, "
           "requested_by, created_at, started_at, ended_at, updated_at")

_LISTED_COLUMNS = ", ".join(f"e.{c.strip()}" for c in COLUMNS.split(","))  # qualified for the summary join


async def get(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM noetl.execution WHERE execution_id = $1", execution_id)


async def status(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> str | None:
    """Just the status (None: no such execution), without the engine state a full row carries."""
    return await conn.fetchval("SELECT status FROM noetl.execution WHERE execution_id = $1", execution_id)


_LOCK_COLUMNS = ("execution_id, catalog_id, path, status, parent_execution_id, parent_command_id, state, "
                 "state_version, workload, execution_pool")


async def engine_row(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> asyncpg.Record | None:
    """What `lock` returns, without the lock (replay reads it)."""
    return await conn.fetchrow(f"SELECT {_LOCK_COLUMNS} FROM noetl.execution WHERE execution_id = $1", execution_id)


async def lock(conn: asyncpg.Connection, execution_id: int) -> asyncpg.Record | None:
    """The row the engine needs, locked for the caller's transaction."""
    return await conn.fetchrow(
        f"SELECT {_LOCK_COLUMNS} FROM noetl.execution WHERE execution_id = $1 FOR UPDATE", execution_id)


async def lock_for_events(conn: asyncpg.Connection, execution_id: int, idempotency_key: str | None,
                          command_ids: list[int], event_ids: list[int]) -> list[asyncpg.Record]:
    """Everything an event batch needs, in one round trip: the execution (locked), the answer to an
    earlier batch with the same Idempotency-Key, which producer-stamped event ids are already
    logged, and the commands the events name (one row per command; none: one row with NULLs).
    Every writer of a command holds its execution's lock, so the command columns are current."""
    return await conn.fetch(
        f"SELECT {', '.join('e.' + c.strip() for c in _LOCK_COLUMNS.split(','))}, "
        "(SELECT b.payload FROM noetl.event b WHERE b.execution_id = e.execution_id "
        " AND b.event_type = 'batch.accepted' AND b.meta->>'idempotency_key' = $2 LIMIT 1) AS prior_answer, "
        "ARRAY(SELECT event_id FROM noetl.event WHERE event_id = ANY($4::bigint[])) AS logged_ids, "
        "c.command_id, c.execution_id AS command_execution_id, c.step, c.tool_kind, c.status AS command_status, "
        "c.attempt, c.iteration, c.worker_id, c.started_at IS NOT NULL AS command_started, "
        "c.catalog_id AS command_catalog_id "
        "FROM noetl.execution e LEFT JOIN noetl.command c ON c.command_id = ANY($3::bigint[]) "
        "WHERE e.execution_id = $1 FOR UPDATE OF e",
        execution_id, idempotency_key, command_ids, event_ids)


async def lock_of_command(conn: asyncpg.Connection, command_id: int) -> asyncpg.Record | None:
    """The execution a command belongs to, locked (commands change only under that lock)."""
    return await conn.fetchrow(
        f"SELECT {_LOCK_COLUMNS} FROM noetl.execution "
        "WHERE execution_id = (SELECT execution_id FROM noetl.command WHERE command_id = $1) FOR UPDATE",
        command_id)


async def load_data(conn: asyncpg.Connection, execution_id: int, loops: list[tuple[str, int]]) -> list[asyncpg.Record]:
    """Step results, plus the items and iteration results of the running loops (step, run)."""
    return await conn.fetch(
        "SELECT 'r' AS kind, step, 0 AS run, 0 AS pos, result AS value FROM noetl.step_result "
        "WHERE execution_id = $1 "
        "UNION ALL SELECT 'i', i.step, i.run, i.item_offset, i.items FROM noetl.loop_items i "
        "JOIN unnest($2::text[], $3::int[]) AS l(step, run) ON (i.step, i.run) = (l.step, l.run) "
        "WHERE i.execution_id = $1 "
        "UNION ALL SELECT 'l', r.step, r.run, r.idx, r.result FROM noetl.loop_result r "
        "JOIN unnest($2::text[], $3::int[]) AS l(step, run) ON (r.step, r.run) = (l.step, l.run) "
        "WHERE r.execution_id = $1",
        execution_id, [s for s, _ in loops], [r for _, r in loops])


async def step_results(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> dict[str, Any]:
    rows = await conn.fetch("SELECT step, result FROM noetl.step_result WHERE execution_id = $1", execution_id)
    return {r["step"]: r["result"] for r in rows}


async def children(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM noetl.execution WHERE parent_execution_id = $1 ORDER BY execution_id",
        execution_id)


async def page(pool: asyncpg.Pool, *, status: str | None, path: str | None, parent: int | None,
               before: tuple[datetime, int] | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (created_at, execution_id): O(page) at any table size.
    The order and status come from the execution row (read-your-writes: a just-started execution
    is listed at once); step counts and progress come from the projected summary, joined by key.
    Only the filters given are in the statement: under a generic plan a catch-all
    `($1 IS NULL OR status = $1)` walks the listing index through all history and filters (the
    few RUNNING executions among 50,000 finished ones: 5 ms against 0.04 ms), and Postgres may
    switch a prepared statement to its generic plan after five runs."""
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (("e.status = ${}", status), ("e.path = ${}", path),
                          ("e.parent_execution_id = ${}", parent)):
        if value is not None:
            args.append(value)
            where.append(clause.format(len(args)))
    if before:
        args.extend(before)
        where.append(f"(e.created_at, e.execution_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    return await pool.fetch(
        f"SELECT {_LISTED_COLUMNS}, s.step_count, s.failed_step_count, s.event_count "
        "FROM noetl.execution e LEFT JOIN noetl.execution_summary s USING (execution_id) "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + f"ORDER BY e.created_at DESC, e.execution_id DESC LIMIT ${len(args)}", *args)


async def stuck(pool: asyncpg.Pool, older_than_minutes: int, limit: int) -> list[int]:
    """Executions still open (PENDING/RUNNING) created more than `older_than_minutes` ago, oldest
    first (the status listing index serves it)."""
    rows = await pool.fetch(
        "SELECT execution_id FROM noetl.execution WHERE status IN ('PENDING', 'RUNNING') "
        "AND created_at < now() - make_interval(mins => $1) ORDER BY created_at, execution_id LIMIT $2",
        older_than_minutes, limit)
    return [r["execution_id"] for r in rows]
