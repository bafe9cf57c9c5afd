"""Soak: a fleet started the way `make run` starts it (embedded Postgres + NATS in a temporary
data dir, 2 shards, router, publisher, projector, one worker, make run's settings) under steady
load for minutes, sampled every few seconds, with a verdict per metric: does anything grow that
should not?

Load, through the router's public API only: `--lanes` lanes each keep one 3-step python execution
in flight (start, wait, start the next) and `--loop-lanes` lanes one short sequential loop
(`--loop-n` python steps). Completion is seen by ONE poller listing RUNNING executions (the
hot-path bench's driver), so the driver sends one request per execution plus a few lists a
second, whatever the in-flight count.

Sampled every `--interval` seconds:
- memory: VmRSS of every fleet process, of NATS and of this driver; Postgres as the private memory
  (Pss_Anon) of the postmaster and all its backends, its share of shared buffers apart (RSS would
  count shared buffers once per backend, and they fill up to shared_buffers as data grows);
- tables: rows and pg_total_relation_size of every `noetl.*` table of every database; outbox rows;
  JetStream messages, bytes and subjects per stream; the projector's lag; bytes of the log files;
- latency per window, server side, from the shard databases: step issued -> ended
  (`step_timeline`), execution created -> ended per playbook (`execution`); and the driver's own
  start -> seen-finished latency;
- the fleet's CPU per finished execution, less what the idle fleet spends per second (measured for
  `--idle-seconds` before the load starts), and the machine's load average.
Verdicts (see bench/soak_analysis.py for the definition of flat): memory and the tables that must
stay bounded (the outbox, the cluster database) are judged on the slope over the second half of
the run; tables that grow with executions are reported per finished execution.

    python -m bench.soak [--seconds 300] [--interval 10] [--out bench/results/soak.json]
    (make soak; SOAK_SECONDS=... overrides the duration)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
import asyncpg
import nats

from noetl_common.streams import MAX_AGE_VARIABLES
from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import CLUSTER_DB, Infra, InfraInfo, shard_db
from noetl_devstack.postgres import server_durability, with_database
from noetl_devstack.processes import Supervisor

from . import hotpath_workloads as wl
from . import soak_analysis as an
from .hotpath_bench import machine_info, postmaster_pid
from .hotpath_probes import CLOCK_TICKS, _all_processes, _read_stat, _tree_ticks

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "soak.json"
THREE = "bench/three_steps"
LOOP = "bench/sequential_loop"
STREAMS = ("NOETL_COMMANDS", "NOETL_EVENTS")
# Shard tables that must not grow with the work done; every other noetl.* table of a shard is
# reported per finished execution. (projected_delivery grows too: its markers are kept a day.)
BOUNDED_SHARD_TABLES = {"outbox"}
PROJECTION_SETTLE_S = 2.0  # step_timeline rows land after the projector folds them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS") or 300))
    ap.add_argument("--interval", type=float, default=float(os.environ.get("SOAK_INTERVAL") or 10))
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--lanes", type=int, default=16, help="3-step executions kept in flight")
    ap.add_argument("--loop-lanes", type=int, default=2, help="loop executions kept in flight")
    ap.add_argument("--loop-n", type=int, default=10, help="steps of each loop")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="idle fleet CPU measured before the load")
    ap.add_argument("--stream-max-age", type=float, default=60.0,
                    help="JetStream age limit for both streams (s): make run keeps commands 1 h and events a day, "
                         "which a run of minutes never reaches; 0 keeps make run's")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return ap.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


# --- the load -------------------------------------------------------------------------------------

class Driver:
    """Bounded in-flight lanes over one RUNNING-list poller; counts and latencies per window."""

    def __init__(self, session: aiohttp.ClientSession, url: str, args: argparse.Namespace) -> None:
        self.session, self.url, self.args = session, url, args
        self.flight = wl.InFlight()
        self.stop = asyncio.Event()
        self.window: dict[str, list[float]] = {THREE: [], LOOP: []}  # driver-seen seconds, this window
        self.started = self.finished = self.refused = 0
        self.errors: dict[str, int] = {}

    async def lane(self, path: str, workload: dict | None) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                eid = await wl.start(self.session, self.url, path, workload)
            except (wl.BenchError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                # 429/503 under a burst are the fleet's answer, not a driver failure: back off.
                key = str(exc)[:60]
                self.errors[key] = self.errors.get(key, 0) + 1
                self.refused += 1
                await asyncio.sleep(0.5)
                continue
            self.started += 1
            finished_at = await self.flight.add(eid)
            self.finished += 1
            self.window[path].append(finished_at - t)

    def take_window(self) -> dict[str, list[float]]:
        out, self.window = self.window, {THREE: [], LOOP: []}
        return out

    def start_polling(self) -> None:
        self.poll_stop = asyncio.Event()
        self.poller = asyncio.create_task(wl.poll_running(self.session, self.url, self.flight, self.poll_stop,
                                                          interval=0.1))

    async def run(self) -> None:
        poll_stop, poller = self.poll_stop, self.poller
        lanes = [self.lane(THREE, None) for _ in range(self.args.lanes)]
        lanes += [self.lane(LOOP, {"n": self.args.loop_n}) for _ in range(self.args.loop_lanes)]
        tasks = asyncio.ensure_future(asyncio.gather(*lanes))
        try:
            done, _ = await asyncio.wait({tasks, poller}, return_when=asyncio.FIRST_COMPLETED)
            if poller in done:
                poller.result()  # a dead poller would leave every lane waiting: raise its error
            tasks.result()
        finally:
            tasks.cancel()
            poll_stop.set()
            await asyncio.gather(poller, return_exceptions=True)


# --- the samples ----------------------------------------------------------------------------------

def status_kb(pid: int, field: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> dict[str, int]:
    """Pss_Anon (private memory: backend caches, sorts) and Pss_Shmem (its share of shared buffers)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("Pss_Anon", "Pss_Shmem"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def descendants(root: int, table: dict) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*") if f.is_file())


async def table_bytes(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes of every `noetl.*` table with its indexes and TOAST: a partitioned table's are its
    partitions'; a plain table has no partition tree (pg_partition_tree: no rows), its own then."""
    return {r["relname"]: r["size"] for r in await conn.fetch(
        "SELECT c.relname, coalesce((SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(c.oid) p),"
        " pg_total_relation_size(c.oid))::bigint AS size FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'noetl' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")}


class Sampler:
    def __init__(self, sup: Supervisor, info: InfraInfo, work: Path, specs, shards: int, interval: float) -> None:
        self.sup, self.info, self.work, self.shards, self.interval = sup, info, work, shards, interval
        self.projector_url = next(s.url for s in specs if s.name == "projector")
        self.pg_root = postmaster_pid(info)
        self.dbs = [CLUSTER_DB] + [shard_db(i) for i in range(shards)]
        self.conns: dict[str, asyncpg.Connection] = {}
        self.tables: dict[str, list[str]] = {}
        self.nc = None
        self.last_cpu: dict[str, int] | None = None
        self.last_t: float | None = None
        self.cut: object = None  # the end of the last latency window, in the database's clock
        self.postgres_extra: dict[str, int] = {}
        self.idle_cpu_ms_per_s = 0.0

    async def open(self) -> None:
        for db in self.dbs:
            self.conns[db] = await asyncpg.connect(with_database(self.info.admin_dsn, db))
            self.tables[db] = [r["relname"] for r in await self.conns[db].fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'noetl' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1")]
        self.nc = await nats.connect(self.info.nats_url)
        self.cut = await self.conns[CLUSTER_DB].fetchval(f"SELECT now() - interval '{PROJECTION_SETTLE_S} s'")

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()
        if self.nc is not None:
            await self.nc.close()

    def pids(self) -> dict[str, int]:
        out = {name: running.pid for name, (running, _proc) in self.sup.running.items()}
        if self.info.nats_pid:
            out["nats"] = self.info.nats_pid
        out["driver"] = os.getpid()
        return out

    def memory(self, table: dict) -> dict[str, int | None]:
        out = {name: status_kb(pid) for name, pid in self.pids().items()}
        tree = descendants(self.pg_root, table)
        pss = [pss_kb(pid) for pid in tree]
        # Private memory is where a leak would show; shared buffers fill up to shared_buffers as
        # the data grows, which is a cache reaching its bound, so it is reported but not judged.
        out["postgres"] = sum(p.get("Pss_Anon", 0) for p in pss)
        # Pools open connections on demand (up to NOETL_DB_POOL_MAX each) and close idle ones after
        # 5 min, so the total also follows the backend count; per backend is reported, not judged.
        backends = max(1, len(tree) - 1)
        self.postgres_extra = {"shared_kb": sum(p.get("Pss_Shmem", 0) for p in pss), "backends": len(tree) - 1,
                               "private_kb_per_backend": out["postgres"] // backends}
        return out

    def cpu(self, table: dict, t: float) -> dict[str, float]:
        """CPU % of one core per process since the last sample (Postgres: its whole tree)."""
        ticks = {name: (_read_stat(pid).ticks if _read_stat(pid) else 0) for name, pid in self.pids().items()}
        ticks["postgres"] = _tree_ticks(self.pg_root, table)
        out = {}
        if self.last_cpu is not None and self.last_t is not None and t > self.last_t:
            out = {k: round(100.0 * (v - self.last_cpu.get(k, 0)) / CLOCK_TICKS / (t - self.last_t), 1)
                   for k, v in ticks.items()}
        self.last_cpu, self.last_t = ticks, t
        return out

    async def db_tables(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for db in self.dbs:
            conn, names = self.conns[db], self.tables[db]
            counts = await conn.fetchrow("SELECT " + ", ".join(
                f"(SELECT count(*) FROM noetl.{t}) AS {t}" for t in names))
            sizes = await table_bytes(conn)
            out[db] = {t: {"rows": counts[t], "bytes": sizes.get(t, 0)} for t in names}
            if db != CLUSTER_DB:
                out[db]["_finished_executions"] = {"rows": await conn.fetchval(
                    "SELECT count(*) FROM noetl.execution WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')")}
        return out

    async def outbox_detail(self) -> dict[str, dict]:
        """Where a queue table's bytes are (heap, TOAST, indexes) and how often autovacuum ran."""
        out = {}
        for db in self.dbs[1:]:
            row = await self.conns[db].fetchrow(
                "SELECT pg_relation_size(c.oid) AS heap, coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)"
                " AS toast, pg_indexes_size(c.oid) AS indexes, s.n_live_tup, s.n_dead_tup, s.autovacuum_count,"
                " s.vacuum_count FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
                " WHERE c.oid = 'noetl.outbox'::regclass")
            out[db] = dict(row)
        return out

    async def latency_window(self) -> dict:
        """Server-side latencies of what ended in [last cut, now - settle): per step, per execution."""
        cut = await self.conns[CLUSTER_DB].fetchval(f"SELECT now() - interval '{PROJECTION_SETTLE_S} s'")
        lo, self.cut = self.cut, cut
        steps: list[float] = []
        runs: dict[str, list[float]] = {THREE: [], LOOP: []}
        statuses: dict[str, int] = {}
        for db in self.dbs[1:]:
            conn = self.conns[db]
            steps += [r[0] for r in await conn.fetch(
                "SELECT extract(epoch FROM ended_at - issued_at)::float8 * 1000 FROM noetl.step_timeline "
                "WHERE ended_at >= $1 AND ended_at < $2 AND issued_at IS NOT NULL", lo, cut)]
            for r in await conn.fetch(
                    "SELECT path, status, extract(epoch FROM ended_at - created_at)::float8 * 1000 AS ms "
                    "FROM noetl.execution WHERE ended_at >= $1 AND ended_at < $2", lo, cut):
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
                if r["status"] == "COMPLETED" and r["path"] in runs:
                    runs[r["path"]].append(r["ms"])
        span = (cut - lo).total_seconds()
        return {"window_s": round(span, 2), "ended": statuses,
                "step": {**an.window_percentiles(steps), "n": len(steps)},
                "three_step_execution": {**an.window_percentiles(runs[THREE]), "n": len(runs[THREE])},
                "loop_execution": {**an.window_percentiles(runs[LOOP]), "n": len(runs[LOOP])}}

    async def streams(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in STREAMS:
            try:
                msg = await self.nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
                state = json.loads(msg.data).get("state", {})
            except Exception:  # noqa: BLE001 - a sample without this stream is still a sample
                state = {}
            out[name] = {"messages": state.get("messages"), "bytes": state.get("bytes"),
                         "subjects": state.get("num_subjects")}
        return out

    async def projector_lag(self, session: aiohttp.ClientSession) -> float | None:
        try:
            async with session.get(f"{self.projector_url}/metrics") as r:
                text = await r.text()
        except aiohttp.ClientError:
            return None
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("noetl_projector_lag_events{")]
        return sum(values) if values else None

    async def sample(self, session: aiohttp.ClientSession, t: float, driver: Driver) -> dict:
        t_read = time.perf_counter()
        table = _all_processes()
        sample = {"t_s": round(t, 2), "memory_kb": self.memory(table), "postgres": self.postgres_extra,
                  "cpu_pct": self.cpu(table, t),
                  "tables": await self.db_tables(), "outbox": await self.outbox_detail(),
                  "latency_ms": await self.latency_window(),
                  "streams": await self.streams(), "projector_lag": await self.projector_lag(session),
                  "log_bytes": dir_bytes(self.work / "logs"),
                  "loadavg_1m": round(os.getloadavg()[0], 2)}  # the machine's, other people's work included
        window = driver.take_window()
        sample["driver"] = {"started": driver.started, "finished": driver.finished, "refused": driver.refused,
                            "three_step_ms": an.window_percentiles([s * 1000 for s in window[THREE]]),
                            "loop_ms": an.window_percentiles([s * 1000 for s in window[LOOP]]),
                            "finished_in_window": len(window[THREE]) + len(window[LOOP])}
        # CPU the fleet (Postgres and NATS included) spent per execution finished in the window: a
        # per-step cost that grows with history shows here even when a busy machine moves latency.
        fleet_cpu_s = sum(v for k, v in sample["cpu_pct"].items() if k != "driver") / 100 * self.interval
        finished = sample["driver"]["finished_in_window"]
        sample["fleet_cpu_ms_per_execution"] = round(1000 * fleet_cpu_s / finished, 2) \
            if finished and sample["cpu_pct"] else None
        sample["fleet_net_cpu_ms_per_execution"] = \
            round((1000 * fleet_cpu_s - self.idle_cpu_ms_per_s * self.interval) / finished, 2) \
            if finished and sample["cpu_pct"] else None
        sample["sample_s"] = round(time.perf_counter() - t_read, 3)
        return sample


# --- the analysis ---------------------------------------------------------------------------------

def series(samples: list[dict], *path: str) -> list[tuple[float, float]]:
    out = []
    for s in samples:
        node = s
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        out.append((s["t_s"], node))
    return out


def finished_series(samples: list[dict], dbs: list[str]) -> list[tuple[float, float]]:
    return [(s["t_s"], sum(s["tables"][db]["_finished_executions"]["rows"] for db in dbs)) for s in samples]


def memory_verdicts(samples: list[dict]) -> dict[str, dict]:
    """Every process's RSS, and Postgres per backend: its total follows the backend count (pools
    open connections on demand, up to their max, and close idle ones), so a leak shows per backend.
    The total is reported beside it, not judged."""
    memory = {name: an.verdict(series(samples, "memory_kb", name), an.RULES["memory"])
              for name in samples[-1]["memory_kb"] if name != "postgres"}
    memory["postgres_per_backend"] = an.verdict(series(samples, "postgres", "private_kb_per_backend"),
                                                an.RULES["memory"])
    memory["postgres_total"] = {
        **an.verdict(series(samples, "memory_kb", "postgres"), an.RULES["memory"]), "flat": None,
        "not_judged": "follows the backend count, {} -> {}".format(
            *(s["postgres"].get("backends") for s in (samples[0], samples[-1])))}
    return memory


def analyse(samples: list[dict], shards: int, interval: float) -> dict:
    shard_dbs = [shard_db(i) for i in range(shards)]
    memory = memory_verdicts(samples)
    bounded: dict[str, dict] = {}
    for db, tables in samples[-1]["tables"].items():
        for t in tables:
            if t.startswith("_") or (db != CLUSTER_DB and t not in BOUNDED_SHARD_TABLES):
                continue
            for what in ("rows", "bytes"):
                bounded[f"{db}.{t}.{what}"] = an.verdict(series(samples, "tables", db, t, what), an.RULES[what])
    done = finished_series(samples, shard_dbs)
    growing: dict[str, dict] = {}
    names = sorted({t for db in shard_dbs for t in samples[-1]["tables"][db]
                    if not t.startswith("_") and t not in BOUNDED_SHARD_TABLES})
    for t in names:
        for what in ("rows", "bytes"):
            total = [(s["t_s"], sum(s["tables"][db][t][what] for db in shard_dbs)) for s in samples]
            growing[f"{t}.{what}"] = an.per_execution(total, done)
    for name in STREAMS:
        for what in ("messages", "bytes", "subjects"):
            pts = series(samples, "streams", name, what)
            if all(v is not None for _, v in pts):
                growing[f"nats.{name}.{what}"] = an.per_execution(pts, done)
    growing["log_files.bytes"] = an.per_execution(series(samples, "log_bytes"), done)
    latency = {}
    for kind in ("step", "three_step_execution", "loop_execution"):
        for p in ("p50", "p99"):
            latency[f"server.{kind}.{p}"] = an.verdict(series(samples, "latency_ms", kind, p), an.RULES["latency"])
    for kind in ("three_step_ms", "loop_ms"):
        for p in ("p50", "p99"):
            latency[f"driver.{kind}.{p}"] = an.verdict(series(samples, "driver", kind, p), an.RULES["latency"])
    # Per-window CPU per execution moves with throughput (fixed per-second costs, a busy machine);
    # the marginal cost per execution, first half vs second, does not.
    cost = [(x["t_s"], x["driver"]["finished_in_window"] / interval,
             sum(v for k, v in x["cpu_pct"].items() if k != "driver") * 10 if x["cpu_pct"] else None)
            for x in samples]
    cpu = {**an.verdict(series(samples, "fleet_net_cpu_ms_per_execution"), an.RULES["cpu"]),
           "marginal_first_vs_second_half": an.cost_drift(cost, an.RULES["cpu"])}
    throughput = an.verdict([(t, -v) for t, v in series(samples, "driver", "finished_in_window")], an.RULES["throughput"])
    judged = {**{f"memory.{k}": v for k, v in memory.items()}, **{f"table.{k}": v for k, v in bounded.items()},
              **{f"latency.{k}": v for k, v in latency.items()}, "cpu_per_execution": cpu,
              "throughput_no_decline": throughput}
    return {"memory": memory, "bounded_tables": bounded, "latency": latency, "cpu_per_execution": cpu,
            "throughput_no_decline": throughput, "per_finished_execution": growing,
            "summary": an.summarize(judged),
            "note": "Latency is judged as measured. With a fixed number in flight, latency = in flight / "
                    "throughput, so when other load on the machine cuts throughput, latency drifts with it: read "
                    "latency verdicts beside throughput_no_decline (finished per window, a decline is not flat) "
                    "and cpu_per_execution (the fleet's CPU per execution less its idle CPU, measured before "
                    "the load), which depends much less on the machine's load."}


def throughput(samples: list[dict], shards: int) -> dict:
    done = finished_series(samples, [shard_db(i) for i in range(shards)])
    half = an.second_half(done)
    rate = an.slope(half)
    return {"finished_executions": done[-1][1], "second_half_per_s": round(rate, 2) if rate else None,
            "overall_per_s": round(done[-1][1] / done[-1][0], 2) if done[-1][0] else None}


def report_lines(report: dict) -> list[str]:
    v = report["verdicts"]
    lines = [f"\nsoak {report['config']['seconds']:.0f} s, {report['throughput']['finished_executions']} executions "
             f"finished ({report['throughput']['second_half_per_s']}/s in the second half)",
             "memory (second half; slope kB/min, % of mean/min):"]
    for name, m in v["memory"].items():
        verdict = "flat" if m["flat"] else m.get("not_judged", "?") if m["flat"] is None else "GROWING"
        lines.append(f"  {name:20} mean {m['mean']} kB  slope {m['slope_per_min']}  "
                     f"({m.get('slope_pct_of_mean_per_min')} %/min)  {verdict}")
    lines.append("bounded tables:")
    for name, m in v["bounded_tables"].items():
        if m["mean"]:
            lines.append(f"  {name:42} mean {m['mean']}  slope {m['slope_per_min']}/min  "
                         f"{'flat' if m['flat'] else 'GROWING' if m['flat'] is False else '?'}")
    lines.append("per finished execution:")
    for name, m in v["per_execution" if "per_execution" in v else "per_finished_execution"].items():
        if m["per_execution"]:
            lines.append(f"  {name:40} {m['per_execution']}")
    lines.append("latency (ms; mean of the second half's windows, slope ms/min):")
    for name, m in v["latency"].items():
        lines.append(f"  {name:38} mean {m['mean']}  slope {m['slope_per_min']}  "
                     f"{'flat' if m['flat'] else 'DRIFTING' if m['flat'] is False else '?'}")
    c = v["cpu_per_execution"]
    m = c["marginal_first_vs_second_half"]
    lines.append(f"fleet CPU ms per execution less idle: mean {c['mean']}  slope {c['slope_per_min']}/min  "
                 f"{'flat' if c['flat'] else 'GROWING' if c['flat'] is False else '?'}  (marginal, first half "
                 f"{m.get('first_half')}, second {m.get('second_half')})")
    d = v["throughput_no_decline"]
    lines.append(f"finished per window: mean {d['mean'] and -d['mean']}  slope {d['slope_per_min'] and -d['slope_per_min']}/min  "
                 f"{'no decline' if d['flat'] else 'DECLINING' if d['flat'] is False else '?'}")
    s = v["summary"]
    lines.append(f"not flat: {s['not_flat'] or 'none'}")
    return lines


# --- the run --------------------------------------------------------------------------------------

async def soak(args: argparse.Namespace, work: Path) -> dict:
    machine = machine_info()
    infra, sup = Infra(work), Supervisor(work / "logs")
    sampler: Sampler | None = None
    try:
        say(f"starting embedded Postgres + NATS and a {args.shards}-shard fleet under {work} ...")
        info = await infra.up(args.shards)
        # make run's configuration (one worker, its log level), but for the streams' age limit: with
        # make run's (1 h, 1 day) a run of minutes would only ever see the streams filling up.
        extra = {var: f"{args.stream_max_age:g}" for var in MAX_AGE_VARIABLES.values()} if args.stream_max_age else {}
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(args.shards),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "secrets.json"),
                                        extra_env=extra))
        await start_fleet(sup, specs)
        url = router_url(specs)
        sampler = Sampler(sup, info, work, specs, args.shards, args.interval)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            for playbook in (wl.THREE_STEPS, wl.SEQUENTIAL_LOOP):
                await wl.register(session, url, playbook)
            await sampler.open()
            durability = await server_durability(sampler.conns[CLUSTER_DB])
            driver = Driver(session, url, args)
            # What the fleet spends per second with nothing to do but the driver's poller: taken out
            # of each window's CPU, so the rest is what the executions cost.
            driver.start_polling()
            say(f"measuring the idle fleet's CPU for {args.idle_seconds:.0f} s ...")
            sampler.cpu(_all_processes(), -args.idle_seconds)
            await asyncio.sleep(args.idle_seconds)
            idle = sampler.cpu(_all_processes(), 0.0)
            sampler.idle_cpu_ms_per_s = round(sum(v for k, v in idle.items() if k != "driver") * 10, 1)
            say(f"fleet up (router {url}); {args.lanes} 3-step + {args.loop_lanes} loop(n={args.loop_n}) "
                f"executions in flight for {args.seconds:.0f} s, a sample every {args.interval:.0f} s")
            run = asyncio.create_task(driver.run())
            samples: list[dict] = []
            t0 = time.perf_counter()
            try:
                while True:
                    next_t = (len(samples) + 1) * args.interval
                    await asyncio.sleep(max(0.0, t0 + next_t - time.perf_counter()))
                    if run.done():
                        run.result()  # the driver died: raise its error
                    samples.append(await sampler.sample(session, time.perf_counter() - t0, driver))
                    say(progress(samples[-1], args))
                    if next_t >= args.seconds:
                        break
            finally:
                driver.stop.set()
                await asyncio.wait({run}, timeout=60)
                run.cancel()
        return {"benchmark": f"soak: {args.shards}-shard fleet as make run starts it, steady load through the router",
                "machine": machine, "postgres_mode": info.pg_mode,
                "postgres_durability": durability,
                "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "definitions": {"flat": an.__doc__.strip(), "rules": {k: asdict(r) for k, r in an.RULES.items()}},
                "driver": {"started": driver.started, "finished": driver.finished, "refused": driver.refused,
                           "errors": driver.errors},
                "throughput": throughput(samples, args.shards),
                "idle_fleet_cpu_ms_per_s": sampler.idle_cpu_ms_per_s,
                "verdicts": analyse(samples, args.shards, args.interval), "samples": samples}
    finally:
        if sampler is not None:
            await sampler.close()
        sup.stop_all()
        infra.down()


def progress(s: dict, args: argparse.Namespace) -> str:
    mb = {k: round(v / 1024) for k, v in s["memory_kb"].items() if v is not None}
    outbox = sum(t["outbox"]["rows"] for db, t in s["tables"].items() if "outbox" in t)
    lat, d = s["latency_ms"], s["driver"]
    return (f"[{s['t_s']:6.0f}/{args.seconds:.0f} s] finished {d['finished']:6d} (+{d['finished_in_window']}) "
            f"refused {d['refused']}  step p50/p99 {lat['step']['p50']}/{lat['step']['p99']} ms  "
            f"3-step p50/p99 {lat['three_step_execution']['p50']}/{lat['three_step_execution']['p99']} ms  "
            f"outbox {outbox}  lag {s['projector_lag']}  RSS MB {mb}  (sample {s['sample_s']} s)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seconds < 4 * args.interval:
        raise SystemExit("--seconds must cover at least 4 intervals")
    work = Path(tempfile.mkdtemp(prefix="noetl-soak-"))
    t0 = time.perf_counter()
    try:
        report = asyncio.run(soak(args, work))
    except BaseException:
        print(f"soak failed; logs kept under {work}/logs", file=sys.stderr)
        raise
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    for line in report_lines(report):
        say(line)
    say(f"\nwritten {args.out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
