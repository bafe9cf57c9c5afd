"""GET /api/executions/{id}/events/stream through the router: Server-Sent Events that replay the
log, follow new events live, end at the terminal event, and resume after Last-Event-ID."""

from __future__ import annotations

import aiohttp

from .conftest import register

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: streamed, path: tests/streamed}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\ntime.sleep(1.0)\\nresult = {'slow': True}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'done': 1}"}
"""


async def read_sse(resp: aiohttp.ClientResponse) -> list[dict]:
    frames, current = [], {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if current:
                frames.append(current)
                if current.get("event") == "end":
                    return frames
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return frames


async def test_stream_follows_live_until_the_terminal_event_then_resumes(live_fleet, http):
    await register(http, live_fleet.router, PLAYBOOK)
    async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/streamed"}) as r:
        xid = (await r.json())["execution_id"]
    # Opened right away: the execution is still running, so most events arrive live.
    async with http.get(f"{live_fleet.router}/api/executions/{xid}/events/stream") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["X-Shard"]
        frames = await read_sse(r)
    kinds = [f["event"] for f in frames]
    assert kinds[0] == "playbook.initialized"
    assert kinds[-1] == "end" and "playbook.completed" in kinds
    ids = [int(f["id"]) for f in frames[:-1]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    async with http.get(f"{live_fleet.router}/api/executions/{xid}/events") as r:
        logged = [(e["event_id"], e["event_type"]) for e in (await r.json())["events"]][::-1]  # newest first
    # The log in order, through the terminal event and what was committed with it.
    assert [str(i) for i in ids] == [i for i, _ in logged[:len(ids)]]
    assert len(ids) > [t for _, t in logged].index("playbook.completed")

    async with http.get(f"{live_fleet.router}/api/executions/{xid}/events/stream",
                        headers={"Last-Event-ID": str(ids[2])}) as r:
        resumed = await read_sse(r)
    assert [int(f["id"]) for f in resumed[:-1]] == ids[3:]
    assert resumed[-1]["event"] == "end"

    async with http.get(f"{live_fleet.router}/api/executions/{xid}/events/stream",
                        headers={"Last-Event-ID": logged[-1][0]}) as r:
        after_end = await read_sse(r)
    assert [f["event"] for f in after_end] == ["end"]


async def test_stream_bad_last_event_id_is_a_json_400(live_fleet, http):
    async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/streamed"}) as r:
        xid = (await r.json())["execution_id"]
    async with http.get(f"{live_fleet.router}/api/executions/{xid}/events/stream",
                        headers={"Last-Event-ID": "not-an-id"}) as r:
        assert r.status == 400
        assert "Last-Event-ID" in (await r.json())["error"]
    # An empty first read of the log is where the stream asks whether the execution exists.
    missing = int(xid) + 1
    async with http.get(f"{live_fleet.router}/api/executions/{missing}/events/stream") as r:
        assert r.status == 404
        assert r.headers["Content-Type"].startswith("application/json")
        assert f"execution {missing} not found" in (await r.json())["error"]
