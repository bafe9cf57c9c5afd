"""The fleet starter's production-like layout (`own_fleet(shard_servers=True)`, what bench-scale
measures against one server): every shard's database on a Postgres server of its own, the cluster
database on the first; executions placed on each shard run to the end and are stored there."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import asyncpg

from .conftest import own_fleet, register, wait_terminal
from .test_worker_many_slots import THREE_STEPS


async def test_each_shard_on_its_own_postgres_server(http):
    async with own_fleet("noetl-shard-servers-", 2, workers=1, shard_servers=True) as fleet:
        ports = {urlsplit(dsn).port for dsn in [fleet.admin_dsn, *fleet.shard_dsns]}
        assert len(ports) == 3, (fleet.admin_dsn, fleet.shard_dsns)
        for pid in fleet.shard_postgres_pids:
            assert pid is not None
            os.kill(pid, 0)  # the postmaster is alive
        await register(http, fleet.router, THREE_STEPS)
        ids = []
        for _ in range(6):  # placed round robin: both shards get some (asserted below)
            async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/many_slots_three"}) as r:
                ids.append((await r.json())["execution_id"])
        for execution_id in ids:
            assert (await wait_terminal(http, fleet.router, execution_id))["status"] == "COMPLETED"
        stored = []
        for dsn in fleet.shard_dsns:
            conn = await asyncpg.connect(dsn)
            try:
                stored.append(await conn.fetchval(
                    "SELECT count(*) FROM noetl.execution WHERE status = 'COMPLETED' AND execution_id = ANY($1)",
                    [int(i) for i in ids]))
            finally:
                await conn.close()
        assert sum(stored) == len(ids) and all(stored), stored
