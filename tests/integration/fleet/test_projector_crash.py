"""The projector SIGKILLed while events stream in: its successor resumes from the durable
consumers, and every execution's summary counts each of its events exactly once."""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from noetl_common.sharding import shard_for

from .conftest import SHARDS, register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: crashy, path: tests/crashy}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'b': 2}"}
"""


async def test_projector_killed_mid_stream_resumes_and_counts_each_event_once(live_fleet, http):
    await register(http, live_fleet.router, PLAYBOOK)
    ids = []
    for i in range(20):
        async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/crashy"}) as r:
            ids.append((await r.json())["execution_id"])
        if i == 8:  # mid-stream: batches in flight, some acked, some not
            _, proc = live_fleet.supervisor.running["projector"]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    await asyncio.gather(*(wait_terminal(http, live_fleet.router, x) for x in ids))
    live_fleet.supervisor.running.pop("projector")
    live_fleet.supervisor.spawn(live_fleet.spec("projector"))
    await live_fleet.supervisor.wait_ready("projector")

    async def counts(shard: int, owned: list[int]) -> dict[int, tuple[int, int | None, str | None]]:
        conn = await asyncpg.connect(live_fleet.shard_dsns[shard])
        try:
            logged = {r["execution_id"]: r["n"] for r in await conn.fetch(
                "SELECT execution_id, count(*) AS n FROM noetl.event WHERE execution_id = ANY($1::bigint[]) "
                "GROUP BY execution_id", owned)}
            summary = {r["execution_id"]: (r["event_count"], r["status"]) for r in await conn.fetch(
                "SELECT execution_id, event_count, status FROM noetl.execution_summary "
                "WHERE execution_id = ANY($1::bigint[])", owned)}
            return {x: (logged.get(x, 0), *summary.get(x, (None, None))) for x in owned}
        finally:
            await conn.close()

    by_shard: dict[int, list[int]] = {}
    for x in ids:
        by_shard.setdefault(shard_for(int(x), SHARDS), []).append(int(x))
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        seen = {}
        for shard, owned in by_shard.items():
            seen.update(await counts(shard, owned))
        if all(n == projected and status == "COMPLETED" for n, projected, status in seen.values()):
            break
        assert asyncio.get_running_loop().time() < deadline, \
            {x: v for x, v in seen.items() if v[0] != v[1] or v[2] != "COMPLETED"}
        await asyncio.sleep(0.5)
