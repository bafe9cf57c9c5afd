"""Single events sent on together: a burst of `POST /api/events` through the router reaches each
shard in relayed batches (the router's metric shows batches of more than one), every event is
answered as it would have been alone (a bad one gets its own 4xx, with the same JSON; its
neighbours are logged), and each logged event is in its execution's log once."""

from __future__ import annotations

import asyncio
import base64
import re

import aiohttp
import pytest
import pytest_asyncio

from noetl_common.ids import mint_for_shard
from noetl_common.sharding import shard_for

from .conftest import SHARDS

pytestmark = pytest.mark.integration

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: relayed
  path: tests/relayed
workflow:
  - step: start
    tool: {kind: python, code: 'result = {"ok": True}'}
"""
PER_EXECUTION = 40
BAD_EVERY = 10


@pytest_asyncio.fixture(scope="module")
async def executions(fleet) -> list[str]:
    """Executions on every shard (no worker runs them: they stay RUNNING, taking events)."""
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{fleet.router_url}/api/catalog/register",
                          json={"content": base64.b64encode(PLAYBOOK.encode()).decode()}) as r:
            assert r.status == 200, await r.text()
        ids: list[str] = []
        while {shard_for(int(e), SHARDS) for e in ids} != set(range(SHARDS)):
            async with s.post(f"{fleet.router_url}/api/execute", json={"path": "tests/relayed"}) as r:
                assert r.status == 200, await r.text()
                ids.append((await r.json())["execution_id"])
    return ids


def _event(eid: str, n: int) -> dict:
    return {"execution_id": eid, "event_type": "worker.heartbeat", "node_name": "start", "worker_id": "w-relay",
            "payload": {"n": n}}


def _bad(eid: str, n: int) -> dict:
    # Two ways to be wrong: a field of the wrong type (422), an execution that does not exist (404).
    if n % 2:
        return {**_event(eid, n), "event_type": 5}
    return _event(str(mint_for_shard(shard_for(int(eid), SHARDS), SHARDS)), n)


async def _post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict, str]:
    async with http.post(f"{url}/api/events", json=body) as r:
        return r.status, await r.json(), r.headers.get("X-Shard", "")


def _relayed(metrics: str) -> tuple[float, float]:
    def total(series: str) -> float:
        return sum(float(v) for v in re.findall(rf"^noetl_router_relayed_events_{series}{{[^}}]*}} (\S+)$", metrics, re.M))
    return total("count"), total("sum")


async def test_a_burst_is_relayed_in_batches_and_each_event_answered_as_alone(fleet, executions):
    url = fleet.router_url
    bodies = [(_bad if n % BAD_EVERY == 0 else _event)(eid, n)
              for eid in executions for n in range(PER_EXECUTION)]
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"{url}/metrics") as r:
            before = _relayed(await r.text())
        sem = asyncio.Semaphore(64)

        async def one(body: dict) -> tuple[int, dict, str]:
            async with sem:
                return await _post(http, url, body)

        burst = await asyncio.gather(*(one(b) for b in bodies))
        async with http.get(f"{url}/metrics") as r:
            after = _relayed(await r.text())
        batches, relayed = after[0] - before[0], after[1] - before[1]
        assert batches > 0 and relayed > batches, f"no batch of more than one event ({batches} batches, {relayed} events)"

        # Each answer is the one the same event gets alone (an idle router sends it as it came).
        for body, (status, answer, shard) in zip(bodies, burst):
            if body["payload"]["n"] % BAD_EVERY:
                assert status == 200 and answer["status"] == "ok" and isinstance(answer["event_id"], int), answer
                assert shard == str(shard_for(int(body["execution_id"]), SHARDS))
                continue
            alone = await _post(http, url, body)
            assert (status, answer) == alone[:2], (body, answer, alone)
            assert status in (404, 422), answer

        # Every good event is in its execution's log, once, under the id it was answered with.
        answered: dict[str, list[str]] = {eid: [] for eid in executions}
        for body, (status, answer, _) in zip(bodies, burst):
            if status == 200:
                answered[body["execution_id"]].append(str(answer["event_id"]))
        for eid in executions:
            async with http.get(f"{url}/api/executions/{eid}/events",
                                params={"event_type": "worker.heartbeat", "page_size": "500"}) as r:
                assert r.status == 200, await r.text()
                logged = sorted(e["event_id"] for e in (await r.json())["events"])
            assert logged == sorted(answered[eid]), eid
            assert len(logged) == PER_EXECUTION - PER_EXECUTION // BAD_EVERY


async def test_a_shard_killed_mid_burst_answers_each_event_200_or_503_with_retry_after(fleet, executions):
    """Events relayed to a shard that dies: those it took are 200, the rest a 503 naming it with
    Retry-After (a lone request's answer), never a 500 or a hang; the shard comes back."""
    url = fleet.router_url
    victim = fleet.shards[SHARDS - 1]
    eid = next(e for e in executions if shard_for(int(e), SHARDS) == victim.index)
    answers: list[tuple[int, dict, str | None]] = []
    stop = asyncio.Event()

    async def client(n0: int) -> None:
        n = n0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while not stop.is_set():
                async with http.post(f"{url}/api/events", json=_event(eid, n)) as r:
                    answers.append((r.status, await r.json(), r.headers.get("Retry-After")))
                n += 1000

    clients = [asyncio.create_task(client(i)) for i in range(32)]
    try:
        while len(answers) < 100:
            await asyncio.sleep(0.01)
        victim.kill()
        while sum(1 for status, _, _ in answers if status == 503) < 32:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        victim.start()
        await victim.wait_ready()
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503}, statuses
    for status, body, retry_after in answers:
        if status == 503:
            assert retry_after and body["shard"] == victim.index and f"shard {victim.index}" in body["error"], body
