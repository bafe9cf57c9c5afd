"""noetl.command (shard DB): one row per issued command; a claim is a lease on it. Commands are
written with the rest of their transaction (store.writes); these are the reads, and the reaper's
own changes."""

from __future__ import annotations

import asyncpg

from noetl_common.vocabulary import TERMINAL_STATUSES

TERMINAL = TERMINAL_STATUSES
OPEN = ("ISSUED", "CLAIMED", "RUNNING")

_COLUMNS = ("command_id, execution_id, catalog_id, step, tool_kind, pool, iteration, context, status, "
            "attempt, max_attempts, worker_id, lease_expires_at, heartbeat_at, claimed_at, started_at, "
            "completed_at, result, error, created_at, updated_at")


async def get(conn: asyncpg.Connection | asyncpg.Pool, command_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM noetl.command WHERE command_id = $1", command_id)


async def step_of(conn: asyncpg.Connection, command_id: int) -> str | None:
    return await conn.fetchval("SELECT step FROM noetl.command WHERE command_id = $1", command_id)


async def expired_leases(pool: asyncpg.Pool, limit: int) -> list[int]:
    """Claimed commands whose holder stopped showing signs of life (candidates: the reaper re-checks
    each under its execution's lock)."""
    return [r["command_id"] for r in await pool.fetch(
        "SELECT command_id FROM noetl.command WHERE status IN ('CLAIMED', 'RUNNING') "
        "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT $1", limit)]


async def stale_unclaimed(pool: asyncpg.Pool, older_than_seconds: float, limit: int) -> list[int]:
    """Issued commands nobody claimed for a while (a lost notification)."""
    return [r["command_id"] for r in await pool.fetch(
        "SELECT command_id FROM noetl.command WHERE status = 'ISSUED' "
        "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
        older_than_seconds, limit)]


def lease_expired(row: asyncpg.Record, now: object) -> bool:
    return row["status"] in ("CLAIMED", "RUNNING") and row["lease_expires_at"] is not None \
        and row["lease_expires_at"] < now


async def reissue(conn: asyncpg.Connection, command_id: int) -> None:
    """Back to ISSUED as the next attempt, so the next claim can take it."""
    await conn.execute(
        "UPDATE noetl.command SET status = 'ISSUED', attempt = attempt + 1, worker_id = NULL, "
        "lease_expires_at = NULL, started_at = NULL, updated_at = now() WHERE command_id = $1", command_id)


async def bump(conn: asyncpg.Connection, command_id: int) -> None:
    await conn.execute("UPDATE noetl.command SET updated_at = now() WHERE command_id = $1", command_id)


async def list_for_execution(pool: asyncpg.Pool, execution_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_COLUMNS} FROM noetl.command WHERE execution_id = $1 ORDER BY command_id", execution_id)
