"""Hot-path benchmark: the fleet and its peers measured in the same run, interleaved (peers A, fleet
A, peers B(n), fleet B(n), ...) so a noisy machine moves every side alike; the headline is the ratio
fleet/peer, with the durability of every side printed and stored beside it.

Fleet: embedded infra + a fleet started the way `make run` does (1 shard, router, publisher,
projector, 1 worker), driven only through the router's public HTTP API.
  A  3-step playbook, 600 executions, 50 in flight (one RUNNING-list poller, no per-execution polls)
  B  one execution looping sequentially over n python steps, n = 100, 1000, 5000
  C  heartbeat events POSTed by 32 clients over 16 running executions
Peers (--peers), each installed once into bench/.peers/ and skipped, saying why, when it cannot be:
  dbos     DBOS Transact on the fleet's Postgres server (../shared/peers/dbos_bench.py via bench/peer_dbos.py)
  restate  restate-server with a Hypercorn SDK endpoint process (../shared/peers/restate_bench.py via
           bench/peer_restate.py), its default storage
  noetl    a separate section after the others: NoETL's own server + NoETL's worker against the fleet
           with that same worker (../shared/peers/noetl_server_bench.py, sides alternated --reps times)
Cost per workload: CPU per process (from /proc), pg_stat_database deltas over the side's own
databases, write transactions (xids, whole server).

    python -m bench.hotpath_bench [--out bench/results/hotpath.json] [--peers dbos,restate,noetl] ...
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from noetl_devstack import secrets
from noetl_devstack.fleet import DEV_WORKER_SLOTS, FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import CLUSTER_DB, Infra, InfraInfo, shard_db
from noetl_devstack.postgres import ensure_databases, server_durability, with_database
from noetl_devstack.processes import Supervisor

from . import hotpath_workloads as wl
from .hotpath_peer import DEFAULT_PEERS_DIR, PeerLaunch, PeerRunner, PeerUnavailable, launch_dbos, launch_restate
from .hotpath_probes import CpuProbe, DbProbe, Meter, less_idle, per_unit, speed_probe_ms, wait_machine_quiet, wait_quiet
from .hotpath_report import PEER_LABELS, durability_pairs, noetl_ratios, ratios, summary, targets
from .peer_noetl import run_noetl_section

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "hotpath.json"
DBOS_DB = "dbos_bench_sys"
PEERS = ("dbos", "restate", "noetl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--total", type=int, default=600, help="workload A executions")
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--reps", type=int, default=1,
                    help="repetitions of workloads A, A1 and B, sides taking turns (median reported); "
                         "NoETL-section alternations")
    ap.add_argument("--alone", type=int, default=100, help="workload A1 executions, one at a time (latency)")
    ap.add_argument("--loops", default="100,1000,5000", help="workload B sizes")
    ap.add_argument("--events", type=int, default=10_000, help="workload C events")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--ingest-executions", type=int, default=16)
    ap.add_argument("--loop-budget", type=float, default=75.0,
                    help="seconds a fleet loop may run before it is cancelled and reported as truncated")
    ap.add_argument("--settle", type=float, default=11.0,
                    help="seconds for idle Postgres backends to flush statistics (PG waits 10 s)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma list of dbos, restate, noetl ('' for none)")
    ap.add_argument("--noetl-total", type=int, default=300, help="NoETL section: 3-step executions per side")
    ap.add_argument("--noetl-loop", type=int, default=200, help="NoETL section: loop steps per side")
    ap.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR)
    args = ap.parse_args(argv)
    args.peers = [p for p in (x.strip() for x in args.peers.split(",")) if p]
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        ap.error(f"--peers: unknown {sorted(unknown)} (known: {', '.join(PEERS)})")
    return args


# --- the run's context ----------------------------------------------------------------------------

@dataclass
class PeerSide:
    """A peer running in this run: its runner and the meter of its processes and databases."""
    runner: PeerRunner
    meter: Meter


class Rig:
    """Everything a workload needs: the HTTP session, the router URL and the meters of each side."""

    def __init__(self, session: aiohttp.ClientSession, url: str, db: DbProbe, fleet_cpu: CpuProbe,
                 settle: float) -> None:
        self.session, self.url, self.db = session, url, db
        self.fleet = Meter(fleet_cpu, db, [CLUSTER_DB, shard_db(0)], settle)
        self.peers: dict[str, PeerSide] = {}  # in the order they run, each before the fleet
        self.idle_commits_per_s = 0.0  # the idle fleet's read-only commits, measured first


async def metered(meter: Meter, work: Callable[[], Awaitable[dict]]) -> tuple[dict, dict]:
    # Start from a quiet machine, so the previous workload's tail (of this side or another) is
    # neither billed to this one nor run beside it.
    waited = await wait_machine_quiet()
    if waited > 2:
        say(f"  (waited {waited:.1f} s for the machine to go quiet)")
    speed = speed_probe_ms()
    started = await meter.start()
    result = await work()
    return {**result, "quiet_wait_s": round(waited, 2), "speed_probe_ms": speed}, await meter.stop(started)


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


async def peer_three_step(side: PeerSide, total: int, in_flight: int) -> dict:
    view, cost = await metered(side.meter, lambda: side.runner.run(f"fanout {total} {in_flight}"))
    return with_costs(view, cost, {"workflow": total, "step": 3 * total})


async def peer_loop(side: PeerSide, n: int) -> dict:
    view, cost = await metered(side.meter, lambda: side.runner.run(f"loop {n}"))
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


def latencies(a: dict) -> str:
    return f"server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms, client {a['client_p50_ms']}/{a['client_p99_ms']} ms"


async def take_turn(rig: Rig, label: str, runs: dict[str, list[dict]], peer_work: Callable[[PeerSide], Awaitable[dict]],
                    fleet_work: Callable[[], Awaitable[dict]], show: Callable[[dict], str]) -> None:
    """One run of a workload on every side, the peers first, then the fleet: appended to `runs`
    under the side's name and printed."""
    for name, side in rig.peers.items():
        runs.setdefault(name, []).append(await peer_work(side))
        say(f"[{label}] {PEER_LABELS[name]:7} {show(runs[name][-1])}")
    runs.setdefault("fleet", []).append(await fleet_work())
    say(f"[{label}] fleet   {show(runs['fleet'][-1])}")


