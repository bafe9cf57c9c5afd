"""What a step costs the fleet's databases, counted (never timed): a sequential loop through the
whole fleet (router, shards, publisher, projector, workers with eager dispatch) must stay within
the hot-path budget of DESIGN.md — at most 4 write transactions per step across every database,
publisher and projector included — and its log must replay to the stored state and data.

Write transactions are counted exactly as the transaction ids Postgres assigned (the fleet has
its own server), so read-only probes and idle polls, which write nothing, do not blur the count.
"""

from __future__ import annotations

import asyncio

import asyncpg

from .conftest import LiveFleet, register, wait_terminal

ITEMS = 200
BUDGET_PER_STEP = 4

PLAYBOOK = f"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: cost, path: tests/hot_path_cost}}
workload: {{n: {ITEMS}}}
workflow:
  - step: start
    tool: {{kind: python, code: "result = {{'ok': True}}"}}
    next: [{{step: each}}]
  - step: each
    loop: {{in: "{{{{ workload.n }}}}", iterator: i, spec: {{mode: sequential}}}}
    tool: {{kind: python, input: {{i: "{{{{ i }}}}"}}, code: "result = {{'i': i * 2}}"}}
    next: [{{step: end}}]
  - step: end
    tool: {{kind: python, input: {{total: "{{{{ each.stats.total }}}}"}}, code: "result = {{'total': total}}"}}
"""


async def _next_xid(admin_dsn: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
    finally:
        await conn.close()


async def _outbox_left(dsns: list[str]) -> int:
    total = 0
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            total += await conn.fetchval("SELECT count(*) FROM noetl.outbox")
        finally:
            await conn.close()
    return total


async def test_a_loop_step_costs_at_most_four_write_transactions(live_fleet: LiveFleet, http):
    await register(http, live_fleet.router, PLAYBOOK)
    before = await _next_xid(live_fleet.admin_dsn)
    async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/hot_path_cost"}) as r:
        execution_id = (await r.json())["execution_id"]
    status = await wait_terminal(http, live_fleet.router, execution_id, timeout=180)
    assert status["status"] == "COMPLETED", status
    assert status["result"] == {"total": ITEMS}
    for _ in range(100):  # the relay of the last steps (publisher, projector) is part of the cost
        if await _outbox_left(live_fleet.shard_dsns) == 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the projector's last fold
    steps = ITEMS + 2
    written = await _next_xid(live_fleet.admin_dsn) - before
    assert written <= BUDGET_PER_STEP * steps, f"{written} write transactions for {steps} steps"

    async with http.get(f"{live_fleet.router}/api/executions/{execution_id}/status?steps=true") as r:
        body = await r.json()
    assert body["steps"]["each"]["results"] == [{"i": i * 2} for i in range(ITEMS)]
    async with http.get(f"{live_fleet.router}/api/replay/state", params={"execution_id": execution_id}) as r:
        replay = await r.json()
    assert replay["matches"], replay
