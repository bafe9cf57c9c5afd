"""Hot-path benchmark: the fleet and its peer, DBOS Transact, measured in the same run on the same
Postgres server, interleaved (peer A, fleet A, peer B(n), fleet B(n), ...) so a noisy machine
moves both sides alike; the headline is the ratio fleet/DBOS.

Fleet: embedded infra + a fleet started the way `make run` does (1 shard, router, publisher,
projector, 1 worker), driven only through the router's public HTTP API.
  A  3-step playbook, 600 executions, 50 in flight (one RUNNING-list poller, no per-execution polls)
  B  one execution looping sequentially over n python steps, n = 100, 1000, 5000
  C  heartbeat events POSTed by 32 clients over 16 running executions
Peer: ../shared/peers/dbos_bench.py's workflows via bench/peer_dbos.py in bench/.peer-venv.
Cost per workload: CPU per process (from /proc), pg_stat_database deltas over the side's own
databases, write transactions (xids, whole server).

    python -m bench.hotpath_bench [--out bench/results/hotpath.json] [--skip-peer] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from noetl_devstack import secrets
from noetl_devstack.fleet import DEV_WORKER_SLOTS, FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import CLUSTER_DB, Infra, InfraInfo, shard_db
from noetl_devstack.postgres import ensure_databases, with_database
from noetl_devstack.processes import Supervisor

from . import hotpath_workloads as wl
from .hotpath_peer import DEFAULT_PEERS_DIR, PeerRunner, PeerUnavailable, peer_python, peer_versions
from .hotpath_probes import CpuProbe, DbProbe, Meter, less_idle, per_unit, wait_quiet

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "hotpath.json"
PEER_DB = "dbos_bench_sys"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--total", type=int, default=600, help="workload A executions")
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--reps", type=int, default=1, help="workload A repetitions per side (median reported)")
    ap.add_argument("--alone", type=int, default=100, help="workload A1 executions, one at a time (latency)")
    ap.add_argument("--loops", default="100,1000,5000", help="workload B sizes")
    ap.add_argument("--events", type=int, default=10_000, help="workload C events")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--ingest-executions", type=int, default=16)
    ap.add_argument("--loop-budget", type=float, default=75.0,
                    help="seconds a fleet loop may run before it is cancelled and reported as truncated")
    ap.add_argument("--settle", type=float, default=11.0,
                    help="seconds for idle Postgres backends to flush statistics (PG waits 10 s)")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR)
    return ap.parse_args(argv)


# --- the run's context ----------------------------------------------------------------------------

class Rig:
    """Everything a workload needs: the HTTP session, the router URL and the meters of each side."""

    def __init__(self, session: aiohttp.ClientSession, url: str, db: DbProbe, fleet_cpu: CpuProbe,
                 settle: float) -> None:
        self.session, self.url, self.db = session, url, db
        self.fleet = Meter(fleet_cpu, db, [CLUSTER_DB, shard_db(0)], settle)
        self.peer: Meter | None = None
        self.runner: PeerRunner | None = None
        self.idle_commits_per_s = 0.0  # the idle fleet's read-only commits, measured first


async def metered(meter: Meter, work: Callable[[], Awaitable[dict]]) -> tuple[dict, dict]:
    # Start from a quiet system, so the previous workload's tail is not billed to this one.
    await wait_quiet(meter.cpu)
    started = await meter.start()
    result = await work()
    return result, await meter.stop(started)


def postmaster_pid(info: InfraInfo) -> int:
    pg = Path(info.data_dir) / "pg"
    for pidfile in (pg / "data" / "postmaster.pid", pg / "pgserver" / "postmaster.pid"):
        if pidfile.exists():
            return int(pidfile.read_text().split()[0])
    raise RuntimeError(f"no postmaster.pid under {pg} (external Postgres cannot be metered)")


def fleet_roots(sup: Supervisor, info: InfraInfo) -> dict[str, int]:
    roots = {name: running.pid for name, (running, _proc) in sup.running.items()}
    roots["postgres"] = postmaster_pid(info)
    if info.nats_pid:
        roots["nats"] = info.nats_pid
    return roots


# --- workloads with their costs -------------------------------------------------------------------

def with_costs(result: dict, cost: dict, units: dict[str, int], idle_commits_per_s: float = 0.0) -> dict:
    """A workload's numbers and its cost. The cost's pg_stat part is completed later (see Meter),
    so the per-unit views are added at the end by `finish_costs`."""
    return {**result, "cost_total": cost, "_units": units, "_idle_commits_per_s": idle_commits_per_s}


def finish_costs(node: object) -> None:
    """Every workload entry in the report gets its per-unit costs (cost_per_workflow, ...)."""
    if isinstance(node, list):
        for item in node:
            finish_costs(item)
    if not isinstance(node, dict):
        return
    if "_units" in node:
        units, idle = node.pop("_units"), node.pop("_idle_commits_per_s")
        cost = less_idle(node["cost_total"], idle) if idle else node["cost_total"]
        node["cost_total"] = cost
        node.update({f"cost_per_{name}": per_unit(cost, n) for name, n in units.items() if n})
    for value in node.values():
        finish_costs(value)


async def fleet_three_step(rig: Rig, total: int, in_flight: int, *, rounds: bool = False) -> dict:
    result, cost = await metered(rig.fleet, lambda: wl.three_step_run(rig.session, rig.url, total, in_flight,
                                                                      rounds=rounds))
    return with_costs(result, cost, {"workflow": total, "step": 3 * total}, rig.idle_commits_per_s)


async def fleet_loop(rig: Rig, n: int, budget: float) -> dict:
    result, cost = await metered(rig.fleet, lambda: wl.loop_run(rig.session, rig.url, n, budget))
    result = await wl.loop_detail(rig.session, rig.url, result)
    return with_costs(result, cost, {"step": result["steps_completed"]}, rig.idle_commits_per_s)


async def fleet_ingest(rig: Rig, events: int, clients: int, executions: int) -> dict:
    targets = await wl.start_sleepers(rig.session, rig.url, executions)
    try:
        result, cost = await metered(rig.fleet, lambda: wl.ingest_run(rig.session, rig.url, targets, events, clients))
    finally:
        await wl.cancel_all(rig.session, rig.url, targets)
    return with_costs(result, cost, {"event": events}, rig.idle_commits_per_s)


def peer_fanout_view(raw: dict) -> dict:
    """dbos_bench's fan-out result in the fleet's key names (its db_* latencies are server side)."""
    return {"executions": raw["workflows"], "in_flight": 50, "wall_s": round(raw["elapsed_s"], 3),
            "wf_per_s": round(raw["wf_per_s"], 2), "steps_per_s": round(raw["steps_per_s"], 2),
            "server_p50_ms": round(raw["db_p50_ms"], 2), "server_p99_ms": round(raw["db_p99_ms"], 2),
            "client_p50_ms": round(raw["client_p50_ms"], 2), "client_p99_ms": round(raw["client_p99_ms"], 2),
            "write_xacts_per_wf_own_count": round(raw["write_xacts_per_wf"], 3)}


async def peer_three_step(rig: Rig, total: int, in_flight: int) -> dict:
    raw, cost = await metered(rig.peer, lambda: rig.runner.run(f"fanout {total} {in_flight}"))
    view = peer_fanout_view(raw)
    view["in_flight"] = in_flight
    # dbos_bench's "serial" mode starts a round of `in_flight`, waits for all of them, repeats;
    # the fleet's lanes start a new execution as soon as one finishes.
    view["start_pattern"] = "rounds"
    return with_costs(view, cost, {"workflow": total, "step": 3 * total})


async def peer_loop(rig: Rig, n: int) -> dict:
    raw, cost = await metered(rig.peer, lambda: rig.runner.run(f"loop {n}"))
    view = {"n": n, "wall_s": round(raw["elapsed_s"], 3), "steps_per_s": round(raw["steps_per_s"], 2),
            "write_xacts_per_step_own_count": round(raw["write_xacts_per_step"], 3), "truncated": False,
            "chunk_steps_per_s": [round(r, 1) for r in raw["chunk_steps_per_s"]]}
    return with_costs(view, cost, {"step": n})


async def idle_background(rig: Rig, seconds: float = 4.0) -> dict:
    """What the idle fleet costs per second (its loops poll Postgres): context for small workloads,
    and the rate taken out of their commit counts for the settle time."""
    await wait_quiet(rig.fleet.cpu)
    await asyncio.sleep(rig.fleet.settle_s)  # the warm-up's statistics land before, not inside
    cpu_before, db_before = await rig.fleet.start()
    await asyncio.sleep(seconds)
    cpu_after, db_after = await rig.fleet.start()
    cost = {"cpu_ms": CpuProbe.delta_ms(cpu_before, cpu_after), "db": DbProbe.delta(db_before, db_after)}
    rig.idle_commits_per_s = cost["db"]["xact_commit"] / seconds
    return {"seconds": seconds, "cost_per_second": per_unit(cost, seconds)}


# --- the sequence ---------------------------------------------------------------------------------

def median_run(runs: list[dict], key: str) -> dict:
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["all_runs_" + key] = [r[key] for r in runs]
    return chosen


async def run_sequence(rig: Rig, args: argparse.Namespace) -> dict:
    fleet: dict = {"idle_background": await idle_background(rig)}
    peer: dict = {}
    a_fleet, a_peer = [], []
    for rep in range(args.reps):
        if rig.runner:
            a_peer.append(await peer_three_step(rig, args.total, args.in_flight))
            say(f"[A {rep + 1}/{args.reps}] DBOS  {a_peer[-1]['wf_per_s']:8.1f} wf/s")
        a_fleet.append(await fleet_three_step(rig, args.total, args.in_flight))
        say(f"[A {rep + 1}/{args.reps}] fleet {a_fleet[-1]['wf_per_s']:8.1f} wf/s")
    fleet["three_step"] = median_run(a_fleet, "wf_per_s")
    if a_peer:
        peer["three_step"] = median_run(a_peer, "wf_per_s")
    # The peer's own start pattern (rounds of `in_flight` started one after another): latencies at
    # the concurrency that pattern really produces, comparable with DBOS's p50/p99 directly.
    fleet["three_step_rounds"] = await fleet_three_step(rig, args.total, args.in_flight, rounds=True)
    say(f"[A2] fleet p50/p99 {fleet['three_step_rounds']['server_p50_ms']}/"
        f"{fleet['three_step_rounds']['server_p99_ms']} ms in DBOS's rounds of {args.in_flight}")
    # Latency without queueing: at 50 in flight an execution waits behind 49 others (Little's law:
    # latency = in flight / throughput), so the same workflow one at a time shows what a step costs.
    if rig.runner:
        peer["three_step_alone"] = await peer_three_step(rig, args.alone, 1)
        say(f"[A1] DBOS  p50/p99 {peer['three_step_alone']['server_p50_ms']}/"
            f"{peer['three_step_alone']['server_p99_ms']} ms one at a time")
    fleet["three_step_alone"] = await fleet_three_step(rig, args.alone, 1)
    say(f"[A1] fleet p50/p99 {fleet['three_step_alone']['server_p50_ms']}/"
        f"{fleet['three_step_alone']['server_p99_ms']} ms one at a time")
    fleet["loop"], peer_loops = {}, {}
    for n in [int(x) for x in args.loops.split(",") if x]:
        if rig.runner:
            peer_loops[str(n)] = await peer_loop(rig, n)
            say(f"[B n={n}] DBOS  {peer_loops[str(n)]['steps_per_s']:8.1f} steps/s")
        fleet["loop"][str(n)] = await fleet_loop(rig, n, args.loop_budget)
        say(f"[B n={n}] fleet {fleet['loop'][str(n)]['steps_per_s']:8.1f} steps/s")
    if peer_loops:
        peer["loop"] = peer_loops
    fleet["ingest"] = await fleet_ingest(rig, args.events, args.clients, args.ingest_executions)
    say(f"[C] fleet {fleet['ingest']['events_per_s']:8.1f} events/s")
    # The last workloads' statistics settle; then every cost is complete.
    await rig.fleet.settle()
    if rig.peer:
        await rig.peer.settle()
    report = {"fleet": fleet, "dbos": peer}
    finish_costs(report)
    for side in (fleet, peer):
        if "loop" in side:
            side["loop_flatness"] = flatness(side["loop"])
    fleet["ingest"]["cpu_ceiling_events_per_s"] = cpu_ceiling(fleet["ingest"]["cost_per_event"]["cpu_ms"])
    return report


def cpu_ceiling(per_event_ms: dict) -> int | None:
    """Events/s the fleet's processes could reach with every core of the machine to themselves at
    this CPU cost per event (the driver's share left out): what a faster driver could not exceed."""
    fleet_ms = per_event_ms["total"] - per_event_ms.get("driver", 0.0)
    return round((os.cpu_count() or 1) * 1000 / fleet_ms) if fleet_ms > 0 else None


def flatness(loops: dict) -> dict | None:
    """steps/s of the largest n that ran to the end relative to the smallest: 1.0 = per-step cost
    independent of the execution's history. The fleet's own start->end rate where there is one
    (a short loop's client-side rate is mostly its start and the poll that sees its end); a
    truncated loop says nothing about its full length."""
    sizes = sorted((n for n, loop in loops.items() if not loop["truncated"]), key=int)
    if len(sizes) < 2:
        return None

    def rate(loop: dict) -> float:
        return loop.get("server_steps_per_s") or loop["steps_per_s"]

    return {"of": f"n={sizes[-1]} vs n={sizes[0]}", "ratio": round(rate(loops[sizes[-1]]) / rate(loops[sizes[0]]), 3)}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(fleet: dict, peer: dict) -> dict:
    """fleet / DBOS; above 1 = the fleet does more (throughput) or spends more (cost)."""
    if "three_step" not in peer:
        return {}  # the peer was skipped
    fa, pa = fleet["three_step"], peer["three_step"]
    out = {"wf_per_s": ratio(fa["wf_per_s"], pa["wf_per_s"]),
           "server_p50_ms": ratio(fa["server_p50_ms"], pa["server_p50_ms"]),
           "write_xacts_per_wf": ratio(fa["cost_per_workflow"]["db"]["write_xacts"],
                                       pa["cost_per_workflow"]["db"]["write_xacts"]),
           "cpu_ms_per_wf": ratio(fa["cost_per_workflow"]["cpu_ms"]["total"],
                                  pa["cost_per_workflow"]["cpu_ms"]["total"])}
    if "three_step_rounds" in fleet:
        for q in ("p50", "p99"):
            out[f"rounds_server_{q}_ms"] = ratio(fleet["three_step_rounds"][f"server_{q}_ms"], pa[f"server_{q}_ms"])
        out["rounds_wf_per_s"] = ratio(fleet["three_step_rounds"]["wf_per_s"], pa["wf_per_s"])
    if "three_step_alone" in peer:
        out["alone_server_p50_ms"] = ratio(fleet["three_step_alone"]["server_p50_ms"],
                                           peer["three_step_alone"]["server_p50_ms"])
    for n, loop in fleet.get("loop", {}).items():
        theirs = peer.get("loop", {}).get(n)
        if theirs:
            out[f"loop_steps_per_s_n{n}"] = ratio(loop["steps_per_s"], theirs["steps_per_s"])
            # the fleet's own start->end (no completion polling); DBOS's number is in-process already
            out[f"loop_server_steps_per_s_n{n}"] = ratio(loop.get("server_steps_per_s"), theirs["steps_per_s"])
            out[f"loop_write_xacts_per_step_n{n}"] = ratio(loop["cost_per_step"]["db"]["write_xacts"],
                                                           theirs["cost_per_step"]["db"]["write_xacts"])
            out[f"loop_cpu_ms_per_step_n{n}"] = ratio(loop["cost_per_step"]["cpu_ms"]["total"],
                                                      theirs["cost_per_step"]["cpu_ms"]["total"])
    return out


# --- machine, setup, teardown ---------------------------------------------------------------------

def machine_info() -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=BENCH_DIR, capture_output=True, text=True).stdout
    load = os.getloadavg()
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": commit,
            "git_dirty": bool(dirty.strip()), "loadavg_at_start": [round(x, 2) for x in load]}


