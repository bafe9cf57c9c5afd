"""A small fleet of its own (2 shards, router, publisher, projector, 1 worker) for the OpenAPI
tests: the fuzzer writes whatever the document allows, so it gets databases no other test reads."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.integration.fleet.conftest import LiveFleet, own_fleet, register, wait_terminal

SHARDS = 2
PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: openapi_seed
  path: tests/openapi/seed
workflow:
  - step: start
    tool: {kind: python, code: "result = {'said': 'hello'}"}
"""


@pytest_asyncio.fixture(scope="package")
async def api_fleet() -> AsyncIterator[LiveFleet]:
    async with own_fleet("noetl-openapi-test-", SHARDS, workers=1) as fleet:
        await _seed(fleet)
        yield fleet


async def _seed(fleet: LiveFleet) -> None:
    """A registered playbook and a finished execution, so reads find something real too."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await register(http, fleet.router, PLAYBOOK)
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/openapi/seed"}) as r:
            started = await r.json()
            assert r.status == 200, started
        await asyncio.wait_for(wait_terminal(http, fleet.router, started["execution_id"]), 60)