async def run_sequence(rig: Rig, args: argparse.Namespace) -> dict:
    fleet: dict = {"idle_background": await idle_background(rig)}
    peers: dict[str, dict] = {name: {} for name in rig.peers}
    a: dict[str, list[dict]] = {}
    for rep in range(args.reps):
        await take_turn(rig, f"A {rep + 1}/{args.reps}", a,
                        lambda side: peer_three_step(side, args.total, args.in_flight),
                        lambda: fleet_three_step(rig, args.total, args.in_flight), lambda r: f"{r['wf_per_s']:8.1f} wf/s")
    fleet["three_step"] = median_run(a.pop("fleet"), "wf_per_s")
    for name, runs in a.items():
        peers[name]["three_step"] = median_run(runs, "wf_per_s")
    # DBOS's own start pattern (rounds of `in_flight` started one after another): latencies at
    # the concurrency that pattern really produces, comparable with DBOS's p50/p99 directly.
    fleet["three_step_rounds"] = await fleet_three_step(rig, args.total, args.in_flight, rounds=True)
    say(f"[A2] fleet   {latencies(fleet['three_step_rounds'])} in rounds of {args.in_flight}")
    # Latency without queueing: at 50 in flight an execution waits behind 49 others (Little's law:
    # latency = in flight / throughput), so the same workflow one at a time shows what a step costs.
    # Each workload below, like A, runs --reps times with the sides taking turns, and the median
    # run is reported: this machine's speed drifts by up to 2x within a minute, and turns spread
    # that drift over every side instead of handing it to whichever side ran at the wrong moment.
    alone: dict[str, list[dict]] = {}
    for rep in range(args.reps):
        await take_turn(rig, f"A1 {rep + 1}/{args.reps}", alone, lambda side: peer_three_step(side, args.alone, 1),
                        lambda: fleet_three_step(rig, args.alone, 1), lambda r: f"{latencies(r)} one at a time")
    fleet["three_step_alone"] = median_run(alone.pop("fleet"), "server_p50_ms")
    for name, runs in alone.items():  # Restate reports no server-side latency
        peers[name]["three_step_alone"] = median_run(runs, "client_p50_ms")
    sizes = [int(x) for x in args.loops.split(",") if x]
    loops: dict[int, dict[str, list[dict]]] = {n: {} for n in sizes}
    for rep in range(args.reps):
        for n in sizes:
            await take_turn(rig, f"B n={n} {rep + 1}/{args.reps}", loops[n], lambda side, n=n: peer_loop(side, n),
                            lambda n=n: fleet_loop(rig, n, args.loop_budget), lambda r: f"{r['steps_per_s']:8.1f} steps/s")
    fleet["loop"] = {str(n): median_run(runs.pop("fleet"), "steps_per_s") for n, runs in loops.items()}
    for name in rig.peers:
        peers[name]["loop"] = {str(n): median_run(runs[name], "steps_per_s") for n, runs in loops.items()}
    fleet["ingest"] = await fleet_ingest(rig, args.events, args.clients, args.ingest_executions)
    say(f"[C] fleet {fleet['ingest']['events_per_s']:8.1f} events/s")
    # The last workloads' statistics settle; then every cost is complete.
    await rig.fleet.settle()
    for side in rig.peers.values():
        await side.meter.settle()
    report = {"fleet": fleet, "peers": peers}
    finish_costs(report)
    for result in (fleet, *peers.values()):
        if "loop" in result:
            result["loop_flatness"] = flatness(result["loop"])
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


