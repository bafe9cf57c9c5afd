"""The whole sharded fleet as `make run` starts it — 3 shards with their own databases, router,
publisher, projector, 2 workers — on its own embedded Postgres + NATS (so the JetStream streams
hold this fleet's messages only). Shared by the tests of this package."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import msgspec
import pytest_asyncio

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.processes import ServiceSpec, Supervisor

SHARDS = 3


class LiveFleet(msgspec.Struct):
    router: str
    specs: list[ServiceSpec]
    admin_dsn: str
    shard_dsns: list[str]
    token: str
    logs: Path
    supervisor: Any  # the fleet's processes, for the crash tests

    def spec(self, name: str) -> ServiceSpec:
        return next(s for s in self.specs if s.name == name)

    def url_of(self, name: str) -> str:
        return self.spec(name).url


@asynccontextmanager
async def own_fleet(prefix: str, shards: int = SHARDS, *, workers: int = 2,
                    extra_env: dict[str, str] | None = None) -> AsyncIterator[LiveFleet]:
    """A fleet started as `make run` starts it, on an embedded Postgres + NATS of its own under a
    new temporary directory (`prefix`); stopped with everything it started on exit."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(shards)
        dev_secrets = secrets.load_or_create(work / "secrets.json")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                                        nats_url=info.nats_url, secrets=dev_secrets, workers=workers,
                                        extra_env=extra_env or {}))
        await start_fleet(supervisor, specs)
        yield LiveFleet(router=router_url(specs), specs=specs, admin_dsn=info.admin_dsn,
                        shard_dsns=info.shard_dsns(shards),
                        token=dev_secrets["NOETL_INTERNAL_API_TOKEN"], logs=work / "logs", supervisor=supervisor)
    finally:
        supervisor.stop_all()
        infra.down()


@pytest_asyncio.fixture(scope="package")
async def live_fleet() -> AsyncIterator[LiveFleet]:
    async with own_fleet("noetl-fleet-test-") as fleet:
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
