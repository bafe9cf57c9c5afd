"""noetl.catalog (cluster DB): versioned resources."""

from __future__ import annotations

from typing import Any

import asyncpg

from .cluster_notify import announce

_COLUMNS = "catalog_id, path, version, kind, content, payload, layout, meta, created_at"
_SUMMARY_COLUMNS = "catalog_id, path, version, kind, NULL::text AS content, NULL::json AS payload, layout, meta, created_at"


async def insert_next_version(pool: asyncpg.Pool, *, catalog_id: int, path: str, kind: str,
                              content: str, payload: Any, meta: dict[str, Any]) -> asyncpg.Record:
    """Store `path` as version max+1. The per-path advisory lock serialises concurrent registers
    of the same path (different paths do not wait for each other)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('noetl.catalog:' || $1, 0))", path)
        version = await conn.fetchval(
            "SELECT COALESCE(max(version), 0) + 1 FROM noetl.catalog WHERE path = $1", path)
        await announce(conn, "catalog", path)  # the path's latest version changes
        return await conn.fetchrow(
            f"""INSERT INTO noetl.catalog (catalog_id, path, version, kind, content, payload, meta)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}""",
            catalog_id, path, version, kind, content, payload, meta)


async def list_entries(pool: asyncpg.Pool, *, kind: str | None, path: str | None, all_versions: bool,
                       include_content: bool, limit: int) -> list[asyncpg.Record]:
    columns = _COLUMNS if include_content else _SUMMARY_COLUMNS
    where = ["archived_at IS NULL", "($1::text IS NULL OR lower(kind) = lower($1))",
             "($2::text IS NULL OR path = $2)"]
    if all_versions:
        sql = (f"SELECT {columns} FROM noetl.catalog WHERE {' AND '.join(where)} "
               "ORDER BY path, version DESC LIMIT $3")
    else:
        sql = (f"SELECT {columns} FROM (SELECT DISTINCT ON (path) * FROM noetl.catalog "
               f"WHERE {' AND '.join(where)} ORDER BY path, version DESC) latest ORDER BY path LIMIT $3")
    return await pool.fetch(sql, kind, path, limit)


async def get_by_id(pool: asyncpg.Pool, catalog_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(f"SELECT {_COLUMNS} FROM noetl.catalog WHERE catalog_id = $1", catalog_id)


async def get_by_path(pool: asyncpg.Pool, path: str, version: int | None) -> asyncpg.Record | None:
    if version is None:
        return await pool.fetchrow(
            f"SELECT {_COLUMNS} FROM noetl.catalog WHERE path = $1 AND archived_at IS NULL "
            "ORDER BY version DESC LIMIT 1", path)
    return await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM noetl.catalog WHERE path = $1 AND version = $2", path, version)


async def set_archived(pool: asyncpg.Pool, path: str, version: int | None, archived: bool) -> list[asyncpg.Record]:
    """Archive (or restore) the path's versions, or one of them; returns (catalog_id, version) of
    the rows that changed. Archived rows stay (executions in shard databases name them); they
    just stop being listed and resolved by path."""
    change = "archived_at = now()" if archived else "archived_at = NULL"
    state = "archived_at IS NULL" if archived else "archived_at IS NOT NULL"
    async with pool.acquire() as conn, conn.transaction():
        await announce(conn, "catalog", path)
        return await conn.fetch(
            f"""UPDATE noetl.catalog SET {change}
                WHERE path = $1 AND ($2::int IS NULL OR version = $2) AND {state}
                RETURNING catalog_id, version""", path, version)
