"""noetl.credential (cluster DB). Only ciphertext ever reaches these functions."""

from __future__ import annotations

from typing import Any

import asyncpg

from .cluster_notify import announce

_COLUMNS = "id, name, type, data_encrypted, meta, tags, description, created_at, updated_at"


async def upsert(pool: asyncpg.Pool, *, new_id: int, name: str, type_: str, data_encrypted: str,
                 meta: dict[str, Any] | None, tags: list[str] | None,
                 description: str | None) -> asyncpg.Record:
    """Insert, or replace everything but id/created_at of the credential with this name."""
    async with pool.acquire() as conn, conn.transaction():
        await announce(conn, "credential", "")  # shards drop every cached credential
        return await conn.fetchrow(
            f"""INSERT INTO noetl.credential (id, name, type, data_encrypted, meta, tags, description)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (name) DO UPDATE SET
                    type = EXCLUDED.type, data_encrypted = EXCLUDED.data_encrypted, meta = EXCLUDED.meta,
                    tags = EXCLUDED.tags, description = EXCLUDED.description, updated_at = now()
                RETURNING {_COLUMNS}""",
            new_id, name, type_, data_encrypted, meta, tags, description)


async def get(pool: asyncpg.Pool, *, id_: int | None = None, name: str | None = None) -> asyncpg.Record | None:
    if id_ is not None:
        return await pool.fetchrow(f"SELECT {_COLUMNS} FROM noetl.credential WHERE id = $1", id_)
    return await pool.fetchrow(f"SELECT {_COLUMNS} FROM noetl.credential WHERE name = $1", name)


async def search(pool: asyncpg.Pool, *, type_: str | None, q: str | None) -> list[asyncpg.Record]:
    pattern = None if q is None else "%" + _escape_like(q) + "%"
    return await pool.fetch(
        f"""SELECT {_COLUMNS} FROM noetl.credential
            WHERE ($1::text IS NULL OR type = $1)
              AND ($2::text IS NULL OR name ILIKE $2 OR description ILIKE $2)
            ORDER BY name""",
        type_, pattern)


async def delete(pool: asyncpg.Pool, *, id_: int | None = None, name: str | None = None) -> int | None:
    async with pool.acquire() as conn, conn.transaction():
        if id_ is not None:
            deleted = await conn.fetchval("DELETE FROM noetl.credential WHERE id = $1 RETURNING id", id_)
        else:
            deleted = await conn.fetchval("DELETE FROM noetl.credential WHERE name = $1 RETURNING id", name)
        if deleted is None:
            return None
        await announce(conn, "credential", "")
        return deleted


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
