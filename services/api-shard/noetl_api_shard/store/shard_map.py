"""noetl.shard_map and noetl.shard_endpoint (cluster DB): the epochs every component agrees on,
and where each shard is.

Reading and committing the map are serialised by a table lock, which is what makes a read's
`confirmed_at` trustworthy (see `noetl_common.minting`): a reader holds SHARE while it reads the
clock and the rows; a committer holds SHARE ROW EXCLUSIVE (which excludes readers and other
committers) while it reads the clock and appends `now + grace`. So an epoch a reader did not see
was stamped by a clock read after the reader's, and starts at least `grace` after the reader's
`confirmed_at`.
"""

from __future__ import annotations

from typing import Callable

import asyncpg

from noetl_common.minting import ConfirmedMap
from noetl_common.sharding import Epoch, ShardMap

# NOTIFY channel: the committing transaction announces a new epoch; shards LISTEN and reload.
CHANNEL = "noetl_shard_map"
_SELECT = "SELECT effective_from_ms, shard_count FROM noetl.shard_map ORDER BY effective_from_ms"


async def seed_if_empty(pool: asyncpg.Pool, shard_count: int) -> None:
    """First start of a fleet: one epoch from the beginning of time. Two shards racing both try;
    the primary key keeps one row."""
    await pool.execute(
        """INSERT INTO noetl.shard_map (effective_from_ms, shard_count)
           SELECT 0, $1 WHERE NOT EXISTS (SELECT 1 FROM noetl.shard_map)
           ON CONFLICT (effective_from_ms) DO NOTHING""", shard_count)


def _to_map(rows: list[asyncpg.Record]) -> ShardMap | None:
    if not rows:
        return None
    return ShardMap(epochs=tuple(Epoch(r["effective_from_ms"], r["shard_count"]) for r in rows))


async def load(pool: asyncpg.Pool) -> ShardMap | None:
    return _to_map(await pool.fetch(_SELECT))


async def load_confirmed(pool: asyncpg.Pool, clock: Callable[[], int]) -> ConfirmedMap | None:
    """The map and the local time it is confirmed at (read under the lock, before the rows)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE noetl.shard_map IN SHARE MODE")
        confirmed_at = clock()
        loaded = _to_map(await conn.fetch(_SELECT))
    return None if loaded is None else ConfirmedMap(loaded, confirmed_at)


async def commit_epoch(pool: asyncpg.Pool, shard_count: int, grace_ms: int,
                       clock: Callable[[], int]) -> tuple[ShardMap, bool]:
    """Append `(now + grace, shard_count)` unless the newest epoch already has that count (then
    nothing changes: re-running a half-finished scale is safe). Returns the map and whether an
    epoch was added. The NOTIFY is delivered when the transaction commits."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE noetl.shard_map IN SHARE ROW EXCLUSIVE MODE")
        current = _to_map(await conn.fetch(_SELECT))
        if current is None:
            raise RuntimeError("the cluster shard_map table is empty; shards seed it at start-up")
        if current.newest().shard_count == shard_count:
            return current, False
        # The later of our clock and the database's: a host whose clock lags must not put the
        # epoch closer than `grace` for everyone else. Always after the newest epoch.
        db_now = await conn.fetchval("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
        start = max(clock(), db_now) + grace_ms
        start = max(start, current.newest().effective_from_ms + 1)
        await conn.execute("INSERT INTO noetl.shard_map (effective_from_ms, shard_count) VALUES ($1, $2)",
                           start, shard_count)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{start}:{shard_count}")
        return ShardMap(epochs=(*current.epochs, Epoch(start, shard_count))), True


async def register_endpoint(pool: asyncpg.Pool, shard_index: int, url: str) -> None:
    await pool.execute(
        """INSERT INTO noetl.shard_endpoint (shard_index, url) VALUES ($1, $2)
           ON CONFLICT (shard_index) DO UPDATE SET url = EXCLUDED.url, updated_at = now()""",
        shard_index, url)


async def endpoints(pool: asyncpg.Pool) -> dict[int, str]:
    rows = await pool.fetch("SELECT shard_index, url FROM noetl.shard_endpoint ORDER BY shard_index")
    return {r["shard_index"]: r["url"] for r in rows}


async def newest_local_id(shard_pool: asyncpg.Pool) -> int | None:
    """The highest id this shard minted that is still stored (all four are indexed)."""
    return await shard_pool.fetchval(
        """SELECT greatest((SELECT max(event_id) FROM noetl.event), (SELECT max(command_id) FROM noetl.command),
                           (SELECT max(execution_id) FROM noetl.execution), (SELECT max(id) FROM noetl.outbox))""")
