"""Scale-out, measured: each api-shard capped at the same CPU share (its own cgroup; and its
database's server in the same group when it has one of its own), the shared parts (router,
publisher, projector, workers, NATS, the shared Postgres) uncapped, so a shard is the bottleneck
and what adding one adds can be read off. At each shard count N a fresh fleet (the one fleet
starter, noetl_devstack.local_fleet) runs:

- 3-step: `per_shard`*N executions through the router with `in_flight`*N started and not yet
  finished at any time; completion is read straight from the shards' databases (a count per
  shard every 50 ms), so watching costs the shards nothing;
- ingest: `events_per_shard`*N worker events (POST /api/events) from `in_flight`*N clients
  against 2 executions kept running (sleepers) on every shard.

Efficiency at N = aggregate / (N x the aggregate at 1 shard). Per-process CPU per workflow (or
per event) comes from each process's cgroup (cpuacct), exited Postgres backends included. What
capped each run is named: the shards' quota when they used it, else the busiest shared part.

`--routers`: the router capped instead (shards uncapped): the request rate of one router and of
two in front of the same shards (GET of an execution row through each router).

Embedded Postgres is durable (WAL flushed at commit), as in production. Writes
bench/results/scale.json; exits 0 with a message (writing nothing) where no cgroup is writable.

    python -m bench.scale_bench [--shards 1,2,4,8] [--servers shared,own] [--per-shard 150] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import asyncpg
from noetl_common.sharding import Epoch, ShardMap
from noetl_devstack.cgroups import CpuGroup, CpuHierarchy, find_hierarchy, remove_dir, set_weight
from noetl_devstack.local_fleet import LiveFleet, own_fleet
from noetl_devstack.ports import free_port
from noetl_devstack.postgres import durability_of
from noetl_devstack.processes import ServiceSpec

from .hotpath_workloads import (SLEEPER, THREE_STEPS, BenchError, cancel_all, ingest_run, pct_ms, register, start,
                                start_sleepers)

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
COMPONENT_OF = {"process": "api-shard", "postgres": "shard-postgres"}  # a shard's child groups
TERMINAL_COUNT = ("SELECT count(*) FILTER (WHERE status = 'COMPLETED') AS done, "
                  "count(*) FILTER (WHERE status IN ('FAILED', 'CANCELLED')) AS failed "
                  "FROM noetl.execution WHERE path = 'bench/three_steps'")


def say(text: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {text}", flush=True)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Groups:
    """A cgroup per shard (capped) and per shared part (uncapped, CPU counted only)."""

    def __init__(self, h: CpuHierarchy, tag: str, quota_us: int | None, period_us: int) -> None:
        self.h, self.base = h, f"noetl-scale-{os.getpid()}-{tag}"
        self.quota_us, self.period_us = quota_us, period_us
        self.groups: dict[str, CpuGroup] = {}
        self.processes: dict[str, int] = {}

    def group(self, name: str, capped: bool) -> CpuGroup:
        if name not in self.groups:
            self.groups[name] = CpuGroup(self.h, f"{self.base}/{name}", self.quota_us if capped else None,
                                         self.period_us)
        return self.groups[name]

    def add(self, name: str, capped: bool, pid: int, *, with_children: bool = False) -> None:
        """Move a process (tree) into a group, and keep every group's scheduler weight that of the
        processes in it: the fleet competes with the machine's other work as the processes it is
        (on a busy machine one group for all of it would get one process's share)."""
        moved = self.group(name, capped).add(pid, with_children=with_children)
        self.processes[name] = self.processes.get(name, 0) + moved
        set_weight(self.h, f"{self.base}/{name}", self.processes[name])
        parent = name.partition("/")[0]
        if parent != name:  # a shard's group: the weight of its process and its server's
            set_weight(self.h, f"{self.base}/{parent}",
                       sum(n for k, n in self.processes.items() if k.startswith(parent + "/")))
        set_weight(self.h, self.base, sum(self.processes.values()))

    def place(self, fleet: LiveFleet, *, cap_shards: bool, cap_router: bool = False) -> None:
        """A shard is a capped group with its process in a child group and, when it has a server
        of its own, that server in another (the cap covers both; each is counted apart)."""
        for spec in fleet.specs:
            if spec.module == "noetl_api_shard":
                self.group(spec.name, cap_shards)
                self.add(f"{spec.name}/process", False, fleet.pid_of(spec.name))
                continue
            name = "workers" if spec.module == "noetl_worker" else spec.name
            self.add(name, cap_router and spec.module == "noetl_router", fleet.pid_of(spec.name))
        for i, pid in enumerate(fleet.shard_postgres_pids):
            if pid is not None:
                self.add(f"api-shard-{i}/postgres", False, pid, with_children=True)
        if fleet.postgres_pid is not None:
            self.add("postgres", False, fleet.postgres_pid, with_children=True)
        if fleet.nats_pid is not None:
            self.add("nats", False, fleet.nats_pid)
        # The load generator itself (this process): when it is the busiest part, the bench is.
        self.add("bench-client", False, os.getpid())

    def snapshot(self) -> dict[str, tuple[float, int, int]]:
        out = {}
        for name, g in self.groups.items():
            t = g.throttling()
            out[name] = (g.usage_s(), t.periods, t.throttled)
        return out

    def remove(self) -> None:
        for g in sorted(self.groups.values(), key=lambda g: -g.name.count("/")):  # children first
            g.remove()
        for d in {self.h.cpu / self.base, self.h.acct / self.base}:
            remove_dir(d)


class Window:
    """CPU of every group and of the machine over one measurement."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self.t0, self.cpu0, self.machine0 = time.perf_counter(), groups.snapshot(), machine_busy()

    def close(self, units: int, unit: str) -> dict:
        wall = time.perf_counter() - self.t0
        cpu1, (b1, t1) = self.groups.snapshot(), machine_busy()
        b0, t0 = self.machine0
        per: dict[str, dict] = {}
        for name, (used, periods, throttled) in cpu1.items():
            used0, periods0, throttled0 = self.cpu0[name]
            cpu_s = used - used0
            entry = {"cpu_s": round(cpu_s, 3), "cores": round(cpu_s / wall, 3),
                     f"cpu_ms_per_{unit}": round(1000 * cpu_s / units, 3) if units else None}
            if self.groups.groups[name].quota_us is not None:
                cap = self.groups.quota_us / self.groups.period_us
                entry["of_cap"] = round(cpu_s / wall / cap, 3)
                entry["throttled_periods"] = round((throttled - throttled0) / max(1, periods - periods0), 3)
            per[name] = entry
        return {"wall_s": round(wall, 3), "machine_busy": round((b1 - b0) / max(1, t1 - t0), 3), "cpu": per}


def verdict(window: dict, capped_prefix: str, in_use: set[str] | None = None) -> str:
    """What held this run back: the capped processes when they used their cap, else the busiest
    uncapped part (or the machine, when it was busy). `in_use`: the capped processes the run sent
    work to, when not all of them (one router measured while the second waits)."""
    cpu = window["cpu"]
    capped = [v["of_cap"] for k, v in cpu.items()
              if k.startswith(capped_prefix) and "of_cap" in v and (in_use is None or k in in_use)]
    used = statistics.median(capped) if capped else 0.0
    if used >= 0.9:
        return f"{capped_prefix}* at their CPU cap (median {used:.0%} of it used): capacity scales with them"
    shared = sorted(((v["cores"], k) for k, v in cpu.items() if not k.startswith(capped_prefix)), reverse=True)
    busiest = ", ".join(f"{k} {c:.2f} cores" for c, k in shared[:3])
    machine = window["machine_busy"]
    where = "the machine (busy, shared with other work)" if machine >= 0.85 else "something shared or serial"
    return (f"{capped_prefix}* used only {used:.0%} of their cap: held back by {where}; machine {machine:.0%} busy; "
            f"busiest uncapped: {busiest}")


async def terminal_counts(pools: list[asyncpg.Pool]) -> tuple[int, int]:
    rows = await asyncio.gather(*(p.fetchrow(TERMINAL_COUNT) for p in pools))
    return sum(r["done"] for r in rows), sum(r["failed"] for r in rows)


async def three_step(session: aiohttp.ClientSession, router: str, pools: list[asyncpg.Pool], total: int,
                     in_flight: int, timeout: float = 900.0) -> dict:
    """Keep `in_flight` executions started and not finished (finished: counted in the shards'
    databases) until `total` are done."""
    base, base_failed = await terminal_counts(pools)
    started, done, failed = 0, 0, 0
    t0 = time.perf_counter()
    starts: list[float] = []

    async def one() -> None:
        t = time.perf_counter()
        await start(session, router, "bench/three_steps")
        starts.append(time.perf_counter() - t)

    pending: set[asyncio.Task] = set()
    while done + failed < total:
        want = min(total, done + failed + in_flight) - started
        for _ in range(max(0, want)):
            pending.add(asyncio.ensure_future(one()))
            started += 1
        await asyncio.sleep(0.05)
        for t in [t for t in pending if t.done()]:
            pending.discard(t)
            t.result()
        d, f = await terminal_counts(pools)
        done, failed = d - base, f - base_failed
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"{total - done - failed} executions unfinished after {timeout:.0f}s")
    wall = time.perf_counter() - t0
    if failed:
        raise BenchError(f"{failed} of {total} executions failed")
    return {"executions": total, "in_flight": in_flight, "wall_s": round(wall, 3),
            "wf_per_s": round(total / wall, 2), "start_p50_ms": pct_ms(starts, 50), "start_p99_ms": pct_ms(starts, 99)}


async def balanced_sleepers(session: aiohttp.ClientSession, router: str, shards: int, per_shard: int) -> list[str]:
    """`per_shard` running executions on every shard, the events' targets: the same number on
    each, or the shard with most would cap the aggregate. The router places round robin over the
    shards it counts healthy, so this is checked (by each id's owner), not assumed; any extra
    started is cancelled."""
    owners = ShardMap(epochs=(Epoch(0, shards),))
    by_shard: dict[int, list[str]] = {i: [] for i in range(shards)}
    extra: list[str] = []
    while any(len(ids) < per_shard for ids in by_shard.values()):
        for eid in await start_sleepers(session, router, 2 * shards):
            owned = by_shard[owners.owner(int(eid))]
            (owned if len(owned) < per_shard else extra).append(eid)
    await cancel_all(session, router, extra)
    return [eid for ids in by_shard.values() for eid in ids]


def fleet_env(shards: int, in_flight: int) -> dict[str, str]:
    # Two workers with a slot for every execution in flight and every sleeper: never the bottleneck.
    # A shard at its cap answers the router's 2 s health probe late; three misses would take a
    # saturated-but-working shard out of rotation, so the bench lets it miss many.
    return {"WORKER_MAX_CONCURRENT": str(min(256, in_flight * shards // 2 + 2 * shards)), "NOETL_LOG_LEVEL": "WARNING",
            "NOETL_ROUTER_FAILURE_THRESHOLD": "1000"}


async def at_shards(h: CpuHierarchy, n: int, own_servers: bool, args: argparse.Namespace) -> dict:
    in_flight = args.in_flight * n
    groups = Groups(h, f"{'own' if own_servers else 'shared'}-{n}", args.quota_us, args.period_us)
    async with AsyncExitStack() as stack:
        stack.callback(groups.remove)  # last, once the fleet's processes are gone
        # Up to 9 Postgres data directories a shard count: deleted once the fleet has stopped.
        work: list[Path] = []
        stack.callback(lambda: [shutil.rmtree(w, ignore_errors=True) for w in work])
        fleet = await stack.enter_async_context(own_fleet(f"noetl-scale-{n}-", n, workers=2,
                                                          extra_env=fleet_env(n, args.in_flight),
                                                          shard_servers=own_servers))
        work.append(fleet.work)
        groups.place(fleet, cap_shards=True)
        pools = [await stack.enter_async_context(asyncpg.create_pool(dsn, min_size=1, max_size=1))
                 for dsn in fleet.shard_dsns]
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)))
        for playbook in (THREE_STEPS, SLEEPER):
            await register(session, fleet.router, playbook)
        await three_step(session, fleet.router, pools, 4 * n, in_flight)  # warm-up
        window = Window(groups)
        steps = await three_step(session, fleet.router, pools, args.per_shard * n, in_flight)
        steps_cpu = window.close(steps["executions"], "workflow")
        say(f"  {n} shard(s): {steps['wf_per_s']} workflows/s; {verdict(steps_cpu, 'api-shard')}")
        sleepers = await balanced_sleepers(session, fleet.router, n, 2)
        window = Window(groups)
        events = await ingest_run(session, fleet.router, sleepers, args.events_per_shard * n, in_flight)
        events_cpu = window.close(events["events"], "event")
        await cancel_all(session, fleet.router, sleepers)
        say(f"  {n} shard(s): {events['events_per_s']} events/s; {verdict(events_cpu, 'api-shard')}")
    return {"shards": n, "three_step": {**steps, **steps_cpu, "capped_by": verdict(steps_cpu, "api-shard")},
            "ingest": {**events, **events_cpu, "capped_by": verdict(events_cpu, "api-shard")}}


def shard_cpu_ms(run: dict, workload: str, unit: str) -> float:
    """CPU ms per unit of the shards (their processes and own servers), all shards together."""
    return sum(v[f"cpu_ms_per_{unit}"] or 0.0 for k, v in run[workload]["cpu"].items()
               if k.startswith("api-shard") and "/" not in k)


def efficiency(runs: list[dict]) -> dict:
    """At each shard count, the median of its repeats over N x the median at 1 shard: one run of
    a capped shard measures its rate to about +-25% (a 5% cap over some 20 s), so a single
    baseline run moved every ratio with it."""
    by_n: dict[int, list[dict]] = {}
    for r in runs:
        by_n.setdefault(r["shards"], []).append(r)
    if 1 not in by_n:
        return {}

    def med(n: int, value) -> float:
        return statistics.median(value(r) for r in by_n[n])

    rate = {"three_step": lambda r: r["three_step"]["wf_per_s"], "ingest": lambda r: r["ingest"]["events_per_s"]}
    cost = {"three_step": lambda r: shard_cpu_ms(r, "three_step", "workflow"),
            "ingest": lambda r: shard_cpu_ms(r, "ingest", "event")}
    out = {}
    for n in sorted(by_n):
        out[str(n)] = {w: round(med(n, rate[w]) / (n * med(1, rate[w])), 3) for w in rate}
        # The same question asked of CPU, which a busy machine disturbs less: a shard's CPU per
        # unit at 1 shard over the same at N (1: nothing lost).
        out[str(n)].update({f"{w}_cpu": round(med(1, cost[w]) / med(n, cost[w]), 3) if med(n, cost[w]) else None
                            for w in cost})
        out[str(n)]["repeats"] = len(by_n[n])
    return out


def cpu_per_unit(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Median over the shard counts of each component's CPU ms per workflow and per event, shards
    and workers summed per run (the capacity model's inputs: deploy/README.md)."""
    out: dict[str, dict[str, float]] = {}
    for workload, unit in (("three_step", "workflow"), ("ingest", "event")):
        per: dict[str, list[float]] = {}
        for r in runs:
            totals: dict[str, float] = {}
            for name, v in r[workload]["cpu"].items():
                kind = COMPONENT_OF.get(name.rpartition("/")[2], name) if "/" in name else name
                if name.startswith("api-shard") and "/" not in name:
                    continue  # a shard's capped group: its process and server are counted apart
                totals[kind] = totals.get(kind, 0.0) + (v[f"cpu_ms_per_{unit}"] or 0.0)
            for kind, ms in totals.items():
                per.setdefault(kind, []).append(ms)
        for kind, values in per.items():
            out.setdefault(kind, {})[f"cpu_ms_per_{unit}"] = round(statistics.median(values), 3)
    return out


async def get_rate(session: aiohttp.ClientSession, routers: list[str], eids: list[str], seconds: float,
                   clients_per_router: int) -> dict:
    """GETs of execution rows (spread over the shards) through each router, `clients_per_router`
    each, for `seconds`."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def client(url: str) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            eid = eids[count % len(eids)]
            async with session.get(f"{url}/api/executions/{eid}", params={"include_events": "false"}) as r:
                await r.read()
                if r.status != 200:
                    raise BenchError(f"GET execution answered {r.status}")
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(u) for u in routers for _ in range(clients_per_router)))
    wall = time.perf_counter() - t0
    return {"routers": len(routers), "requests": count, "wall_s": round(wall, 3), "requests_per_s": round(count / wall, 1)}


async def routers_run(h: CpuHierarchy, args: argparse.Namespace) -> dict:
    """The router capped (one, then two with the same cap), 2 uncapped shards behind them."""
    groups = Groups(h, "routers", args.router_quota_us, args.router_period_us)
    async with AsyncExitStack() as stack:
        stack.callback(groups.remove)
        work: list[Path] = []
        stack.callback(lambda: [shutil.rmtree(w, ignore_errors=True) for w in work])
        fleet = await stack.enter_async_context(own_fleet("noetl-scale-routers-", 2, workers=1,
                                                          extra_env={"NOETL_LOG_LEVEL": "WARNING"}))
        work.append(fleet.work)
        groups.place(fleet, cap_shards=False, cap_router=True)
        router = fleet.spec("router")
        second = ServiceSpec(name="router-1", module=router.module, port=free_port(), env=router.env)
        fleet.supervisor.spawn(second)
        await fleet.supervisor.wait_ready(second.name)
        groups.add("router-1", True, fleet.pid_of(second.name))
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)))
        await register(session, fleet.router, THREE_STEPS)
        eids = [await start(session, fleet.router, "bench/three_steps") for _ in range(8)]
        await get_rate(session, [fleet.router], eids, 2, args.router_clients)  # warm-up
        window = Window(groups)
        one = await get_rate(session, [fleet.router], eids, args.router_seconds, args.router_clients)
        one_cpu = window.close(one["requests"], "request")
        window = Window(groups)
        two = await get_rate(session, [fleet.router, second.url], eids, args.router_seconds, args.router_clients)
        two_cpu = window.close(two["requests"], "request")
    ratio = round(two["requests_per_s"] / one["requests_per_s"], 3)
    say(f"routers capped at {args.router_quota_us}/{args.router_period_us} us: one {one['requests_per_s']} req/s, "
        f"two {two['requests_per_s']} req/s (x{ratio}); {verdict(two_cpu, 'router')}")
    return {"router_cap": f"{args.router_quota_us} us per {args.router_period_us} us", "clients_per_router": args.router_clients,
            "one_router": {**one, **one_cpu, "capped_by": verdict(one_cpu, "router", {"router"})},
            "two_routers": {**two, **two_cpu, "capped_by": verdict(two_cpu, "router")}, "two_over_one": ratio}


async def bench(h: CpuHierarchy, args: argparse.Namespace) -> dict:
    out: dict = {}
    for servers in args.servers:
        runs = []
        for n in args.shards:
            for repeat in range(1, args.repeats + 1):
                say(f"{n} shard(s), {'a Postgres server per shard' if servers == 'own' else 'one Postgres server'}"
                    f" (run {repeat} of {args.repeats})")
                runs.append({**await at_shards(h, n, servers == "own", args), "repeat": repeat})
        out[f"{servers}_postgres"] = {"runs": runs, "efficiency": efficiency(runs), "cpu_per_unit": cpu_per_unit(runs)}
        say(f"efficiency ({servers} Postgres): {out[f'{servers}_postgres']['efficiency']}")
    if args.routers:
        out["routers"] = await routers_run(h, args)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--servers", default="shared,own", type=lambda s: [x for x in s.split(",") if x],
                        help="shared: one Postgres server for every database; own: a server per shard")
    parser.add_argument("--per-shard", type=int, default=150, help="3-step executions per shard")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh fleets per shard count; efficiency compares the medians")
    parser.add_argument("--events-per-shard", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=16, help="executions (or event clients) per shard")
    parser.add_argument("--quota-us", type=int, default=5000, help="each shard's CPU quota per period")
    # Kubernetes' CFS period (the kubelet's default): a 20 ms period with a 1 ms quota made a shard
    # and its own server, both in the group, share one short slice, and cost ingest 0.65-0.74 of N x one.
    parser.add_argument("--period-us", type=int, default=100000)
    parser.add_argument("--routers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--router-quota-us", type=int, default=1000, help="v1's smallest quota is 1000 us")
    parser.add_argument("--router-period-us", type=int, default=40000)
    parser.add_argument("--router-clients", type=int, default=16)
    parser.add_argument("--router-seconds", type=float, default=10.0)
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. 'busy machine')")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    h = find_hierarchy()
    if isinstance(h, str):
        print(f"bench-scale skipped: {h}. It caps each shard's CPU through a cgroup; run it as root on Linux.")
        return 0
    durability = durability_of(os.environ)
    say(f"cgroup v{h.version}; each shard capped at {args.quota_us} us per {args.period_us} us of CPU; "
        f"embedded Postgres {durability} (WAL flushed at commit unless 'fast')")
    results = asyncio.run(bench(h, args))
    report = {"benchmark": "scale-out with each shard capped", "label": args.label, "python": platform.python_version(),
              "cpus": os.cpu_count(), "cgroup": f"v{h.version}", "postgres_durability": durability,
              "shard_cap": f"{args.quota_us} us per {args.period_us} us", "per_shard": args.per_shard,
              "events_per_shard": args.events_per_shard, "in_flight_per_shard": args.in_flight, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