async def launch_peer(name: str, args: argparse.Namespace, info: InfraInfo, work: Path) -> PeerLaunch:
    if name == "dbos":
        await ensure_databases(info.admin_dsn, [DBOS_DB])
        return await launch_dbos(args.peers_dir, with_database(info.admin_dsn, DBOS_DB), work)
    return await launch_restate(args.peers_dir, work)


async def start_peers(rig: Rig, args: argparse.Namespace, info: InfraInfo, work: Path) -> dict[str, dict]:
    """The in-run peers, installed if needed, launched and warmed up; one that fails is skipped."""
    infos: dict[str, dict] = {}
    for name in (p for p in args.peers if p in PEER_LABELS):
        started = time.perf_counter()
        try:
            launched = await launch_peer(name, args, info, work)
        except (PeerUnavailable, OSError, asyncio.TimeoutError) as exc:
            say(f"{PEER_LABELS[name].upper()} PEER SKIPPED: {exc}")
            infos[name] = {"skipped": str(exc)}
            continue
        pid = launched.runner.pid
        # Each runner's tree holds the peer's own processes (DBOS; restate-server and its endpoint)
        # and the peer's driver; DBOS's Postgres is the fleet's server, metered over its database.
        roots = {name: pid, "postgres": postmaster_pid(info)} if name == "dbos" else {name: pid}
        rig.peers[name] = PeerSide(launched.runner, Meter(CpuProbe(roots), rig.db, [DBOS_DB] if name == "dbos" else [],
                                                          rig.fleet.settle_s))
        infos[name] = {**launched.info, "start_s": round(time.perf_counter() - started, 1)}
        say(f"{PEER_LABELS[name]} up in {infos[name]['start_s']} s (install {launched.info.get('install_s')} s)")
    return infos


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
        pg = {"version": await db.server_version(), "mode": info.pg_mode, "durability": await server_durability(db.conn)}
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            rig = Rig(session, router_url(specs), db, CpuProbe(fleet_roots(sup, info)), args.settle)
            for playbook in wl.PLAYBOOKS:
                await wl.register(session, rig.url, playbook)
            say("fleet up; warming up every side ...")
            peer_infos, _ = await asyncio.gather(start_peers(rig, args, info, work), warm_fleet(rig))
            results = await run_sequence(rig, args)
        for name, peer_info in peer_infos.items():
            results["peers"][name] = {**peer_info, **results["peers"].get(name, {})}
        if "dbos" in results["peers"]:
            results["peers"]["dbos"]["database"] = DBOS_DB
    finally:
        if rig is not None:
            for side in rig.peers.values():
                await side.runner.stop()
        if db is not None:
            await db.close()
        sup.stop_all()
        infra.down()
    # NoETL's server and the fleet with NoETL's worker each start their own stack: after the rest.
    if "noetl" in args.peers:
        sides = ["noetl", "fleet"] * max(1, args.reps)
        try:
            results["noetl_server"] = await run_noetl_section(args.peers_dir, work, sides, args.noetl_total,
                                                              args.in_flight, args.noetl_loop, say)
        except (PeerUnavailable, OSError) as exc:
            say(f"NOETL SERVER SECTION SKIPPED: {exc}")
            results["noetl_server"] = {"skipped": str(exc)}
    return assemble(machine, pg, args, results)


def assemble(machine: dict, pg: dict, args: argparse.Namespace, results: dict) -> dict:
    fleet, peers, noetl = results["fleet"], results["peers"], results.get("noetl_server", {})
    sides = {"fleet": pg["durability"]}
    if "three_step" in peers.get("dbos", {}):
        sides["dbos"] = {**pg["durability"], "note": "the fleet's own Postgres server"}
    if "durability" in peers.get("restate", {}):
        sides["restate"] = peers["restate"]["durability"]
    if "durability" in noetl:
        sides["noetl_server"] = noetl["durability"].get("noetl")
        sides["fleet_with_noetl_worker"] = noetl["durability"].get("fleet")
    report = {"benchmark": "hot path: fleet (1 shard, router, publisher, projector, 1 worker) vs "
                           + ", ".join(PEER_LABELS[n] for n in peers) + " in the same run"
                           + (", then NoETL's server vs the fleet with NoETL's worker" if noetl else ""),
              "machine": machine, "postgres": pg,
              "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              **results, "durability": {"sides": sides, "same": durability_pairs(sides)},
              "ratios": {**{name: ratios(fleet, peer) for name, peer in peers.items()},
                         **({"noetl_server": noetl_ratios(noetl)} if "summary" in noetl else {})}}
    report["targets"] = targets(report)
    return report


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
