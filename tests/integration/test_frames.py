"""NoETL's frames runtime through a live fleet (shard, router, publisher, workers): a `process: frame`
cursor loop whose frame's work outlasts its lease commits because its worker heartbeats; a worker
killed mid-frame stops heartbeating, and its frame is abandoned and its rows run again by the
worker that takes the command over. The frames routes' refusals are checked through the router."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs
from noetl_devstack.processes import Supervisor

from tests.conformance.__main__ import credential_for

pytestmark = pytest.mark.integration

WORK_SECONDS = 7   # longer than the frame's lease
LEASE_SECONDS = 5  # the least the frames routes take

PLAYBOOK = f"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: frames, path: tests/frames}}
workflow:
  - step: start
    tool: {{kind: python, code: "result = {{'ok': True}}"}}
    next: [{{step: drain}}]
  - step: drain
    loop:
      iterator: job
      cursor:
        kind: postgres
        auth: pg_frames
        claim: >-
          UPDATE jobs SET status = 'claimed' WHERE id IN (
            SELECT id FROM jobs WHERE status = 'pending' ORDER BY id
            LIMIT {{{{ __frame_max_rows }}}} FOR UPDATE SKIP LOCKED) RETURNING id
      spec:
        mode: cursor
        frame: {{max_rows: 2, lease_seconds: {LEASE_SECONDS}, heartbeat_seconds: 1, process: frame}}
    tool:
      kind: python
      input: {{rows: "{{{{ iter.job }}}}"}}
      code: "import time\\ntime.sleep({WORK_SECONDS})\\nresult = {{'ids': sorted(r['id'] for r in rows)}}"
    next:
      arcs: [{{step: end, when: "{{{{ event.name == 'loop.done' }}}}"}}]
  - step: end
    tool: {{kind: python, code: "result = {{'done': True}}"}}
"""

FRAME_EVENTS = """
SELECT f.frame_id, f.status, f.attempts, f.owner_worker, f.row_count, s.status AS stage_status, s.kind,
       count(e.event_id) FILTER (WHERE e.event_type = 'frame.heartbeat') AS heartbeats,
       count(e.event_id) FILTER (WHERE e.event_type = 'frame.committed') AS committed,
       count(e.event_id) FILTER (WHERE e.status = 'ABANDONED') AS abandoned,
       array_agg(e.event_type || ':' || coalesce(e.worker_id, '') ORDER BY e.event_id) AS events
FROM noetl.frame f JOIN noetl.stage s ON s.stage_id = f.stage_id
LEFT JOIN noetl.event e ON e.frame_id = f.frame_id
WHERE f.execution_id = $1 AND s.step_name = 'drain'
GROUP BY f.frame_id, f.status, f.attempts, f.owner_worker, f.row_count, s.status, s.kind
"""


class Fleet:
    """One shard, router, publisher and two workers (started as a test needs them), with command
    leases short enough that a dead worker's command is taken over within seconds."""

    def __init__(self, dsn: str, cluster_dsn: str, nats_url: str) -> None:
        self.work = Path(tempfile.mkdtemp())
        self.dsn = dsn
        self.specs = {s.name: s for s in fleet_specs(FleetConfig(
            cluster_dsn=cluster_dsn, shard_dsns=[dsn], nats_url=nats_url,
            secrets=secrets.load_or_create(self.work / "s.json"), workers=2,
            extra_env={"NOETL_COMMAND_CLAIM_LEASE_SECONDS": "6", "NOETL_COMMAND_REAPER_INTERVAL_SECONDS": "0.5",
                       "NOETL_WORKER_PROGRESS_SECONDS": "1", "WORKER_MAX_CONCURRENT": "1"}))}
        self.sup = Supervisor(self.work / "logs")
        self.router = self.specs["router"].url

    async def start(self, *names: str) -> None:
        for name in names:
            self.sup.spawn(self.specs[name])
        await asyncio.gather(*(self.sup.wait_ready(n) for n in names))

    def kill(self, name: str) -> None:
        os.kill(self.sup.running[name][0].pid, signal.SIGKILL)


async def start_execution(session: aiohttp.ClientSession, fleet: Fleet, conn: asyncpg.Connection) -> int:
    await conn.execute("DROP TABLE IF EXISTS jobs; CREATE TABLE jobs (id int PRIMARY KEY, "
                       "status text NOT NULL DEFAULT 'pending'); INSERT INTO jobs (id) VALUES (1), (2)")
    async with session.post(f"{fleet.router}/api/credentials", json={
            "name": "pg_frames", "type": "postgres", "data": credential_for(fleet.dsn)}) as r:
        assert r.status in (200, 201), await r.text()
    async with session.post(f"{fleet.router}/api/catalog/register",
                            json={"content": base64.b64encode(PLAYBOOK.encode()).decode()}) as r:
        assert r.status == 200, await r.text()
    async with session.post(f"{fleet.router}/api/execute", json={"path": "tests/frames"}) as r:
        return int((await r.json())["execution_id"])


