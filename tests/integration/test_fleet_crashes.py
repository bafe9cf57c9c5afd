"""Process deaths in a live fleet: every execution still ends exactly once, and no step runs more
than its attempts."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import tempfile
from pathlib import Path

import aiohttp
import asyncpg

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs
from noetl_devstack.processes import Supervisor

SLOW = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: slow, path: tests/slow}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\ntime.sleep(1.2)\\nresult = {'slept': True}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'done': True}"}
"""


async def wait_status(session, url, eid, timeout=60):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with session.get(f"{url}/api/executions/{eid}/status") as r:
            body = await r.json()
        if body.get("completed"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"execution {eid} did not finish: {body}")


async def test_worker_killed_mid_step_then_another_finishes_it(fresh_databases, infra):
    dbs = await fresh_databases(1)
    work = Path(tempfile.mkdtemp())
    specs = fleet_specs(FleetConfig(
        cluster_dsn=dbs.cluster_dsn, shard_dsns=dbs.shard_dsns, nats_url=infra.nats_url,
        secrets=secrets.load_or_create(work / "s.json"), workers=2,
        extra_env={"NOETL_COMMAND_CLAIM_LEASE_SECONDS": "2", "NOETL_COMMAND_REAPER_INTERVAL_SECONDS": "0.5",
                   "WORKER_MAX_CONCURRENT": "1"}))
    sup = Supervisor(work / "logs")
    shard, publisher, w0, w1 = specs
    try:
        for spec in (shard, publisher, w0):
            sup.spawn(spec)
        await asyncio.gather(*(sup.wait_ready(s.name) for s in (shard, publisher, w0)))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{shard.url}/api/catalog/register",
                                    json={"content": base64.b64encode(SLOW).decode()}) as r:
                assert r.status == 200
            async with session.post(f"{shard.url}/api/execute", json={"path": "tests/slow"}) as r:
                eid = (await r.json())["execution_id"]
            conn = await asyncpg.connect(dbs.shard_dsns[0])
            try:
                for _ in range(100):  # until worker-0 holds the claim
                    if await conn.fetchval("SELECT worker_id FROM noetl.command WHERE execution_id = $1 "
                                           "AND step = 'start' AND status IN ('CLAIMED','RUNNING')", int(eid)):
                        break
                    await asyncio.sleep(0.05)
                running, _ = sup.running[w0.name]
                os.kill(running.pid, signal.SIGKILL)
                sup.spawn(w1)
                await sup.wait_ready(w1.name)
                final = await wait_status(session, shard.url, eid)
                assert final["status"] == "COMPLETED", final
                row = await conn.fetchrow("SELECT attempt, worker_id FROM noetl.command WHERE execution_id = $1 "
                                          "AND step = 'start'", int(eid))
                assert row["attempt"] == 2 and row["worker_id"] == "worker-1"
                terminal = await conn.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1 "
                                               "AND event_type IN ('playbook.completed', 'playbook.failed')", int(eid))
                done = await conn.fetchval("SELECT count(*) FROM noetl.event WHERE execution_id = $1 "
                                           "AND event_type = 'call.done' AND node_name = 'start'", int(eid))
                assert terminal == 1 and done == 1
            finally:
                await conn.close()
    finally:
        sup.stop_all()
