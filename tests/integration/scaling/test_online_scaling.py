"""Online scaling on a real local fleet: continuous load while it grows 2 -> 3 shards and drains
back 3 -> 2. Every execution ends exactly once, every stored id belongs to its shard under the
final map, new executions spread over the shards the map places on, and listing and status work
through the router throughout, the real `noetl` CLI included. Waits have generous deadlines; nothing asserts a duration."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from noetl_common.ids import timestamp_ms
from noetl_common.minting import now_ms
from noetl_common.sharding import Epoch, ShardMap
from noetl_devstack.fleet import add_shard

from .conftest import ScalingFleet

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: three, path: tests/scaling/three_steps}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {a: "{{ start.a }}"}, code: "result = {'b': a + 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {b: "{{ middle.b }}"}, code: "result = {'c': b + 1}"}
"""
TERMINAL_EVENTS = ("playbook.completed", "playbook.failed", "execution.cancelled")
DEADLINE_SECONDS = 120.0


@dataclass
class Load:
    """Starts an execution through the router every few ms until stopped."""

    http: aiohttp.ClientSession
    router: str
    started: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            async with self.http.post(f"{self.router}/api/execute",
                                      json={"path": "tests/scaling/three_steps"}) as r:
                body = await r.json()
                if r.status == 200:
                    self.started.append(int(body["execution_id"]))
                else:
                    self.refused.append((r.status, str(body)))
            await asyncio.sleep(0.003)

    def since(self, unix_ms: int) -> int:
        return sum(1 for i in self.started if timestamp_ms(i) >= unix_ms)

    async def until(self, count: int, unix_ms: int = 0) -> None:
        await wait_for(lambda: self.since(unix_ms) >= count, f"{count} executions started after {unix_ms}")


@dataclass
class RouterReads:
    """Lists executions and asks one's status through the router, over and over."""

    http: aiohttp.ClientSession
    router: str
    load: Load
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.once()
            await asyncio.sleep(0.05)

    async def once(self) -> None:
        async with self.http.get(f"{self.router}/api/executions", params={"limit": "20"}) as r:
            if r.status != 200:
                self.failures.append(f"list: {r.status} {await r.text()}")
                return
            listed = await r.json()
        targets = [e["execution_id"] for e in listed[:1]] + [str(i) for i in self.load.started[-1:]]
        for eid in targets:
            async with self.http.get(f"{self.router}/api/executions/{eid}/status") as r:
                if r.status != 200:
                    self.failures.append(f"status {eid}: {r.status} {await r.text()}")
                    return
        self.ok += 1


NOETL_CLI = Path(sys.executable).parent / "noetl"


async def cli_checks(router: str, home: Path, load: Load) -> list[str]:
    """The real `noetl` CLI through the router: catalog list, and status of the newest execution
    (which may be on any shard, the new one included). Returns what went wrong."""
    parts = urlsplit(router)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}, "HOME": str(home)}
    base = [str(NOETL_CLI), "--host", parts.hostname, "--port", str(parts.port)]
    problems = []
    for args in (["catalog", "list", "Playbook"], ["status", str(load.started[-1]), "--json"]):
        run = await asyncio.to_thread(subprocess.run, base + args, capture_output=True, text=True, timeout=60,
                                      env=env)
        if run.returncode != 0 or "{" not in run.stdout:
            problems.append(f"noetl {' '.join(args)}: {run.returncode} {run.stdout[-300:]} {run.stderr[-300:]}")
            continue
        body = json.loads(run.stdout[run.stdout.index("{"):run.stdout.rindex("}") + 1])
        if args[0] == "status" and body.get("execution_id") != args[1]:
            problems.append(f"noetl status {args[1]} answered for {body.get('execution_id')}")
        if args[0] == "catalog" and "tests/scaling" not in str(body):
            problems.append(f"noetl catalog list lacks the playbook: {str(body)[:300]}")
    return problems


