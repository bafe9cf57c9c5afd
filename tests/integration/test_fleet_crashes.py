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
from noetl_devstack.fleet import FleetConfig, fleet_specs, start_fleet
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
    by_name = {s.name: s for s in specs}
    shard, router, publisher, w0, w1 = (by_name[n] for n in ("api-shard-0", "router", "outbox-publisher",
                                                             "worker-0", "worker-1"))
    try:
        for spec in (shard, router, publisher, w0):
            sup.spawn(spec)
        await asyncio.gather(*(sup.wait_ready(s.name) for s in (shard, router, publisher, w0)))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{shard.url}/api/catalog/register",
                                    json={"content": base64.b64encode(SLOW).decode()}) as r:
                assert r.status == 200
            async with session.post(f"{shard.url}/api/execute", json={"path": "tests/slow"}) as r:
                eid = (await r.json())["execution_id"]
            conn = await asyncpg.connect(dbs.shard_dsns[0])
            try:
                holder = None
                for _ in range(600):  # until worker-0 holds the claim (its first pull may take a while)
                    holder = await conn.fetchval("SELECT worker_id FROM noetl.command WHERE execution_id = $1 "
                                                 "AND step = 'start' AND status IN ('CLAIMED','RUNNING')", int(eid))
                    if holder:
                        break
                    await asyncio.sleep(0.05)
                assert holder == "worker-0", f"worker-0 never held the claim (holder: {holder})"
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


QUICK = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: quick, path: tests/quick}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\ntime.sleep(0.2)\\nresult = {'a': 1}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, code: "import time\\ntime.sleep(0.2)\\nresult = {'b': 2}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'c': 3}"}
"""


async def test_publisher_killed_and_nats_restarted_mid_run(fresh_databases, tmp_path):
    from noetl_devstack.nats import EmbeddedNats, stop_pid
    from noetl_devstack.ports import free_port

    dbs = await fresh_databases(1)
    nats_port = free_port()
    nats_url, nats_pid = EmbeddedNats(tmp_path / "nats").start(nats_port)
    specs = fleet_specs(FleetConfig(
        cluster_dsn=dbs.cluster_dsn, shard_dsns=dbs.shard_dsns, nats_url=nats_url,
        secrets=secrets.load_or_create(tmp_path / "s.json"), workers=2,
        extra_env={"NOETL_COMMAND_REPUBLISH_AFTER_SECONDS": "3", "NOETL_COMMAND_REAPER_INTERVAL_SECONDS": "0.5"}))
    sup = Supervisor(tmp_path / "logs")
    shard, publisher = specs[0], next(s for s in specs if s.name == "outbox-publisher")
    try:
        await start_fleet(sup, specs)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{shard.url}/api/catalog/register",
                                    json={"content": base64.b64encode(QUICK).decode()}) as r:
                assert r.status == 200
            ids = []
            for _ in range(10):
                async with session.post(f"{shard.url}/api/execute", json={"path": "tests/quick"}) as r:
                    ids.append((await r.json())["execution_id"])
            await asyncio.sleep(0.2)
            os.kill(sup.running[publisher.name][0].pid, signal.SIGKILL)  # possibly holding claims
            sup.running.pop(publisher.name)
            stop_pid(nats_pid)
            await asyncio.sleep(1.0)
            _, nats_pid = EmbeddedNats(tmp_path / "nats").start(nats_port)
            sup.spawn(publisher)
            await sup.wait_ready(publisher.name)
            finals = [await wait_status(session, shard.url, eid, timeout=90) for eid in ids]
        assert [f["status"] for f in finals] == ["COMPLETED"] * 10
        conn = await asyncpg.connect(dbs.shard_dsns[0])
        try:
            terminal = await conn.fetch("SELECT execution_id, count(*) AS n FROM noetl.event WHERE event_type IN "
                                        "('playbook.completed', 'playbook.failed') GROUP BY execution_id")
            done = await conn.fetch("SELECT execution_id, node_name, count(*) AS n FROM noetl.event "
                                    "WHERE event_type = 'call.done' GROUP BY execution_id, node_name")
        finally:
            await conn.close()
        assert len(terminal) == 10 and all(r["n"] == 1 for r in terminal)
        assert len(done) == 30 and all(r["n"] == 1 for r in done)  # no step ran twice
    finally:
        sup.stop_all()
        stop_pid(nats_pid)
