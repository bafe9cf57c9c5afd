"""Aggregate throughput before, during and after an online grow from 2 to 3 shards, under the
same load: 3-step executions with a fixed number in flight through the router (completion seen
by one RUNNING-list poller, not per execution). The fleet starts the way `make run` starts it
(embedded Postgres + NATS, router, publisher, projector, 2 workers); the third shard is added to
the running fleet and joins through a shard-map epoch, as `make scale` does.

Writes bench/results/grow.json. All processes share this machine's 2 cores, so a third shard
adds contention here, not capacity: the figure shows what the grow costs and that the load keeps
flowing through it, not a speed-up.

    python -m bench.grow_bench [--executions 200] [--in-flight 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import time
from pathlib import Path

import aiohttp

from noetl_common.minting import now_ms
from noetl_common.sharding import Epoch, ShardMap
from noetl_devstack.fleet import add_shard
from noetl_devstack.local_fleet import own_fleet

from .hotpath_workloads import THREE_STEPS, register, three_step_run

RESULTS = Path(__file__).resolve().parent / "results" / "grow.json"


def say(text: str) -> None:
    print(f"[grow {time.strftime('%H:%M:%S')}] {text}", flush=True)


async def commit_epoch(session: aiohttp.ClientSession, shard_url: str, token: str, count: int) -> int:
    async with session.post(f"{shard_url}/api/internal/shard-map/epochs", json={"shard_count": count},
                            headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"epoch commit refused: {r.status} {body}")
        return int(body["effective_from_ms"])


def spread(ids: list[str], shard_map: ShardMap) -> dict[str, int]:
    return dict(sorted(collections.Counter(str(shard_map.owner(int(i))) for i in ids).items()))


async def bench(executions: int, in_flight: int) -> dict:
    async with own_fleet("noetl-grow-", 2, workers=2,
                         extra_env={"WORKER_MAX_CONCURRENT": "8", "NOETL_LOG_LEVEL": "WARNING"}) as fleet:
        sup, specs, router, token = fleet.supervisor, fleet.specs, fleet.router, fleet.token
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await register(session, router, THREE_STEPS)
            say("warm-up")
            await three_step_run(session, router, 40, in_flight)
            say(f"before: {executions} executions, {in_flight} in flight, 2 shards")
            before = await three_step_run(session, router, executions, in_flight)
            say(f"  {before['wf_per_s']} wf/s")

            say("during: the same load while api-shard-2 starts and its epoch is committed")
            grow = {}

            async def do_grow() -> None:
                t0 = time.perf_counter()
                shard = await add_shard(sup, specs, admin_dsn=fleet.admin_dsn)
                grow["shard_ready_s"] = round(time.perf_counter() - t0, 3)
                grow["effective_from_ms"] = await commit_epoch(session, specs[0].url, token, 3)
                grow["committed_after_s"] = round(time.perf_counter() - t0, 3)
                grow["shard"] = shard.name

            during, _ = await asyncio.gather(three_step_run(session, router, executions, in_flight), do_grow())
            say(f"  {during['wf_per_s']} wf/s; shard ready after {grow['shard_ready_s']} s")
            while now_ms() <= grow["effective_from_ms"]:  # the epoch takes effect after its grace
                await asyncio.sleep(0.1)

            say(f"after: {executions} executions, 3 shards")
            after = await three_step_run(session, router, executions, in_flight)
            say(f"  {after['wf_per_s']} wf/s")
            final = ShardMap(epochs=(Epoch(0, 2), Epoch(grow["effective_from_ms"], 3)))
            after_ids = await newest_ids(session, router, executions)
    return {"before_2_shards": before, "during_grow": during, "after_3_shards": after, "grow": grow,
            "after_vs_before": round(after["wf_per_s"] / before["wf_per_s"], 3),
            "during_vs_before": round(during["wf_per_s"] / before["wf_per_s"], 3),
            "executions_per_shard_after": spread(after_ids, final)}


async def newest_ids(session: aiohttp.ClientSession, router: str, count: int) -> list[str]:
    """Ids of the newest executions (the after phase's), from the router's merged listing."""
    async with session.get(f"{router}/api/executions", params={"limit": str(count)}) as r:
        return [e["execution_id"] for e in await r.json()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=40)
    args = parser.parse_args(argv)
    report = {"benchmark": "online grow 2 -> 3 shards under the same load", "python": platform.python_version(),
              "cpus": 2, **asyncio.run(bench(args.executions, args.in_flight))}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    say(f"after/before {report['after_vs_before']}, during/before {report['during_vs_before']}; "
        f"after: executions per shard {report['executions_per_shard_after']}; {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
