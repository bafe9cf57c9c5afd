"""noetl.shard_map (cluster DB): the epochs every component agrees on."""

from __future__ import annotations

import asyncpg

from noetl_common.sharding import Epoch, ShardMap


async def seed_if_empty(pool: asyncpg.Pool, shard_count: int) -> None:
    """First start of a fleet: one epoch from the beginning of time. Two shards racing both try;
    the primary key keeps one row."""
    await pool.execute(
        """INSERT INTO noetl.shard_map (effective_from_ms, shard_count)
           SELECT 0, $1 WHERE NOT EXISTS (SELECT 1 FROM noetl.shard_map)
           ON CONFLICT (effective_from_ms) DO NOTHING""", shard_count)


async def load(pool: asyncpg.Pool) -> ShardMap | None:
    rows = await pool.fetch("SELECT effective_from_ms, shard_count FROM noetl.shard_map ORDER BY effective_from_ms")
    if not rows:
        return None
    return ShardMap(epochs=tuple(Epoch(r["effective_from_ms"], r["shard_count"]) for r in rows))
