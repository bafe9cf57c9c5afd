"""A small fleet of its own (2 shards, router, publisher, projector, 1 worker) for the OpenAPI
tests: the fuzzer writes whatever the document allows, so it gets databases no other test reads."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest_asyncio

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.processes import Supervisor

from tests.integration.fleet.conftest import LiveFleet, register, wait_terminal

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
    work = Path(tempfile.mkdtemp(prefix="noetl-openapi-test-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(SHARDS)
        dev_secrets = secrets.load_or_create(work / "secrets.json")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(SHARDS),
                                        nats_url=info.nats_url, secrets=dev_secrets, workers=1))
        await start_fleet(supervisor, specs)
        fleet = LiveFleet(router=router_url(specs), specs=specs, admin_dsn=info.admin_dsn,
                          shard_dsns=info.shard_dsns(SHARDS), token=dev_secrets["NOETL_INTERNAL_API_TOKEN"],
                          logs=work / "logs", supervisor=supervisor)
        await _seed(fleet)
        yield fleet
    finally:
        supervisor.stop_all()
        infra.down()


async def _seed(fleet: LiveFleet) -> None:
    """A registered playbook and a finished execution, so reads find something real too."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await register(http, fleet.router, PLAYBOOK)
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/openapi/seed"}) as r:
            started = await r.json()
            assert r.status == 200, started
        await asyncio.wait_for(wait_terminal(http, fleet.router, started["execution_id"]), 60)
