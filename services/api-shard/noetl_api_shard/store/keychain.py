"""noetl.keychain (cluster DB). Values are stored as ciphertext bound to their cache_key."""

from __future__ import annotations

from datetime import datetime

import asyncpg

_COLUMNS = ("cache_key, keychain_name, catalog_id, credential_type, cache_type, scope_type, execution_id, "
            "parent_execution_id, data_encrypted, renew_config_encrypted, auto_renew, expires_at, "
            "access_count, accessed_at, created_at, updated_at")


async def upsert(pool: asyncpg.Pool, *, cache_key: str, keychain_name: str, catalog_id: int,
                 credential_type: str | None, cache_type: str, scope_type: str, execution_id: int | None,
                 parent_execution_id: int | None, data_encrypted: str, renew_config_encrypted: str | None,
                 auto_renew: bool, expires_at: datetime | None) -> asyncpg.Record:
    return await pool.fetchrow(
        f"""INSERT INTO noetl.keychain (cache_key, keychain_name, catalog_id, credential_type, cache_type,
                scope_type, execution_id, parent_execution_id, data_encrypted, renew_config_encrypted,
                auto_renew, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (cache_key) DO UPDATE SET
                credential_type = EXCLUDED.credential_type, cache_type = EXCLUDED.cache_type,
                parent_execution_id = EXCLUDED.parent_execution_id, data_encrypted = EXCLUDED.data_encrypted,
                renew_config_encrypted = EXCLUDED.renew_config_encrypted, auto_renew = EXCLUDED.auto_renew,
                expires_at = EXCLUDED.expires_at, updated_at = now()
            RETURNING {_COLUMNS}""",
        cache_key, keychain_name, catalog_id, credential_type, cache_type, scope_type, execution_id,
        parent_execution_id, data_encrypted, renew_config_encrypted, auto_renew, expires_at)


async def touch(pool: asyncpg.Pool, cache_key: str) -> asyncpg.Record | None:
    """Read one entry and count the access."""
    return await pool.fetchrow(
        f"""UPDATE noetl.keychain SET access_count = access_count + 1, accessed_at = now()
            WHERE cache_key = $1 RETURNING {_COLUMNS}""", cache_key)


async def list_for_catalog(pool: asyncpg.Pool, catalog_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_COLUMNS} FROM noetl.keychain WHERE catalog_id = $1 ORDER BY keychain_name, cache_key",
        catalog_id)


async def delete(pool: asyncpg.Pool, cache_key: str) -> bool:
    return await pool.fetchval("DELETE FROM noetl.keychain WHERE cache_key = $1 RETURNING true", cache_key) or False
