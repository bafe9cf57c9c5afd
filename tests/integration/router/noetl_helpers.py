"""Small helpers for the NoETL-route tests that play a worker by hand against the router."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import asyncpg

from noetl_common.sharding import shard_for

from .conftest import SHARDS, Fleet


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def register(http: aiohttp.ClientSession, url: str, content: str) -> None:
    async with http.post(f"{url}/api/catalog/register", json={"content": b64(content)}) as r:
        assert r.status == 200, await r.text()


async def start(http: aiohttp.ClientSession, url: str, path: str, **extra: Any) -> int:
    async with http.post(f"{url}/api/execute", json={"path": path, **extra}) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["execution_id"])


async def issued_command(http: aiohttp.ClientSession, url: str, execution_id: int) -> int:
    """The event id of the execution's newest `command.issued` (what a worker claims)."""
    async with http.get(f"{url}/api/executions/{execution_id}", params={"event_type": "command.issued"}) as r:
        assert r.status == 200, await r.text()
        events = (await r.json())["events"]
    assert events, f"execution {execution_id} issued no command"
    return int(events[0]["event_id"])  # newest first


async def claim(http: aiohttp.ClientSession, url: str, command_id: int, worker: str = "hand") -> dict:
    async with http.post(f"{url}/api/commands/{command_id}/claim", json={"worker_id": worker}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def shard_conn_dsn(fleet: Fleet, execution_id: int) -> str:
    return fleet.shards[shard_for(execution_id, SHARDS)].env["NOETL_SHARD_DSN"]


async def on_owner(fleet: Fleet, execution_id: int, sql: str, *args: Any) -> Any:
    """Run one statement on the shard database owning `execution_id` (test set-up only)."""
    conn = await asyncpg.connect(shard_conn_dsn(fleet, execution_id))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
