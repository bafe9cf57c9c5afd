"""The whole sharded fleet as `make run` starts it — 3 shards with their own databases, router,
publisher, projector, 2 workers — on its own embedded Postgres + NATS (noetl_devstack.local_fleet,
the starter the benches use too). Shared by the tests of this package."""

from __future__ import annotations

import asyncio
import base64
from typing import AsyncIterator

import aiohttp
import pytest_asyncio

# The one fleet starter, shared with the benches; re-exported for the tests that import it from here.
from noetl_devstack.local_fleet import LiveFleet, own_fleet

__all__ = ["LiveFleet", "own_fleet", "register", "wait_terminal"]

SHARDS = 3


@pytest_asyncio.fixture(scope="package")
async def live_fleet() -> AsyncIterator[LiveFleet]:
    async with own_fleet("noetl-fleet-test-", SHARDS) as fleet:
        yield fleet


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def register(http: aiohttp.ClientSession, router: str, content: str) -> dict:
    async with http.post(f"{router}/api/catalog/register",
                         json={"content": base64.b64encode(content.encode()).decode()}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body


async def wait_terminal(http: aiohttp.ClientSession, router: str, execution_id: str, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(f"{router}/api/executions/{execution_id}/status") as r:
            status = await r.json()
        if status.get("completed"):
            return status
        assert asyncio.get_running_loop().time() < deadline, f"{execution_id} not finished: {status}"
        await asyncio.sleep(0.2)
