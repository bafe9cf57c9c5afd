"""Changes to cluster rows that shards cache (store.cluster_cache), announced to every shard by the
transaction that makes them (NOTIFY: delivered at commit, dropped with a rollback)."""

from __future__ import annotations

import asyncpg

CHANNEL = "noetl_cluster_change"
MAX_KEY_BYTES = 4000  # Postgres refuses payloads from 8000 bytes


async def announce(conn: asyncpg.Connection, kind: str, key: str) -> None:
    """`kind` ("catalog" by path; "credential" with no key, shards drop them all) entry `key`
    changed; a key too long for a notification is sent empty, which means every entry of the kind."""
    if len(key.encode()) > MAX_KEY_BYTES:
        key = ""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{kind}:{key}")
