"""A cursor-mode loop end to end: the claim runs as a postgres command on a worker against a
real table, the step runs once per claimed row, frames repeat until the claim returns nothing."""

from __future__ import annotations

import asyncpg

from noetl_devstack.postgres import ensure_databases

from tests.conformance.__main__ import credential_for

from .conftest import register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: drain_queue, path: tests/drain_queue}
workload: {cred: pg_cursor}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'ok': True}"}
    next: [{step: drain}]
  - step: drain
    loop:
      iterator: job
      cursor:
        kind: postgres
        auth: "{{ workload.cred }}"
        claim: >-
          UPDATE jobs SET status = 'claimed' WHERE id IN (
            SELECT id FROM jobs WHERE status = 'pending' ORDER BY id
            LIMIT {{ __frame_max_rows }} FOR UPDATE SKIP LOCKED) RETURNING id, payload
      spec: {mode: cursor, frame: {max_rows: 3, row_concurrency: 2}}
    tool:
      kind: postgres
      auth: "{{ workload.cred }}"
      command: "UPDATE jobs SET status = 'done', seen = '{{ iter.job.payload }}' WHERE id = {{ iter.job.id }}"
    next:
      arcs: [{step: end, when: "{{ event.name == 'loop.done' }}"}]
  - step: end
    tool: {kind: python, input: {stats: "{{ drain.stats }}"}, code: "result = stats"}
"""


async def test_cursor_loop_drains_a_table_in_frames(live_fleet, http):
    dsn = (await ensure_databases(live_fleet.admin_dsn, ["cursor_scratch"]))["cursor_scratch"]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS jobs; CREATE TABLE jobs (id int PRIMARY KEY, payload text, "
                           "status text NOT NULL DEFAULT 'pending', seen text)")
        await conn.executemany("INSERT INTO jobs (id, payload) VALUES ($1, $2)", [(i, f"p{i}") for i in range(1, 8)])
        async with http.post(f"{live_fleet.router}/api/credentials",
                             json={"name": "pg_cursor", "type": "postgres", "data": credential_for(dsn)}) as r:
            assert r.status in (200, 201), await r.text()
        await register(http, live_fleet.router, PLAYBOOK)
        async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/drain_queue"}) as r:
            xid = (await r.json())["execution_id"]
        status = await wait_terminal(http, live_fleet.router, xid)
        assert status["status"] == "COMPLETED", status
        rows = await conn.fetch("SELECT id, status, seen FROM jobs ORDER BY id")
        assert [(r["status"], r["seen"]) for r in rows] == [("done", f"p{i}") for i in range(1, 8)]
        async with http.get(f"{live_fleet.router}/api/executions/{xid}/status", params={"steps": "true"}) as r:
            body = await r.json()
        assert body["steps"]["end"] == {"total": 7, "success": 7, "failed": 0}
        # Frames of 3, 3, 1, then an empty claim: 4 claims + 7 bodies.
        assert body["issued"]["drain"] == 11
    finally:
        await conn.close()
