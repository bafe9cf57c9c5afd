"""noetl.transient (shard DB): execution variables behind /api/vars."""

from __future__ import annotations

from typing import Any

import asyncpg

_COLUMNS = "name, value, var_type, source_step, access_count, accessed_at, created_at, updated_at"


async def upsert_many(conn: asyncpg.Connection | asyncpg.Pool, execution_id: int, values: dict[str, Any],
                      var_type: str, source_step: str | None) -> None:
    # A JSON null value reaches asyncpg as None, which it sends as SQL NULL (the column is NOT NULL):
    # store it as the JSON null it is (read back as None). Found by the fuzzer: it was a 500.
    await conn.executemany(
        "INSERT INTO noetl.transient (execution_id, name, value, var_type, source_step) "
        "VALUES ($1, $2, coalesce($3::jsonb, 'null'::jsonb), $4, $5) "
        "ON CONFLICT (execution_id, name) DO UPDATE SET value = EXCLUDED.value, var_type = EXCLUDED.var_type, "
        "source_step = EXCLUDED.source_step, updated_at = now()",
        [(execution_id, name, value, var_type, source_step) for name, value in values.items()])


async def list_all(pool: asyncpg.Pool, execution_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_COLUMNS} FROM noetl.transient WHERE execution_id = $1 ORDER BY name", execution_id)


async def get_one(pool: asyncpg.Pool, execution_id: int, name: str) -> asyncpg.Record | None:
    """Reading a variable counts as an access (NoETL reports access_count / accessed_at)."""
    return await pool.fetchrow(
        "UPDATE noetl.transient SET access_count = access_count + 1, accessed_at = now() "
        f"WHERE execution_id = $1 AND name = $2 RETURNING {_COLUMNS}", execution_id, name)


async def delete_one(pool: asyncpg.Pool, execution_id: int, name: str) -> bool:
    status = await pool.execute("DELETE FROM noetl.transient WHERE execution_id = $1 AND name = $2",
                                execution_id, name)
    return status.endswith(" 1")


async def delete_all(pool: asyncpg.Pool, execution_id: int) -> int:
    status = await pool.execute("DELETE FROM noetl.transient WHERE execution_id = $1", execution_id)
    return int(status.split()[-1])