async def wait_terminal(session: aiohttp.ClientSession, router: str, eid: int, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with session.get(f"{router}/api/executions/{eid}/status", params={"steps": "true"}) as r:
            body = await r.json()
        if body.get("completed"):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"execution {eid} did not finish: {body}"
        await asyncio.sleep(0.2)


async def running_frame(conn: asyncpg.Connection, eid: int) -> asyncpg.Record:
    for _ in range(600):
        row = await conn.fetchrow("SELECT frame_id, stage_id, owner_worker, cursor::text AS cursor, "
                                  "cursor->>'worker_slot_id' AS slot FROM noetl.frame "
                                  "WHERE execution_id = $1 AND status = 'RUNNING'", eid)
        if row is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("no frame started")


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict]:
    async with session.post(url, json=body) as r:
        return r.status, await r.json()


@pytest_asyncio.fixture
async def fleet(fresh_databases, infra):
    dbs = await fresh_databases(1)
    fleet = Fleet(dbs.shard_dsns[0], dbs.cluster_dsn, infra.nats_url)
    try:
        yield fleet
    finally:
        fleet.sup.stop_all()


async def test_a_frame_longer_than_its_lease_commits_because_its_worker_heartbeats(fleet):
    await fleet.start("api-shard-0", "router", "outbox-publisher", "worker-0")
    conn = await asyncpg.connect(fleet.dsn)
    try:
        async with aiohttp.ClientSession() as session:
            eid = await start_execution(session, fleet, conn)
            frame = await running_frame(conn, eid)
            # While it runs, its lease is live: another worker's claim of it is refused, through the router.
            status, body = await post(session, f"{fleet.router}/api/stages/{frame['stage_id']}/frames/claim", {
                "worker_id": "intruder", "lease_seconds": LEASE_SECONDS, "cursor": json.loads(frame["cursor"])})
            assert (status, body["code"]) == (409, "frame_claim_conflict"), body
            status, body = await post(session, f"{fleet.router}/api/frames/{frame['frame_id']}/commit",
                                      {"worker_id": "intruder"})
            assert (status, body["code"]) == (409, "frame_owner_mismatch"), body
            final = await wait_terminal(session, fleet.router, eid)
            assert final["status"] == "COMPLETED", final
            assert final["steps"]["drain"]["results"] == [{"ids": [1, 2]}]
            (row,) = await conn.fetch(FRAME_EVENTS, eid)
            assert (row["status"], row["attempts"], row["owner_worker"], row["row_count"]) == ("COMPLETED", 1,
                                                                                               "worker-0", 2)
            assert (row["stage_status"], row["kind"]) == ("COMPLETED", "loop")
            assert row["heartbeats"] >= WORK_SECONDS - LEASE_SECONDS and row["committed"] == 1
            assert row["abandoned"] == 0
            assert row["events"][:2] == ["frame.dispatched:worker-0", "frame.started:worker-0"]
            assert row["events"][-1] == "frame.committed:worker-0"
            # a finished frame takes no more heartbeats
            status, body = await post(session, f"{fleet.router}/api/frames/{frame['frame_id']}/heartbeat",
                                      {"worker_id": "worker-0"})
            assert (status, body["code"]) == (409, "frame_already_terminal"), body
    finally:
        await conn.close()


async def test_a_frame_whose_worker_dies_is_abandoned_and_its_rows_run_again(fleet):
    await fleet.start("api-shard-0", "router", "outbox-publisher", "worker-0")
    conn = await asyncpg.connect(fleet.dsn)
    try:
        async with aiohttp.ClientSession() as session:
            eid = await start_execution(session, fleet, conn)
            frame = await running_frame(conn, eid)
            assert frame["owner_worker"] == "worker-0"
            fleet.kill("worker-0")  # no more heartbeats: the frame's lease lapses
            await fleet.start("worker-1")
            final = await wait_terminal(session, fleet.router, eid)
            assert final["status"] == "COMPLETED", final
            assert final["steps"]["drain"]["results"] == [{"ids": [1, 2]}]  # the frame's rows, run again
            (row,) = await conn.fetch(FRAME_EVENTS, eid)
            assert (row["status"], row["attempts"], row["owner_worker"]) == ("COMPLETED", 2, "worker-1")
            assert row["abandoned"] == 1 and row["committed"] == 1
            assert row["events"][:2] == ["frame.dispatched:worker-0", "frame.started:worker-0"]
            assert "frame.abandoned:worker-0" in row["events"] and row["events"][-1] == "frame.committed:worker-1"
            abandoned = await conn.fetchrow("SELECT meta->>'reclaimer_worker' AS reclaimer, "
                                            "(meta->'recovery')::text AS recovery FROM noetl.event "
                                            "WHERE frame_id = $1 AND event_type = 'frame.abandoned'", frame["frame_id"])
            assert abandoned["reclaimer"] == "worker-1"
            assert json.loads(abandoned["recovery"]) == {"retry_mode": "whole_frame", "row_split_retry": False,
                                                     "max_attempts": 3}
            # the dead worker's late words are refused: the frame is worker-1's now (and finished)
            status, body = await post(session, f"{fleet.router}/api/frames/{frame['frame_id']}/commit",
                                      {"worker_id": "worker-0"})
            assert status == 409, body
            attempt = await conn.fetchval("SELECT attempt FROM noetl.command WHERE execution_id = $1 "
                                          "AND command_id = $2", eid, int(frame["slot"]))
            assert attempt == 2
    finally:
        await conn.close()