async def wait_for(predicate, what: str, timeout: float = DEADLINE_SECONDS) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def commit_epoch(http: aiohttp.ClientSession, shard_url: str, token: str, count: int) -> int:
    async with http.post(f"{shard_url}/api/internal/shard-map/epochs", json={"shard_count": count},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
        assert r.status == 200 and body["shard_count"] == count, body
        return body["effective_from_ms"]


async def shard_status(http: aiohttp.ClientSession, shard_url: str, token: str) -> dict:
    async with http.get(f"{shard_url}/api/internal/shard/status", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        return await r.json()


async def sleep_past(unix_ms: int) -> None:
    while now_ms() <= unix_ms:
        await asyncio.sleep(max(unix_ms - now_ms(), 1) / 1000)


@dataclass
class ShardRows:
    executions: dict[int, str]                     # execution_id -> status
    terminal: collections.Counter                  # execution_id -> terminal events
    ids: list[tuple[str, int]]                     # (what, id) of every id stored


async def read_shard(dsn: str) -> ShardRows:
    conn = await asyncpg.connect(dsn)
    try:
        executions = {r["execution_id"]: r["status"] for r in await conn.fetch(
            "SELECT execution_id, status FROM noetl.execution")}
        terminal = collections.Counter(r["execution_id"] for r in await conn.fetch(
            "SELECT execution_id FROM noetl.event WHERE event_type = ANY($1)", list(TERMINAL_EVENTS)))
        ids = [("execution", i) for i in executions]
        for what, sql in (("event", "SELECT event_id AS id FROM noetl.event"),
                          ("event.command_id", "SELECT command_id AS id FROM noetl.event WHERE command_id IS NOT NULL"),
                          ("command", "SELECT command_id AS id FROM noetl.command"),
                          ("outbox", "SELECT id FROM noetl.outbox")):
            ids.extend((what, r["id"]) for r in await conn.fetch(sql))
        return ShardRows(executions, terminal, ids)
    finally:
        await conn.close()


async def unfinished(dsns: list[str]) -> int:
    total = 0
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            total += await conn.fetchval("SELECT count(*) FROM noetl.execution WHERE status IN ('PENDING', 'RUNNING')")
        finally:
            await conn.close()
    return total


async def sse_until_end(http: aiohttp.ClientSession, router: str, execution_id: int) -> list[str]:
    events = []
    async with http.get(f"{router}/api/executions/{execution_id}/events/stream") as r:
        assert r.status == 200
        async for line in r.content:
            text = line.decode().strip()
            if text.startswith("event:"):
                events.append(text.split(":", 1)[1].strip())
                if events[-1] == "end":
                    break
    return events


@pytest.mark.parametrize("per_phase", [pytest.param(40, id="short"),
                                       pytest.param(400, id="long", marks=pytest.mark.scaling)])
async def test_grow_and_drain_under_continuous_load(scaling_fleet: ScalingFleet, per_phase: int, tmp_path: Path):
    f = scaling_fleet
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.post(f"{f.router}/api/catalog/register",
                             json={"content": base64.b64encode(PLAYBOOK.encode()).decode()}) as r:
            assert r.status == 200, await r.text()
        load = Load(http, f.router)
        reads = RouterReads(http, f.router, load)
        tasks = [asyncio.create_task(load.run()), asyncio.create_task(reads.run())]
        try:
            await load.until(per_phase)
            cli_problems = await cli_checks(f.router, tmp_path, load)  # before

            # Grow 2 -> 3: the new shard starts and is ready, then the epoch is committed.
            new_shard = await add_shard(f.supervisor, f.specs, admin_dsn=f.admin_dsn)
            assert new_shard.name == "api-shard-2"
            grow_at = await commit_epoch(http, f.shard_url(0), f.token, 3)
            await sleep_past(grow_at)
            await load.until(3 * per_phase, grow_at)
            cli_problems += await cli_checks(f.router, tmp_path, load)  # grown

            # Drain 3 -> 2: shard 2 takes no new executions from the moment it knows.
            drain_committed = now_ms()
            drain_at = await commit_epoch(http, f.shard_url(1), f.token, 2)
            assert drain_at >= drain_committed
            await sleep_past(drain_at)
            await load.until(per_phase, drain_at)
            cli_problems += await cli_checks(f.router, tmp_path, load)  # drained
        finally:
            load.stop.set()
            reads.stop.set()
            await asyncio.gather(*tasks)

        dsns = [f.shard_dsn(i) for i in range(3)]
        deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
        while await unfinished(dsns):
            assert asyncio.get_running_loop().time() < deadline, "executions did not finish"
            await asyncio.sleep(0.2)

        final = ShardMap(epochs=(Epoch(0, 2), Epoch(grow_at, 3), Epoch(drain_at, 2)))
        rows = [await read_shard(dsn) for dsn in dsns]
        # None refused, none lost, none twice, each completed with exactly one terminal event.
        assert load.refused == []
        where = {eid: shard for shard, r in enumerate(rows) for eid in r.executions}
        assert sum(len(r.executions) for r in rows) == len(where) == len(load.started) == len(set(load.started))
        for r in rows:
            assert set(r.executions.values()) == {"COMPLETED"}, collections.Counter(r.executions.values())
            assert all(r.terminal[eid] == 1 for eid in r.executions), "an execution ended more than once"
        # Every stored id hashes, under the final map, to the shard that holds it.
        for shard, r in enumerate(rows):
            wrong = [(what, i, final.owner(i)) for what, i in r.ids if final.owner(i) != shard]
            assert wrong == [], f"shard {shard} holds ids of other shards: {wrong[:5]}"
        # Placement followed the map: all three shards while grown, never shard 2 after the drain
        # was committed (its last ids are minted on the milliseconds before its drain epoch).
        grown = collections.Counter(where[i] for i in load.started if grow_at <= timestamp_ms(i) < drain_committed)
        assert set(grown) == {0, 1, 2} and min(grown.values()) >= 0.2 * sum(grown.values()), grown
        after = collections.Counter(where[i] for i in load.started if timestamp_ms(i) >= drain_at)
        assert set(after) == {0, 1}, after
        assert all(where[i] < 2 for i in load.started if timestamp_ms(i) >= drain_committed + 1_000)
        # Listing and status worked through the router before, during and after.
        assert reads.failures == [] and reads.ok > 0
        assert cli_problems == []
        await reads.once()
        assert reads.failures == []

        # Shard 2's history is readable through the router while it runs, live events included.
        on_two = next(i for i in load.started if where[i] == 2)
        streamed = await sse_until_end(http, f.router, on_two)
        assert "playbook.completed" in streamed and streamed[-1] == "end", streamed
        # It is drained once its outbox is published; then it can go.
        status: dict = {}

        async def drained() -> bool:
            status.update(await shard_status(http, f.shard_url(2), f.token))
            return status["drained"]
        deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
        while not await drained():
            assert asyncio.get_running_loop().time() < deadline, f"shard 2 not drained: {status}"
            await asyncio.sleep(0.2)
        assert status["draining"] and status["shard_count_now"] == 2 and status["running_executions"] == 0
        assert status["total_executions"] == len(rows[2].executions)
        assert not (await shard_status(http, f.shard_url(0), f.token))["draining"]

        f.supervisor.stop("api-shard-2")
        # Gone: its ids get a 503 naming it, never another shard's answer; the rest still works.
        async def refused_by_router() -> bool:
            async with http.get(f"{f.router}/api/executions/{on_two}/status") as r:
                body = await r.json()
                return r.status == 503 and body.get("shard") == 2
        deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
        while not await refused_by_router():
            assert asyncio.get_running_loop().time() < deadline, "the router still answers for the stopped shard"
            await asyncio.sleep(0.2)
        async with http.get(f"{f.router}/metrics") as r:
            metrics = await r.text()
        deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
        while 'noetl_router_upstream_healthy{shard="2"} 0.0' not in metrics:
            assert asyncio.get_running_loop().time() < deadline, "the router never saw shard 2 go"
            await asyncio.sleep(0.2)
            async with http.get(f"{f.router}/metrics") as r:
                metrics = await r.text()
        await reads.once()
        assert reads.failures == []
        async with http.post(f"{f.router}/api/execute", json={"path": "tests/scaling/three_steps"}) as r:
            assert r.status == 200 and r.headers["X-Shard"] in ("0", "1")
        print(f"\nscaling: {len(load.started)} executions; while grown {dict(grown)}; after the drain {dict(after)}")
