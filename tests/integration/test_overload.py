"""Overload: far more concurrent requests than the fleet admits. Beyond its in-flight bound it
sheds load with 429/503 + Retry-After (never another 5xx, never a timeout), every execution it
accepted finishes exactly once, and it serves normally as soon as the flood stops.

`make overload` runs the long version (NOETL_OVERLOAD_SECONDS=30) and writes its numbers to
bench/results/overload.json; `make test` runs a few seconds of it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import aiohttp
import asyncpg

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.processes import Supervisor

QUICK = b"""apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: quick, path: tests/overload}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'ok': True}"}
"""
SECONDS = float(os.environ.get("NOETL_OVERLOAD_SECONDS", "4"))
CLIENTS = int(os.environ.get("NOETL_OVERLOAD_CLIENTS", "120"))
ADMITTED = 24  # requests in flight per process; CLIENTS is 5x that and more


async def _flood(http: aiohttp.ClientSession, router: str, until: float, tally: dict, accepted: list[str],
                 latencies: list[float]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        async with http.post(f"{router}/api/execute", json={"path": "tests/overload"}) as r:
            body = await r.json()
            latencies.append(time.monotonic() - started)
            tally[r.status] = tally.get(r.status, 0) + 1
            if r.status in (429, 503):
                assert int(r.headers["Retry-After"]) > 0, body
                await asyncio.sleep(0.02)  # a flood: it does not wait as long as it is told
            elif r.status < 300:
                accepted.append(body["execution_id"])
            else:
                raise AssertionError(f"{r.status}: {body}")


async def test_a_flood_is_shed_with_retry_after_and_nothing_accepted_is_lost(fresh_databases, infra, tmp_path):
    dbs = await fresh_databases(1)
    specs = fleet_specs(FleetConfig(
        cluster_dsn=dbs.cluster_dsn, shard_dsns=dbs.shard_dsns, nats_url=infra.nats_url,
        secrets=secrets.load_or_create(tmp_path / "s.json"), workers=1,
        extra_env={"NOETL_MAX_IN_FLIGHT": str(ADMITTED)}))
    sup = Supervisor(tmp_path / "logs")
    router = router_url(specs)
    try:
        await start_fleet(sup, specs)
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(f"{router}/api/catalog/register",
                                 json={"content": base64.b64encode(QUICK).decode()}) as r:
                assert r.status == 200
            tally: dict[int, int] = {}
            accepted: list[str] = []
            latencies: list[float] = []
            until = time.monotonic() + SECONDS
            await asyncio.gather(*(_flood(http, router, until, tally, accepted, latencies) for _ in range(CLIENTS)))
            shed = tally.get(429, 0) + tally.get(503, 0)
            assert shed > 0, f"nothing was shed: {tally}"
            assert accepted, f"nothing was accepted: {tally}"

            drain_started = time.monotonic()
            conn = await asyncpg.connect(dbs.shard_dsns[0])
            try:
                while True:
                    rows = await conn.fetch(
                        "SELECT execution_id, count(*) AS n FROM noetl.event "
                        "WHERE event_type IN ('playbook.completed', 'playbook.failed') GROUP BY execution_id")
                    if len(rows) >= len(accepted) or time.monotonic() - drain_started > 240:
                        break
                    await asyncio.sleep(0.5)
            finally:
                await conn.close()
            drained = time.monotonic() - drain_started
            ended = {str(r["execution_id"]): r["n"] for r in rows}
            assert set(accepted) <= set(ended), f"{len(set(accepted) - set(ended))} accepted executions never ended"
            assert all(n == 1 for n in ended.values()), "an execution ended twice"

            # Recovered by itself: a plain request is served at once.
            async with http.post(f"{router}/api/execute", json={"path": "tests/overload"}) as r:
                assert r.status < 300, await r.text()
        latencies.sort()
        report = {"seconds": SECONDS, "clients": CLIENTS, "admitted_per_process": ADMITTED,
                  "answers": {str(k): v for k, v in sorted(tally.items())}, "accepted": len(accepted),
                  "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                  "request_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                  "request_max_ms": round(latencies[-1] * 1000, 1), "drain_seconds": round(drained, 1)}
        print("overload:", json.dumps(report))
        if os.environ.get("NOETL_OVERLOAD_REPORT"):
            Path(os.environ["NOETL_OVERLOAD_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        sup.stop_all()
