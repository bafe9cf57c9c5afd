"""Fleet benchmark on one machine: a 1-shard fleet (embedded Postgres + NATS, publisher, 2 workers).

- events ingested per second and p50/p99 latency of POST /api/events (heartbeat events: each is a
  full ingest transaction with the execution lock and outbox row), 20 concurrent clients;
- executions per second and p50/p99 start-to-complete latency for a 3-step python playbook with
  50 executions in flight.
Writes bench/results/fleet.json."""

from __future__ import annotations

import asyncio
import base64
import json
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.local_fleet import discard_state
from noetl_devstack.processes import Supervisor

from .hotpath_workloads import THREE_STEPS

RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)


async def ingest(session, url, targets: list[str], total=3000, clients=20) -> dict:
    """Heartbeat events spread round robin over `targets` (execution ids), each a full ingest."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def client():
        for n in counter:
            t = time.perf_counter()
            async with session.post(f"{url}/api/events", json={
                    "execution_id": targets[n % len(targets)], "event_type": "worker.heartbeat",
                    "step": "bench", "payload": {"n": n}}) as r:
                assert r.status == 200, await r.text()
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return {"events": total, "clients": clients, "events_per_second": round(total / elapsed),
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


async def executions(session, url, total=300, in_flight=50) -> dict:
    durations: list[float] = []
    counter = iter(range(total))

    async def one():
        for _ in counter:
            async with session.post(f"{url}/api/execute", json={"path": "bench/three_steps"}) as r:
                eid = (await r.json())["execution_id"]
            while True:
                async with session.get(f"{url}/api/executions/{eid}") as r:
                    body = await r.json()
                if body["status"] in ("COMPLETED", "FAILED"):
                    assert body["status"] == "COMPLETED", body
                    start, end = (datetime.fromisoformat(body[k]) for k in ("start_time", "end_time"))
                    durations.append((end - start).total_seconds())
                    break
                await asyncio.sleep(0.05)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(in_flight)))
    elapsed = time.perf_counter() - t0
    return {"executions": total, "in_flight": in_flight, "executions_per_second": round(total / elapsed, 1),
            "p50_ms": pct(durations, 50), "p99_ms": pct(durations, 99)}


async def start_one(session, url) -> str:
    async with session.post(f"{url}/api/execute", json={"path": "bench/three_steps"}) as r:
        return (await r.json())["execution_id"]


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="noetl-bench-"))
    infra = Infra(work)
    sup = Supervisor(work / "logs")
    try:
        info = await infra.up(1)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(1),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=2, extra_env={"WORKER_MAX_CONCURRENT": "8",
                                                              "NOETL_LOG_LEVEL": "WARNING"}))
        await start_fleet(sup, specs)
        url = specs[0].url
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/api/catalog/register",
                                    json={"content": base64.b64encode(THREE_STEPS).decode()}) as r:
                assert r.status == 200
            report = {"benchmark": "fleet on one machine (1 shard, publisher, 2 workers)",
                      "python": platform.python_version(), "cpus": 2,
                      "post_events": await ingest(session, url, [await start_one(session, url)]),
                      "three_step_executions": await executions(session, url)}
    finally:
        sup.stop_all()
        infra.down()
        discard_state(work)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
