"""asyncpg pools with JSON/JSONB decoded to Python objects (msgspec, both directions)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec

_encoder = msgspec.json.Encoder()


def _encode_json(value: Any) -> str:
    # asyncpg's text codec wants str; a value that is already JSON text must be passed decoded.
    return _encoder.encode(value).decode("utf-8")


def _decode_json(text: str) -> Any:
    return msgspec.json.decode(text)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up: json and jsonb columns read and write plain Python values."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, schema="pg_catalog", format="text",
                                  encoder=_encode_json, decoder=_decode_json)


async def keep_session(conn: asyncpg.Connection) -> None:
    """Connections are returned to the pool as they are. asyncpg's default reset costs a round
    trip per release (RESET ALL, UNLISTEN *, ...); nothing here leaves session state behind (no
    LISTEN, no SET, only transaction-level advisory locks), so there is nothing to reset."""


DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 5.0


class PoolSaturated(Exception):
    """Every connection stayed busy for the whole acquire timeout: the caller should back off."""


class GuardedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no type information
    """A pool whose acquire waits a bounded time (every path, `fetch` & co. included, goes
    through `_acquire`), so an exhausted pool is an answer a client can act on (503
    pool_saturated) instead of a request that hangs."""

    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS

    async def _acquire(self, timeout: float | None) -> Any:
        try:
            return await super()._acquire(self.acquire_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise PoolSaturated(f"no database connection free within {self.acquire_timeout:g}s") from None


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, *, command_timeout: float | None = 60.0,
                      acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS, **kwargs: Any) -> GuardedPool:
    """A pool whose connections use the JSON codec above. `min_size` is clamped to `max_size`.
    Built as asyncpg.create_pool builds its Pool, with the guarded class instead."""
    pool = GuardedPool(dsn, min_size=min(min_size, max_size), max_size=max_size, max_queries=50000,
                       max_inactive_connection_lifetime=300.0, init=init_connection, reset=keep_session,
                       loop=None, connection_class=asyncpg.Connection, record_class=asyncpg.Record,
                       command_timeout=command_timeout, **kwargs)
    pool.acquire_timeout = acquire_timeout
    await pool  # connects min_size connections; awaiting a Pool returns the pool itself
    return pool


async def ping(pool: asyncpg.Pool, timeout: float) -> None:
    """One round trip to the database within `timeout` (readiness and health probes); raises if not."""
    await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout)