def say(text: str) -> None:
    print(text, flush=True)


async def start_peer(rig: Rig, args: argparse.Namespace, info: InfraInfo, work: Path) -> dict:
    """The peer's runner, launched and warmed up; on any failure the bench goes on without it."""
    if args.skip_peer:
        return {"skipped": "--skip-peer"}
    try:
        python = await asyncio.to_thread(peer_python)
        await ensure_databases(info.admin_dsn, [PEER_DB])
        rig.runner = await PeerRunner.start(python, args.peers_dir, with_database(info.admin_dsn, PEER_DB),
                                            work / "logs" / "peer-dbos.log")
    except (PeerUnavailable, OSError, asyncio.TimeoutError) as exc:
        say(f"DBOS PEER SKIPPED: {exc}")
        return {"skipped": str(exc)}
    rig.peer = Meter(CpuProbe({"dbos": rig.runner.pid, "postgres": postmaster_pid(info)}), rig.db, [PEER_DB],
                     rig.fleet.settle_s)
    return {"versions": await asyncio.to_thread(peer_versions, python), "warm_up": rig.runner.warm_up,
            "database": PEER_DB}


async def warm_fleet(rig: Rig) -> None:
    # First executions pay for connections, imports and plan caches; none of that is the hot path.
    await wl.three_step_run(rig.session, rig.url, 100, 50)
    await wl.loop_run(rig.session, rig.url, 50, budget=120)


