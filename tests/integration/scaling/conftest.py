"""A local fleet started as `make run` starts it (2 shards, router, publisher, projector, 2
workers) on its own embedded Postgres + NATS, with a short epoch grace so a scale takes seconds."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest_asyncio

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.processes import ServiceSpec, Supervisor

START_SHARDS = 2
GRACE_MS = 3_000
# Every component reloads the map well within the grace (the shard refuses to start otherwise).
SCALING_ENV = {"NOETL_SHARD_EPOCH_GRACE_MS": str(GRACE_MS), "NOETL_SHARD_MAP_REFRESH_SECONDS": "0.5",
               "NOETL_ROUTER_MAP_REFRESH_SECONDS": "0.5"}


class ScalingFleet(msgspec.Struct):
    router: str
    specs: list[ServiceSpec]
    admin_dsn: str
    token: str
    supervisor: Any
    logs: Path

    def shard_url(self, index: int) -> str:
        return next(s.url for s in self.specs if s.name == f"api-shard-{index}")

    def shard_dsn(self, index: int) -> str:
        return next(s.env["NOETL_SHARD_DSN"] for s in self.specs if s.name == f"api-shard-{index}")


@pytest_asyncio.fixture(scope="package")
async def scaling_fleet() -> AsyncIterator[ScalingFleet]:
    work = Path(tempfile.mkdtemp(prefix="noetl-scaling-test-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(START_SHARDS)
        dev_secrets = secrets.load_or_create(work / "secrets.json")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(START_SHARDS),
                                        nats_url=info.nats_url, secrets=dev_secrets, workers=2,
                                        extra_env=SCALING_ENV))
        await start_fleet(supervisor, specs)
        yield ScalingFleet(router=router_url(specs), specs=specs, admin_dsn=info.admin_dsn,
                           token=dev_secrets["NOETL_INTERNAL_API_TOKEN"], supervisor=supervisor, logs=work / "logs")
    finally:
        supervisor.stop_all()
        infra.down()
