"""A local fleet started as `make run` starts it (2 shards, router, publisher, projector, 2
workers) on its own embedded Postgres + NATS, with a short epoch grace so a scale takes seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest_asyncio

from noetl_devstack.processes import ServiceSpec

from ..fleet.conftest import own_fleet

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
    async with own_fleet("noetl-scaling-test-", START_SHARDS, workers=2, extra_env=SCALING_ENV) as f:
        yield ScalingFleet(router=f.router, specs=f.specs, admin_dsn=f.admin_dsn, token=f.token,
                           supervisor=f.supervisor, logs=f.logs)
