"""noetl.command (shard DB): one row per issued command; a claim is a lease on it."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
OPEN = ("ISSUED", "CLAIMED", "RUNNING")

_COLUMNS = ("command_id, execution_id, catalog_id, step, tool_kind, pool, iteration, context, status, "
            "attempt, max_attempts, worker_id, lease_expires_at, heartbeat_at, claimed_at, started_at, "
            "completed_at, result, error, created_at, updated_at")


class NewCommand(msgspec.Struct, kw_only=True):
    command_id: int
    execution_id: int
    catalog_id: int | None
    step: str
    tool_kind: str
    pool: str | None
    iteration: int | None
    context: dict[str, Any]
    attempt: int = 1
    max_attempts: int = 1


async def insert(conn: asyncpg.Connection, cmd: NewCommand) -> None:
    await conn.execute(
        "INSERT INTO noetl.command (command_id, execution_id, catalog_id, step, tool_kind, pool, iteration, "
        "context, attempt, max_attempts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
        cmd.command_id, cmd.execution_id, cmd.catalog_id, cmd.step, cmd.tool_kind, cmd.pool, cmd.iteration,
        cmd.context, cmd.attempt, cmd.max_attempts)


async def get(conn: asyncpg.Connection | asyncpg.Pool, command_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM noetl.command WHERE command_id = $1", command_id)


async def lock(conn: asyncpg.Connection, command_id: int) -> asyncpg.Record | None:
    """Row lock without waiting: a concurrent claimer gets LockNotAvailableError, not a queue."""
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM noetl.command WHERE command_id = $1 FOR UPDATE NOWAIT", command_id)


async def claim(conn: asyncpg.Connection, command_id: int, worker_id: str, lease_seconds: float,
                attempt: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE noetl.command SET status = 'CLAIMED', worker_id = $2, attempt = $4, claimed_at = now(), "
        "heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $3), started_at = NULL, "
        f"updated_at = now() WHERE command_id = $1 RETURNING {_COLUMNS}",
        command_id, worker_id, lease_seconds, attempt)


async def touch(conn: asyncpg.Connection, command_id: int, lease_seconds: float, *, started: bool) -> None:
    """A sign of life from the holder extends its lease (and marks it RUNNING on start)."""
    await conn.execute(
        "UPDATE noetl.command SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2), "
        "status = CASE WHEN $3 AND status = 'CLAIMED' THEN 'RUNNING' ELSE status END, "
        "started_at = CASE WHEN $3 THEN coalesce(started_at, now()) ELSE started_at END, updated_at = now() "
        "WHERE command_id = $1 AND status IN ('CLAIMED', 'RUNNING')",
        command_id, lease_seconds, started)


async def finish(conn: asyncpg.Connection, command_id: int, status: str, result: Any, error: str | None) -> None:
    """Terminal status; never rewrites a row that is already terminal."""
    await conn.execute(
        "UPDATE noetl.command SET status = $2, result = $3, error = $4, completed_at = now(), "
        "lease_expires_at = NULL, updated_at = now() "
        "WHERE command_id = $1 AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
        command_id, status, result, error)


async def cancel_open(conn: asyncpg.Connection, execution_id: int) -> int:
    status = await conn.execute(
        "UPDATE noetl.command SET status = 'CANCELLED', completed_at = now(), lease_expires_at = NULL, "
        "updated_at = now() WHERE execution_id = $1 AND status IN ('ISSUED', 'CLAIMED', 'RUNNING')",
        execution_id)
    return int(status.split()[-1])


async def expired_leases(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Claimed commands whose holder stopped showing signs of life; locked for the caller's transaction."""
    return await conn.fetch(
        f"SELECT {_COLUMNS} FROM noetl.command WHERE status IN ('CLAIMED', 'RUNNING') "
        "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED", limit)


async def stale_unclaimed(conn: asyncpg.Connection, older_than_seconds: float, limit: int) -> list[asyncpg.Record]:
    """Issued commands nobody claimed for a while (a lost notification); their notification is re-sent."""
    return await conn.fetch(
        f"SELECT {_COLUMNS} FROM noetl.command WHERE status = 'ISSUED' "
        "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        older_than_seconds, limit)


async def bump(conn: asyncpg.Connection, command_id: int) -> None:
    await conn.execute("UPDATE noetl.command SET updated_at = now() WHERE command_id = $1", command_id)


async def release(conn: asyncpg.Connection, command_id: int) -> None:
    """Back to ISSUED so the next claim (a new attempt) can take it."""
    await conn.execute(
        "UPDATE noetl.command SET status = 'ISSUED', worker_id = NULL, lease_expires_at = NULL, "
        "updated_at = now() WHERE command_id = $1", command_id)


async def list_for_execution(pool: asyncpg.Pool, execution_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_COLUMNS} FROM noetl.command WHERE execution_id = $1 ORDER BY command_id", execution_id)
