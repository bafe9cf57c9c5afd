"""The projector: events reach each shard's read models through JetStream (execution summaries,
step timelines), folding is idempotent, lag drains to zero, and the list shows the summary."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig

from noetl_common.sharding import shard_for
from noetl_common.streams import EVENTS_STREAM
from noetl_projector.consumer import decode

from .conftest import SHARDS, register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: projected, path: tests/projected}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: boom}]
  - step: boom
    tool: {kind: python, code: "raise ValueError('projected failure')"}
"""


async def _summary(dsn: str, execution_id: int) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    conn = await asyncpg.connect(dsn)
    try:
        summary = await conn.fetchrow("SELECT * FROM noetl.execution_summary WHERE execution_id = $1", execution_id)
        steps = await conn.fetch("SELECT step, status, attempt, worker_id, started_at, ended_at "
                                 "FROM noetl.step_timeline WHERE execution_id = $1 ORDER BY entry_id", execution_id)
        return summary, steps
    finally:
        await conn.close()


async def test_summaries_and_timelines_are_projected_on_the_owning_shard(live_fleet, http):
    await register(http, live_fleet.router, PLAYBOOK)
    async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/projected"}) as r:
        xid = (await r.json())["execution_id"]
    status = await wait_terminal(http, live_fleet.router, xid)
    assert status["status"] == "FAILED"
    owner = shard_for(int(xid), SHARDS)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        summary, steps = await _summary(live_fleet.shard_dsns[owner], int(xid))
        if summary is not None and summary["status"] == "FAILED":
            break
        assert asyncio.get_running_loop().time() < deadline, f"not projected: {summary}"
        await asyncio.sleep(0.2)
    assert summary["path"] == "tests/projected"
    assert summary["started_at"] <= summary["ended_at"] and summary["duration_ms"] >= 0
    assert "projected failure" in (summary["error"] or "")
    assert summary["failed_step_count"] >= 1
    assert {(s["step"], s["status"]) for s in steps} >= {("start", "COMPLETED"), ("boom", "FAILED")}
    for other in set(range(SHARDS)) - {owner}:
        assert (await _summary(live_fleet.shard_dsns[other], int(xid)))[0] is None

    # The list answers from the execution row plus the projected summary's counts.
    async with http.get(f"{live_fleet.router}/api/executions", params={"path": "tests/projected"}) as r:
        listed = [e for e in await r.json() if e["execution_id"] == xid]
    assert listed and listed[0]["status"] == "FAILED"
    assert listed[0]["event_count"] == summary["event_count"] > 0

    # Delivering the same messages again changes nothing.
    again = await _published_messages(live_fleet.spec("projector").env["NOETL_NATS_URL"], owner, int(xid))
    assert again
    async with http.post(f"{live_fleet.router}/api/internal/events/project", json={"messages": again},
                         headers={"Authorization": f"Bearer {live_fleet.token}"}) as r:
        body = await r.json()
        assert r.status == 200, body
        assert r.headers["X-Shard"] == str(owner)
    assert body == {"projected": 0, "duplicates": summary["event_count"]}
    assert (await _summary(live_fleet.shard_dsns[owner], int(xid)))[0]["event_count"] == summary["event_count"]


async def _published_messages(nats_url: str, shard: int, execution_id: int) -> list[dict]:
    """The execution's deliveries as JetStream holds them and the projector hands them over
    (published outbox rows are deleted, so the stream is where they are)."""
    nc = await nats.connect(nats_url)
    try:
        # Packs carry several transactions (of any execution): keep the deliveries of this one.
        sub = await nc.jetstream().pull_subscribe(f"noetl.events.{shard}.>", stream=EVENTS_STREAM,
                                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        messages = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                return messages
            for delivery in (d for m in batch for d in decode(m)):
                events = [msgspec.json.decode(e) for e in delivery.events]
                if any(e["execution_id"] == str(execution_id) for e in events):
                    messages.append({"id": delivery.id, "events": events})
    finally:
        await nc.close()


async def test_projection_lag_is_exported_per_shard_and_drains(live_fleet, http):
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with http.get(f"{live_fleet.url_of('projector')}/metrics") as r:
            text = await r.text()
        lags = [line for line in text.splitlines() if line.startswith("noetl_projector_lag_events{")]
        if len(lags) == SHARDS and all(line.endswith(" 0.0") for line in lags):
            break
        assert asyncio.get_running_loop().time() < deadline, lags
        await asyncio.sleep(0.5)
    assert 'noetl_projector_events_total{shard="0"}' in text
