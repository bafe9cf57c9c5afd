"""asyncpg pools with JSON/JSONB decoded to Python objects (msgspec, both directions)."""

from __future__ import annotations

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


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, *,
                      command_timeout: float | None = 60.0, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose connections use the JSON codec above. `min_size` is clamped to `max_size`."""
    return await asyncpg.create_pool(
        dsn=dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=init_connection,
        reset=keep_session,
        command_timeout=command_timeout,
        **kwargs,
    )