async def bench(args: argparse.Namespace, work: Path) -> dict:
    machine = machine_info()  # before anything starts: the load average is other people's work
    infra, sup = Infra(work), Supervisor(work / "logs")
    db: DbProbe | None = None
    rig: Rig | None = None
    try:
        info = await infra.up(1)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(1),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=1, extra_env={"NOETL_LOG_LEVEL": "WARNING",
                                                              "WORKER_MAX_CONCURRENT": str(DEV_WORKER_SLOTS)}))
        await start_fleet(sup, specs)
        db = DbProbe(info.admin_dsn)
        await db.open()
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            rig = Rig(session, router_url(specs), db, CpuProbe(fleet_roots(sup, info)), args.settle)
            for playbook in wl.PLAYBOOKS:
                await wl.register(session, rig.url, playbook)
            say("fleet up; warming up both sides ...")
            peer_info, _ = await asyncio.gather(start_peer(rig, args, info, work), warm_fleet(rig))
            results = await run_sequence(rig, args)
        results["dbos"] = {**peer_info, **results["dbos"]}
        version = await db.server_version()
        return {"benchmark": "hot path: fleet (1 shard, router, publisher, projector, 1 worker) vs DBOS Transact "
                             "3.4.0, same run, same Postgres server",
                "machine": machine, "postgres": {"version": version, "mode": info.pg_mode},
                "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                **results, "ratios": ratios(results["fleet"], results["dbos"])}
    finally:
        if rig is not None and rig.runner is not None:
            await rig.runner.stop()
        if db is not None:
            await db.close()
        sup.stop_all()
        infra.down()


# --- summary --------------------------------------------------------------------------------------

def cpu_line(cost: dict) -> str:
    parts = [f"{k}={v:.2f}" for k, v in cost["cpu_ms"].items() if k not in ("total", "driver") and v >= 0.005]
    return f"total={cost['cpu_ms']['total']:.2f}  " + " ".join(parts)


def summary(report: dict) -> str:
    f, d, r = report["fleet"], report["dbos"], report["ratios"]
    lines = [f"hot-path bench  {report['machine']['date']}  commit {report['machine']['git_commit'][:10]}  "
             f"cpus={report['machine']['cpus']}"]
    peer_ok = "three_step" in d
    if not peer_ok:
        lines.append(f"DBOS peer SKIPPED: {d.get('skipped', 'unknown reason')}")
    lines.append("\nA  3-step, {} executions, {} in flight".format(f["three_step"]["executions"],
                                                                   f["three_step"]["in_flight"]))
    for name, side in (("fleet", f), ("DBOS", d)):
        if "three_step" not in side:
            continue
        a = side["three_step"]
        per = a["cost_per_workflow"]
        lines.append(f"  {name:5} {a['wf_per_s']:7.1f} wf/s  server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms"
                     f"  client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms")
        commits = per["db"].get("xact_commit_less_idle", per["db"]["xact_commit"])
        lines.append(f"        per wf: write xacts {per['db']['write_xacts']:.2f} (per step "
                     f"{a['cost_per_step']['db']['write_xacts']:.2f}), commits {commits:.2f}, "
                     f"tup ins/upd/del {per['db']['tup_inserted']:.1f}/{per['db']['tup_updated']:.1f}/"
                     f"{per['db']['tup_deleted']:.1f}")
        lines.append(f"        CPU ms per wf: {cpu_line(per)}")
    if "three_step_rounds" in f:
        a = f["three_step_rounds"]
        lines.append(f"\nA2 3-step in DBOS's pattern (rounds of {a['in_flight']}, started one after another)")
        lines.append(f"  fleet {a['wf_per_s']:7.1f} wf/s  server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms"
                     f"  client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms")
        if "three_step" in d:
            lines.append(f"  DBOS  {d['three_step']['wf_per_s']:7.1f} wf/s  server p50/p99 "
                         f"{d['three_step']['server_p50_ms']}/{d['three_step']['server_p99_ms']} ms (workload A)")
    if "three_step_alone" in f:
        lines.append("\nA1 3-step, one at a time (latency without queueing)")
        for name, side in (("fleet", f), ("DBOS", d)):
            if "three_step_alone" in side:
                a = side["three_step_alone"]
                lines.append(f"  {name:5} server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms  "
                             f"client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms")
    lines.append("\nB  sequential loop")
    for n, loop in f.get("loop", {}).items():
        theirs = d.get("loop", {}).get(n)
        row = f"  n={n:>5}  fleet {loop['steps_per_s']:7.1f} steps/s (server {loop.get('server_steps_per_s')})"
        stall = loop["stalls"]
        row += f" [{stall['count']} stalls >{stall['over_s']}s, {stall['seconds']} s in all]"
        if loop["truncated"]:
            row += f" (TRUNCATED: cancelled after {loop['wall_s']:.0f} s, {loop['steps_completed']} steps done)"
        if theirs:
            row += f"  DBOS {theirs['steps_per_s']:7.1f} steps/s  ratio {r.get(f'loop_steps_per_s_n{n}')}"
        lines.append(row)
        for name, side in (("fleet", loop), ("DBOS", theirs)):
            if side:
                per = side["cost_per_step"]
                lines.append(f"     {name:5} per step: write xacts {per['db']['write_xacts']:.2f}, "
                             f"CPU ms {cpu_line(per)}")
                lines.append(f"           steps/s per tenth of the run: {side.get('chunk_steps_per_s')}")
    lines.append(f"  flatness (steps/s, largest complete n / smallest n): fleet {f.get('loop_flatness')}  "
                 f"DBOS {d.get('loop_flatness')}")
    c = f["ingest"]
    per = c["cost_per_event"]
    lines.append(f"\nC  ingest: fleet {c['events_per_s']:.0f} events/s  p50/p99 {c['p50_ms']}/{c['p99_ms']} ms  "
                 f"per event: write xacts {per['db']['write_xacts']:.2f}, tup ins {per['db']['tup_inserted']:.2f}, "
                 f"CPU ms {cpu_line(per)}")
    lines.append(f"   CPU ceiling at this cost per event (all {report['machine']['cpus']} cores, no driver): "
                 f"{c.get('cpu_ceiling_events_per_s')} events/s")
    if r:
        lines.append("\nratios fleet/DBOS: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="noetl-hotpath-"))
    t0 = time.perf_counter()
    try:
        report = asyncio.run(bench(args, work))
    except BaseException:
        print(f"bench failed; logs kept under {work}/logs", file=sys.stderr)
        raise
    report["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(summary(report))
    say(f"\nwritten {args.out} ({report['bench_wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
