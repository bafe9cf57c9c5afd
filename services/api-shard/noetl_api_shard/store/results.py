"""noetl.result_store (shard DB): NoETL's result store, large results kept out of the event log."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

_encoder = msgspec.json.Encoder()

META_COLUMNS = ("result_id, execution_id, name, scope, store, source_step, bytes, sha256, correlation, extracted, "
                "expires_at, created_at")


class StoredResult(msgspec.Struct, kw_only=True):
    result_id: int
    execution_id: int
    name: str
    data: Any
    bytes: int
    sha256: str
    scope: str = "execution"
    store: str = "db"
    source_step: str | None = None
    correlation: Any = None
    extracted: Any = None
    expires_at: datetime | None = None


def measure(data: Any) -> tuple[int, str]:
    """(size, sha256) of the value's JSON text, as NoETL reports them."""
    raw = _encoder.encode(data)
    return len(raw), hashlib.sha256(raw).hexdigest()


async def insert(conn: asyncpg.Connection | asyncpg.Pool, r: StoredResult) -> None:
    await conn.execute(
        "INSERT INTO noetl.result_store (result_id, execution_id, name, scope, store, source_step, data, bytes, "
        "sha256, correlation, extracted, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        r.result_id, r.execution_id, r.name, r.scope, r.store, r.source_step, r.data, r.bytes, r.sha256,
        r.correlation, r.extracted, r.expires_at)


async def data_by_ids(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int,
                      result_ids: list[int]) -> dict[int, Any]:
    """result_id -> stored value, for those of `execution_id` (a reference never reads another's)."""
    rows = await conn.fetch("SELECT result_id, data FROM noetl.result_store "
                            "WHERE result_id = ANY($1::bigint[]) AND execution_id = $2", result_ids, execution_id)
    return {r["result_id"]: r["data"] for r in rows}


async def resolve(pool: asyncpg.Pool, execution_id: int, name: str, result_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT data FROM noetl.result_store WHERE result_id = $1 AND execution_id = $2 "
                               "AND name = $3 AND (expires_at IS NULL OR expires_at > now())",
                               result_id, execution_id, name)


async def latest(pool: asyncpg.Pool, execution_id: int, name: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"SELECT {META_COLUMNS}, data FROM noetl.result_store WHERE execution_id = $1 AND name = $2 "
        "AND (expires_at IS NULL OR expires_at > now()) ORDER BY result_id DESC LIMIT 1", execution_id, name)


async def listing(pool: asyncpg.Pool, execution_id: int, scope: str | None,
                  name: str | None) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {META_COLUMNS}, left(data::text, 200) AS preview FROM noetl.result_store "
        "WHERE execution_id = $1 AND ($2::text IS NULL OR scope = $2) AND ($3::text IS NULL OR name = $3) "
        "AND (expires_at IS NULL OR expires_at > now()) ORDER BY result_id", execution_id, scope, name)


async def delete(conn: asyncpg.Connection | asyncpg.Pool, execution_ids: list[int], scopes: list[str],
                 name: str | None = None) -> int:
    status = await conn.execute(
        "DELETE FROM noetl.result_store WHERE execution_id = ANY($1::bigint[]) AND scope = ANY($2::text[]) "
        "AND ($3::text IS NULL OR name = $3)", execution_ids, scopes, name)
    return int(status.split()[-1])


async def stats(pool: asyncpg.Pool) -> asyncpg.Record:
    return await pool.fetchrow(
        # sum(bigint) is numeric (a Decimal, which JSON would carry as a string): cast back.
        "SELECT count(*) AS results, coalesce(sum(bytes), 0)::bigint AS bytes, "
        "count(DISTINCT execution_id) AS executions, "
        "count(*) FILTER (WHERE expires_at IS NOT NULL AND expires_at <= now()) AS expired "
        "FROM noetl.result_store")
