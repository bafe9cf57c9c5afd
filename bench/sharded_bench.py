"""Sharded-fleet benchmark on one machine (each configuration gets its own embedded Postgres +
NATS and the whole fleet: shards, router, publisher, projector, 2 workers).

- router overhead: the same ingest load (POST /api/events, 20 clients) straight to the shard and
  through the router, 1 shard; throughput and latency ratios;
- aggregate throughput through the router with 1, 2 and 3 shards: events ingested per second
  (executions spread over every shard) and 3-step executions per second;
- listing: GET /api/executions (page of 50, newest first, merged across 3 shards) with 200 and
  with 20,000 finished executions. The history is seeded straight into the shard databases
  (what 20,000 real runs leave in the listed tables) — running them would take ~15 minutes here.
Writes bench/results/sharded.json. All processes share the machine's 2 cores, so more shards
add contention here rather than capacity; the numbers show the cost of the machinery."""

from __future__ import annotations

import asyncio
import base64
import json
import platform
import statistics
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import asyncpg

from noetl_common.ids import MAX_NODE, Snowflake
from noetl_common.sharding import shard_for
from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.local_fleet import discard_state
from noetl_devstack.processes import Supervisor

from .fleet_bench import THREE_STEPS, executions, ingest, pct

RESULTS = Path(__file__).resolve().parent / "results" / "sharded.json"


class Fleet:
    def __init__(self, router: str, shards: list[str], shard_dsns: list[str]) -> None:
        self.router, self.shards, self.shard_dsns = router, shards, shard_dsns


@asynccontextmanager
async def fleet(shards: int) -> AsyncIterator[Fleet]:
    work = Path(tempfile.mkdtemp(prefix="noetl-bench-"))
    infra = Infra(work)
    sup = Supervisor(work / "logs")
    try:
        info = await infra.up(shards)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=2, extra_env={"WORKER_MAX_CONCURRENT": "8",
                                                              "NOETL_LOG_LEVEL": "WARNING"}))
        await start_fleet(sup, specs)
        yield Fleet(router_url(specs), [s.url for s in specs if s.name.startswith("api-shard-")],
                    info.shard_dsns(shards))
    finally:
        sup.stop_all()
        infra.down()
        discard_state(work)


async def register(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/api/catalog/register",
                            json={"content": base64.b64encode(THREE_STEPS).decode()}) as r:
        assert r.status == 200, await r.text()


async def start_spread(session: aiohttp.ClientSession, url: str, shards: int) -> list[str]:
    """One execution per shard (placement is round robin)."""
    ids: dict[int, str] = {}
    while len(ids) < shards:
        async with session.post(f"{url}/api/execute", json={"path": "bench/three_steps"}) as r:
            xid = (await r.json())["execution_id"]
        ids.setdefault(shard_for(int(xid), shards), xid)
    return list(ids.values())


async def router_overhead(session: aiohttp.ClientSession) -> dict:
    async with fleet(1) as f:
        await register(session, f.router)
        targets = await start_spread(session, f.router, 1)
        await ingest(session, f.shards[0], targets, total=300)  # warm-up
        direct = await ingest(session, f.shards[0], targets, total=2000)
        routed = await ingest(session, f.router, targets, total=2000)
    return {"direct_to_shard": direct, "through_router": routed,
            "throughput_ratio": round(routed["events_per_second"] / direct["events_per_second"], 3),
            "p50_latency_ratio": round(routed["p50_ms"] / direct["p50_ms"], 3)}


async def throughput(session: aiohttp.ClientSession, shards: int) -> dict:
    async with fleet(shards) as f:
        await register(session, f.router)
        targets = await start_spread(session, f.router, shards)
        events = await ingest(session, f.router, targets, total=2000)
        runs = await executions(session, f.router, total=150, in_flight=40)
    return {"shards": shards, "post_events": events, "three_step_executions": runs}


async def seed_history(dsns: list[str], total: int) -> None:
    """`total` finished executions spread by hash over the shards, newest a minute ago."""
    shards = len(dsns)
    rows: list[list[tuple]] = [[] for _ in dsns]
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    # Snowflakes of now (the shards' current partitions hold them) from a node id no shard uses.
    ids = Snowflake(node_id=MAX_NODE)
    for n in range(total):
        xid = ids.next_id()
        started = now - timedelta(seconds=n)
        rows[shard_for(xid, shards)].append((xid, 1, "bench/history", 1, "COMPLETED", started, started,
                                             started + timedelta(milliseconds=250)))
    for dsn, batch in zip(dsns, rows):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table(
                "execution", schema_name="noetl", records=batch,
                columns=["execution_id", "catalog_id", "path", "version", "status", "created_at", "started_at",
                         "ended_at"])
            await conn.execute(
                "INSERT INTO noetl.execution_summary (execution_id, catalog_id, path, version, status, started_at,"
                " ended_at, event_count, step_count) SELECT execution_id, catalog_id, path, version, status, "
                "started_at, ended_at, 9, 3 FROM noetl.execution ON CONFLICT DO NOTHING")
            await conn.execute("ANALYZE noetl.execution; ANALYZE noetl.execution_summary")
        finally:
            await conn.close()


async def list_latency(session: aiohttp.ClientSession, url: str, requests: int = 60) -> dict:
    first, deep = [], []
    cursor = None
    for _ in range(requests):
        t = time.perf_counter()
        async with session.get(f"{url}/api/executions", params={"page_size": 50}) as r:
            page = await r.json()
            assert r.status == 200 and len(page) == 50, (r.status, str(page)[:500])
            cursor = r.headers.get("X-Next-Cursor")
        first.append(time.perf_counter() - t)
    for _ in range(min(requests, 20)):  # walk on: later pages cost the same (keyset, no offset)
        if cursor is None:
            break
        t = time.perf_counter()
        async with session.get(f"{url}/api/executions", params={"page_size": 50, "cursor": cursor}) as r:
            assert r.status == 200
            cursor = r.headers.get("X-Next-Cursor")
        deep.append(time.perf_counter() - t)
    return {"first_page_p50_ms": round(statistics.median(first) * 1000, 2), "first_page_p99_ms": pct(first, 99),
            "next_pages_p50_ms": round(statistics.median(deep) * 1000, 2), "next_pages_walked": len(deep)}


async def listing(session: aiohttp.ClientSession) -> dict:
    out = {}
    for total in (200, 20_000):
        async with fleet(3) as f:
            await seed_history(f.shard_dsns, total)
            await list_latency(session, f.router, 10)  # warm-up
            out[str(total)] = {"finished_executions": total, **await list_latency(session, f.router)}
    out["ratio_20000_vs_200"] = round(out["20000"]["first_page_p50_ms"] / out["200"]["first_page_p50_ms"], 3)
    return out


async def main() -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        report = {"benchmark": "sharded fleet on one machine (router, publisher, projector, 2 workers)",
                  "python": platform.python_version(), "cpus": 2,
                  "router_overhead": await router_overhead(session),
                  "throughput_by_shards": [await throughput(session, n) for n in (1, 2, 3)],
                  "listing": await listing(session)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
