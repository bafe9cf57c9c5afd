"""History bench: does a shard holding a long history cost the same as an empty one?

Two fleets as `make run` starts them (1 shard, router, publisher, projector, 1 worker), each on its
own Postgres server: one shard empty, the other filled with `--events` events (bulk-generated in
SQL, `--events-per-execution` each, finished executions spread over `--days` daily slices in the
past, each with its commands and step results). Both are measured in turns, `--reps` times each:
  3-step workflows/s, loop steps/s, ingest p50/p99 (heartbeats), first page of the execution list
  and execution detail (an old, filled execution) p50/p99,
and finally retention runs removing the old slices one day at a time while ingest load runs: the
longest parent-table lock, each run's time, writers' p99 while runs work against the same writers
between runs, database size before and after.

    python -m bench.history_bench [--events 1000000] [--out bench/results/history.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import asyncpg

from noetl_api_shard.execution.upkeep import retention
from noetl_api_shard.store import partitions
from noetl_common.db import apply_migrations, create_pool
from noetl_devstack import secrets
from noetl_devstack.fleet import DEV_WORKER_SLOTS, FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.postgres import server_durability
from noetl_devstack.processes import Supervisor

from . import hotpath_workloads as wl
from .hotpath_bench import machine_info
from .hotpath_probes import wait_machine_quiet

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "history.json"
DAY_MS = 86_400_000
RETENTION_APP = "history-bench-retention"


def say(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.history_bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to fill the shard with (default %(default)s)")
    p.add_argument("--events-per-execution", type=int, default=20)
    p.add_argument("--days", type=int, default=5, help="past daily slices the history is spread over")
    p.add_argument("--executions", type=int, default=600, help="3-step executions per measurement")
    p.add_argument("--loop", type=int, default=1000, help="loop length per measurement")
    p.add_argument("--reads", type=int, default=200, help="list and detail requests per measurement")
    p.add_argument("--reps", type=int, default=3, help="measurements of each side, taken in turns (medians compared)")
    p.add_argument("--retention-only", action="store_true",
                   help="fill and measure only the retention run under load (no empty/filled workload phases)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


async def prepare_slices(dsn: str, days: int) -> None:
    """A fresh shard database whose slices start `days` days ago (migration 0007 would put every
    older id in one slice p0): p0 is re-made to end there, daily slices follow up to now."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "shard")
        start_ms = (int(time.time() * 1000) // DAY_MS - days) * DAY_MS
        for table in partitions.TABLES:
            await pool.execute(f"DROP TABLE noetl.{table}_p0")
            await pool.execute(f"CREATE TABLE noetl.{table}_p0 PARTITION OF noetl.{table} "
                               f"FOR VALUES FROM (MINVALUE) TO ({partitions.id_at(start_ms)})")
        for s in partitions.planned(partitions.id_at(start_ms), int(time.time() * 1000), DAY_MS, 2):
            for table in partitions.TABLES:
                await partitions._attach_new(pool, table, s)
    finally:
        await pool.close()


FILL_EXECUTIONS = """
INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status, workload, state, result,
    created_at, started_at, ended_at, last_event_type)
SELECT id, $3, 'bench/history', 1, 'COMPLETED', '{}'::jsonb, '\\x00'::bytea, '{"ok": true}'::jsonb,
       t, t, t + interval '2 seconds', 'workflow.completed'
FROM (SELECT (((($1::bigint + i * $4::bigint) - 1704067200000) << 22) | (i % 4096)) AS id,
             to_timestamp(($1::bigint + i * $4::bigint) / 1000.0) AS t
      FROM generate_series(0, $2::int - 1) AS i) x
"""
FILL_EVENTS = """
INSERT INTO noetl.event (execution_id, event_id, event_type, node_name, node_type, status, command_id, payload,
    created_at)
SELECT e.execution_id, e.execution_id + 1 + k, CASE WHEN k % 2 = 0 THEN 'command.issued' ELSE 'call.done' END,
       'step_' || (k / 2), 'python', 'COMPLETED', e.execution_id + 1 + (k / 2) * 2,
       jsonb_build_object('result', jsonb_build_object('n', k, 'text', repeat('x', 40))), e.created_at
FROM noetl.execution e, generate_series(0, $2::int - 1) AS k
WHERE e.execution_id >= $1 AND e.execution_id < $3
"""
FILL_COMMANDS = """
INSERT INTO noetl.command (command_id, execution_id, step, tool_kind, status, context, result, created_at)
SELECT e.execution_id + 1 + k * 2, e.execution_id, 'step_' || k, 'python', 'COMPLETED', '{}'::jsonb,
       '{"n": 1}'::jsonb, e.created_at
FROM noetl.execution e, generate_series(0, $2::int / 2 - 1) AS k
WHERE e.execution_id >= $1 AND e.execution_id < $3
"""


async def fill(dsn: str, args: argparse.Namespace) -> dict:
    """Finished executions spread evenly over the past daily slices, their events and commands."""
    # No statement timeout: one day of 10^7 events is one INSERT of minutes on a busy machine.
    pool = await create_pool(dsn, min_size=1, max_size=2, command_timeout=None)
    try:
        catalog_id = 1
        executions = args.events // args.events_per_execution
        now_ms = int(time.time() * 1000)
        start_ms = (now_ms // DAY_MS - args.days) * DAY_MS
        per_day = executions // args.days
        t0 = time.perf_counter()
        for d in range(args.days):
            day_ms = start_ms + d * DAY_MS
            step = max(1, DAY_MS // 2 // per_day)  # within the first half of the day: ids stay in its slice
            await pool.execute(FILL_EXECUTIONS, day_ms, per_day, catalog_id, step)
            lo, hi = partitions.id_at(day_ms), partitions.id_at(day_ms + DAY_MS)
            await pool.execute(FILL_EVENTS, lo, args.events_per_execution, hi)
            await pool.execute(FILL_COMMANDS, lo, args.events_per_execution, hi)
            say(f"  filled day {d + 1}/{args.days}: {per_day} executions")
        seconds = time.perf_counter() - t0
        # What autovacuum would do next (set hint bits, visibility map, statistics) and the
        # checkpoint of the fill's writes, done now: measured is the shard's steady state, not
        # the background work that follows a bulk load.
        t1 = time.perf_counter()
        await pool.execute("VACUUM (ANALYZE)")
        await pool.execute("CHECKPOINT")
        settle = time.perf_counter() - t1
        events = await pool.fetchval("SELECT count(*) FROM noetl.event")
        sample = await pool.fetchval("SELECT execution_id FROM noetl.execution WHERE path = 'bench/history' "
                                     "ORDER BY execution_id LIMIT 1 OFFSET $1", per_day // 2)
        return {"events": events, "executions": per_day * args.days, "seconds": round(seconds, 1),
                "vacuum_checkpoint_seconds": round(settle, 1),
                "database_bytes": await pool.fetchval("SELECT pg_database_size(current_database())"),
                "sample_execution_id": str(sample)}
    finally:
        await pool.close()


def latency_summary(latencies: list[float]) -> dict:
    return {"requests": len(latencies), "p50_ms": wl.pct_ms(latencies, 50), "p99_ms": wl.pct_ms(latencies, 99)}


async def read_latency(session: aiohttp.ClientSession, url: str, path: str, params: dict, n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        async with session.get(url + path, params=params) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path} answered {r.status}")
        times.append(time.perf_counter() - t)
    return latency_summary(times)


async def measure(session: aiohttp.ClientSession, url: str, args: argparse.Namespace, detail_id: str,
                  old_id: str | None = None) -> dict:
    """`detail_id`: an execution the fleet ran (the same one empty and filled); `old_id`: one of
    the bulk-generated history (filled only)."""
    three = await wl.three_step_run(session, url, args.executions, 20)
    loop = await wl.loop_run(session, url, args.loop, budget=300)
    sleepers = await wl.start_sleepers(session, url, 8)
    ingest = await wl.ingest_run(session, url, sleepers, 2000, 16)
    await wl.cancel_all(session, url, sleepers)
    listing = await read_latency(session, url, "/api/executions", {"limit": "20"}, args.reads)
    detail = await read_latency(session, url, f"/api/executions/{detail_id}", {"include_events": "false"}, args.reads)
    events = await read_latency(session, url, f"/api/executions/{detail_id}/events", {"page_size": "50"}, args.reads)
    old = None if old_id is None else await read_latency(
        session, url, f"/api/executions/{old_id}", {"include_events": "false"}, args.reads)
    return {"old_execution_detail": old,
            "wf_per_s": three["wf_per_s"], "three_step": three, "loop_steps_per_s": loop.get("steps_per_s"),
            "loop": loop, "ingest": ingest, "list_first_page": listing, "execution_detail": detail,
            "execution_events_page": events}


async def timed_ingest(session: aiohttp.ClientSession, url: str, targets: list[str], stop: asyncio.Event,
                       clients: int = 16) -> list[tuple[float, float]]:
    """Heartbeats until `stop`: (sent at, latency) of each."""
    out: list[tuple[float, float]] = []

    async def client(c: int) -> None:
        n = c
        while not stop.is_set():
            body = {"execution_id": targets[n % len(targets)], "event_type": "worker.heartbeat", "step": "bench",
                    "payload": {"n": n}}
            t = time.perf_counter()
            async with session.post(f"{url}/api/events", json=body) as r:
                await r.read()
            out.append((t, time.perf_counter() - t))
            n += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    return out


async def sample_waits(dsn: str, stop: asyncio.Event, every: float = 0.01) -> dict[str, int]:
    """What the shard database's other active backends were doing, sampled every `every` s until
    `stop`: counts of `wait_event_type:wait_event` ("CPU" when not waiting; the retention run's
    own backend prefixed "retention"), and of the lock modes waited for. The evidence of where a
    retention run's cost on writers comes from."""
    counts: dict[str, int] = {}
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT CASE WHEN a.application_name = $1 THEN 'retention ' ELSE '' END "
                "|| coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU') AS w, "
                "(SELECT string_agg(DISTINCT l.mode, ',') FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) "
                "AS waiting_for FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() "
                "AND a.datname = current_database() AND a.state = 'active'", RETENTION_APP)
            counts["samples"] = counts.get("samples", 0) + 1
            for r in rows:
                counts[r["w"]] = counts.get(r["w"], 0) + 1
                if r["waiting_for"]:
                    key = f"lock wait {r['waiting_for']}"
                    counts[key] = counts.get(key, 0) + 1
            await asyncio.sleep(every)
    finally:
        await conn.close()
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


BASELINE_S = 8.0  # writers alone this long before each retention run and after the last


def merge_waits(counts: list[dict[str, int]]) -> dict[str, int]:
    return dict(sum(map(Counter, counts), Counter()).most_common())


async def retention_under_load(session: aiohttp.ClientSession, url: str, dsn: str, days: int) -> dict:
    """Writers (heartbeat ingest) run throughout while retention removes the filled history one
    daily slice at a time (a run with `days - d - 0.6` days of retention removes day d, the first
    also the pre-partitioning slice), each run preceded by writers alone for as long as the run
    before it took (BASELINE_S before the first) and the last followed by as much. Writers'
    latency while a run works is compared with theirs in those windows pooled: interleaved, the
    two sides see the same drift (checkpoints, autovacuum), which a p99 over a few seconds before
    a minute-long run would not. The database's backends are sampled in every window (wait
    events, lock waits; the sampler always running, so the load is the same)."""
    sleepers = await wl.start_sleepers(session, url, 8)
    pool = await create_pool(dsn, min_size=1, max_size=2, command_timeout=None,
                             server_settings={"application_name": RETENTION_APP})

    async def sampled(work) -> tuple[dict, object, float, float]:
        stop = asyncio.Event()
        waits = asyncio.ensure_future(sample_waits(dsn, stop))
        t0 = time.perf_counter()
        done = await work
        t1 = time.perf_counter()
        stop.set()
        return await waits, done, t0, t1

    quiet: list[tuple[dict, float, float]] = []
    runs: list[tuple[dict, retention.RunReport, float, float]] = []
    try:
        size_before = await pool.fetchval("SELECT pg_database_size(current_database())")
        stop = asyncio.Event()
        load = asyncio.ensure_future(timed_ingest(session, url, sleepers, stop))
        await asyncio.sleep(1.0)
        quiet_s = BASELINE_S
        for d in range(days):
            waits, _, b0, b1 = await sampled(asyncio.sleep(quiet_s))
            quiet.append((waits, b0, b1))
            waits, report, t0, t1 = await sampled(
                retention.run(pool, retention.Policy(days=max(days - d - 0.6, 0.4)), shard_index=0))
            runs.append((waits, report, t0, t1))
            # As long as the run: background work that comes every minute or so (autovacuum, a
            # checkpoint) then lands on both sides alike, not mostly in the longer one.
            quiet_s = max(BASELINE_S, t1 - t0)
        waits, _, b0, b1 = await sampled(asyncio.sleep(quiet_s))
        quiet.append((waits, b0, b1))
        stop.set()
        samples = await load
        size_after = await pool.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await pool.close()
    await wl.cancel_all(session, url, sleepers)
    baseline = [lat for t, lat in samples if any(b0 <= t and t + lat < b1 for _, b0, b1 in quiet)]
    during = [lat for t, lat in samples if any(t < t1 and t + lat > t0 for _, _, t0, t1 in runs)]
    dropped = [d for _, report, _, _ in runs for d in report.dropped]
    return {"slices_dropped": [d.slice for d in dropped],
            "executions_dropped": sum(d.executions for d in dropped),
            "events_dropped": sum(d.events for d in dropped),
            "longest_lock_ms": round(max(r.lock_ms for _, r, _, _ in runs), 2),
            "run_seconds": [round(r.seconds, 3) for _, r, _, _ in runs],
            "writers_baseline": latency_summary(baseline), "writers_during": latency_summary(during),
            "p99_during_over_baseline": round(wl.pct_ms(during, 99) / wl.pct_ms(baseline, 99), 3),
            "database_bytes_before": size_before, "database_bytes_after": size_after,
            "phases_ms": {d.slice: d.phases_ms for d in dropped},
            "backends_baseline": merge_waits([w for w, _, _ in quiet]),
            "backends_during": merge_waits([w for w, _, _, _ in runs])}


class Side:
    """One fleet as `make run` starts it (1 shard, router, publisher, projector, 1 worker) on its
    own Postgres server and NATS; `filled` holds the fill's report when its shard was filled."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.infra, self.sup = Infra(work), Supervisor(work / "logs")
        self.work = work
        self.dsn = self.url = self.recent = ""
        self.filled: dict | None = None
        self.durability: dict = {}

    async def start(self, args: argparse.Namespace, *, fill_it: bool) -> None:
        info = await self.infra.up(1)
        self.dsn = info.shard_dsns(1)[0]
        await prepare_slices(self.dsn, args.days)
        if fill_it:
            say(f"filling {args.events} events ...")
            self.filled = await fill(self.dsn, args)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=[self.dsn], nats_url=info.nats_url,
                                        secrets=secrets.load_or_create(self.work / "s.json"), workers=1,
                                        extra_env={"NOETL_LOG_LEVEL": "WARNING",
                                                   "WORKER_MAX_CONCURRENT": str(DEV_WORKER_SLOTS)}))
        await start_fleet(self.sup, specs)
        self.url = router_url(specs)
        conn = await asyncpg.connect(self.dsn)
        try:
            self.durability = await server_durability(conn)
        finally:
            await conn.close()

    async def warm(self, session: aiohttp.ClientSession, args: argparse.Namespace) -> None:
        for playbook in wl.PLAYBOOKS:
            await wl.register(session, self.url, playbook)
        # the first runs after start pay for cold caches and plans
        await wl.three_step_run(session, self.url, 50, 20)
        await wl.loop_run(session, self.url, args.loop, budget=300)
        self.recent = (await wl.list_all(session, self.url, "COMPLETED"))[0].execution_id

    def stop(self) -> None:
        self.sup.stop_all()
        self.infra.down()


def summarise(runs: list[dict]) -> dict:
    """Medians over the side's runs (each run's own numbers are kept beside them)."""
    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    def p99s(name: str) -> float | None:
        if not all(r[name] for r in runs):  # the old execution's detail: the filled side's only
            return None
        return round(statistics.median(r[name]["p99_ms"] for r in runs), 2)

    return {"wf_per_s": median("wf_per_s"), "loop_steps_per_s": median("loop_steps_per_s"),
            "ingest_p99_ms": p99s("ingest"), "list_first_page_p99_ms": p99s("list_first_page"),
            "execution_detail_p99_ms": p99s("execution_detail"),
            "execution_events_page_p99_ms": p99s("execution_events_page"),
            "old_execution_detail_p99_ms": p99s("old_execution_detail")}


async def bench(args: argparse.Namespace, work: Path) -> dict:
    """An empty and a filled shard, each in a fleet of its own, measured in turns (`--reps` each,
    the order swapped every round, the machine quiet before each): this machine's speed drifts
    by up to 2x within minutes, which a before/after on one fleet would read as the history's
    cost. Then retention runs under load on the filled side alone."""
    machine = machine_info()
    empty, filled = Side("empty", work / "empty"), Side("filled", work / "filled")
    try:
        await filled.start(args, fill_it=True)
        if not args.retention_only:
            await empty.start(args, fill_it=False)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            runs: dict[str, list[dict]] = {"empty": [], "filled": []}
            if not args.retention_only:
                for side in (empty, filled):
                    await side.warm(session, args)
                assert filled.filled is not None
                for rep in range(args.reps):
                    for side in ((empty, filled) if rep % 2 == 0 else (filled, empty)):
                        waited = await wait_machine_quiet()
                        say(f"measuring the {side.name} shard ({rep + 1}/{args.reps}) ...")
                        old = filled.filled["sample_execution_id"] if side is filled else None
                        runs[side.name].append({**await measure(session, side.url, args, side.recent, old),
                                                "quiet_wait_s": round(waited, 2)})
                empty.stop()
            else:
                for playbook in wl.PLAYBOOKS:
                    await wl.register(session, filled.url, playbook)
            say("retention under load ...")
            ret = await retention_under_load(session, filled.url, filled.dsn, args.days)
        head = {"benchmark": "history: a shard holding --events bulk-generated events in daily slices against an "
                             "empty one, each in its own fleet, measured in turns",
                "machine": machine, "postgres_durability": filled.durability,
                "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "fill": filled.filled}
        if args.retention_only:
            return {**head, "retention": ret}
        e, f = summarise(runs["empty"]), summarise(runs["filled"])
        return {**head, "empty": e, "filled": f,
                "ratios": {key: round(f[key] / e[key], 3) if f[key] and e[key] else None
                           for key in ("wf_per_s", "loop_steps_per_s")},
                "runs": runs, "retention": ret}
    finally:
        empty.stop()
        filled.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="noetl-history-bench-") as work:
        report = asyncio.run(bench(args, Path(work)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["retention"]
    say(f"retention: writers p99 {r['writers_during']['p99_ms']} ms while a run works, {r['writers_baseline']['p99_ms']} "
        f"ms between runs ({r['p99_during_over_baseline']}x); "
        f"lock {r['longest_lock_ms']} ms, run {r['run_seconds']} s; phases {r['phases_ms']}")
    if "empty" not in report:
        say(f"wrote {args.out}")
        return 0
    e, f = report["empty"], report["filled"]
    say(f"medians of {report['config']['reps']} runs each: wf/s empty {e['wf_per_s']} filled {f['wf_per_s']}; "
        f"loop steps/s {e['loop_steps_per_s']} / {f['loop_steps_per_s']}; list p99 {e['list_first_page_p99_ms']} / "
        f"{f['list_first_page_p99_ms']} ms; detail p99 {e['execution_detail_p99_ms']} / "
        f"{f['execution_detail_p99_ms']} ms; ratios {report['ratios']}; "
        f"retention lock {r['longest_lock_ms']} ms, run {r['run_seconds']} s")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
