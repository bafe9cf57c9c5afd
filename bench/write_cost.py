"""What the shard writes per step: transactions, statements, rows and index entries.

Counts, not timings: on a durable Postgres every write transaction is a WAL flush, so these are
what a step costs whatever the machine is doing. The step's own writes are deterministic; what
batches by time is not quite (group commit across executions, the outbox relay's claims, the
projector's folds, the fleet's polling), so those vary a little between runs.

A fleet as `make run` starts it (1 shard, router, publisher, projector, 1 worker) on its own
durable Postgres with pg_stat_statements loaded; each workload runs from a quiet fleet with the
statistics reset, and its counts are read once they have settled (a backend's table counts reach
pg_stat up to 10 s after its last transaction):
  three_step_alone   3-step playbook, one execution at a time
  three_step_50      3-step playbook, 50 in flight
  loop               one execution looping sequentially over n python steps
  ingest_single      heartbeat events POSTed one per request to /api/events, 32 clients
  ingest_batch       heartbeat events POSTed to /api/events/batch, 50 per request, 8 clients
Per workload: commits and write transactions (xids) over the fleet's databases; statements by
query and by kind (pg_stat_statements: `step_write` is a step's one-statement write, then the
locking transactions, the outbox relay, the projection fold, and the rest, polling included);
rows inserted/updated per table; index entries (inserts and non-HOT updates times the table's
indexes; a partial index is counted as if it held every row, so an upper bound).

    python -m bench.write_cost [--out bench/results/write_cost.json] [--label after]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import shutil
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import asyncpg

from noetl_devstack import secrets
from noetl_devstack.fleet import DEV_WORKER_SLOTS, FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import CLUSTER_DB, Infra, InfraInfo, shard_db
from noetl_devstack.postgres import EmbeddedPostgres, with_database
from noetl_devstack.processes import Supervisor

from . import hotpath_workloads as wl
from .hotpath_bench import fleet_roots
from .hotpath_probes import CpuProbe, wait_quiet

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "write_cost.json"
SETTLE_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin
BATCH = 50

_TABLES = """
SELECT coalesce(p.relname, c.relname) AS tbl, sum(s.n_tup_ins)::bigint AS ins, sum(s.n_tup_upd)::bigint AS upd,
       sum(s.n_tup_hot_upd)::bigint AS hot, sum(s.n_tup_del)::bigint AS del,
       max((SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid))::int AS indexes
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
LEFT JOIN pg_inherits h ON h.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = h.inhparent
GROUP BY 1
"""
_STATEMENTS = """
SELECT d.datname AS db, s.query, sum(s.calls)::bigint AS calls, sum(s.rows)::bigint AS rows
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = any($1::text[]) GROUP BY 1, 2
"""
_XACTS = """
SELECT coalesce(sum(xact_commit), 0)::bigint AS commits,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid
FROM pg_stat_database WHERE datname = any($1::text[])
"""


async def enable_statements(infra: Infra, info: InfraInfo) -> InfraInfo:
    """pg_stat_statements must be preloaded: set it and restart the (not yet used) server."""
    conn = await asyncpg.connect(info.admin_dsn)
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    await asyncio.to_thread(EmbeddedPostgres(Path(info.data_dir) / "pg", mode=info.pg_mode).stop)
    info = await infra.up(1)
    conn = await asyncpg.connect(info.admin_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    return info


class Counter:
    """Reset before a workload, read after it: per-table rows over the shard's database, statements
    and commits over the fleet's databases (cluster + shard)."""

    def __init__(self, info: InfraInfo) -> None:
        self.admin_dsn, self.shard_dsn = info.admin_dsn, with_database(info.admin_dsn, shard_db(0))
        self.dbs = [CLUSTER_DB, shard_db(0)]

    async def reset(self) -> tuple[int, int]:
        admin, shard = await asyncpg.connect(self.admin_dsn), await asyncpg.connect(self.shard_dsn)
        try:
            await admin.execute("SELECT pg_stat_statements_reset()")
            await shard.execute("SELECT pg_stat_reset()")
            row = await admin.fetchrow(_XACTS, self.dbs)
        finally:
            await admin.close()
            await shard.close()
        return row["commits"], row["next_xid"]

    async def read(self, before: tuple[int, int]) -> dict:
        admin, shard = await asyncpg.connect(self.admin_dsn), await asyncpg.connect(self.shard_dsn)
        try:
            # Outside a transaction, so every pg_stat read is fresh.
            xacts = await admin.fetchrow(_XACTS, self.dbs)
            statements = await admin.fetch(_STATEMENTS, self.dbs)
            tables = await shard.fetch(_TABLES)
        finally:
            await admin.close()
            await shard.close()
        rows = {r["tbl"]: {"inserted": r["ins"], "updated": r["upd"], "hot_updated": r["hot"], "deleted": r["del"],
                           "indexes": r["indexes"]}
                for r in tables if r["ins"] or r["upd"] or r["del"]}
        # The counting's own statements (reset, these reads) are not the fleet's.
        fleet_statements = [s for s in statements if "pg_stat" not in s["query"]]
        by_kind: dict[str, int] = {}
        for s in fleet_statements:
            kind = kind_of(" ".join(s["query"].split()))
            by_kind[kind] = by_kind.get(kind, 0) + s["calls"]
        return {"commits": xacts["commits"] - before[0], "write_xacts": xacts["next_xid"] - before[1],
                "statements": sum(s["calls"] for s in fleet_statements), "statements_by_kind": by_kind,
                "statements_by_query": sorted(({"db": s["db"], "calls": s["calls"], "rows": s["rows"],
                                                "query": " ".join(s["query"].split())[:160]}
                                               for s in fleet_statements), key=lambda s: -s["calls"])[:25],
                "tables": rows,
                "rows_written": sum(t["inserted"] + t["updated"] + t["deleted"] for t in rows.values()),
                "index_entries": sum((t["inserted"] + t["updated"] - t["hot_updated"]) * t["indexes"]
                                     for t in rows.values())}


# What a statement is for, by how it starts (pg_stat_statements normalises the text).
KINDS = (("step_write", ("WITH new_exec", "WITH upd_exec", "WITH ins_event", "WITH new_cmd", "WITH upd_cmd",
                         "WITH cancel_cmd", "WITH ins_outbox", "WITH ins_result", "WITH ins_items",
                         "WITH ins_loop_result")),
         ("locking_txn", ("BEGIN", "COMMIT", "ROLLBACK")),
         ("outbox_relay", ("WITH done AS ( DELETE FROM noetl.outbox",)),
         ("projection_fold", ("WITH ev AS",)))


def kind_of(query: str) -> str:
    return next((kind for kind, starts in KINDS if query.startswith(starts)), "other")


def per_unit(counts: dict, units: int) -> dict:
    keys = ("commits", "write_xacts", "statements", "rows_written", "index_entries")
    out = {k: round(counts[k] / units, 2) for k in keys}
    out["statements_by_kind"] = {k: round(v / units, 2) for k, v in sorted(counts["statements_by_kind"].items())}
    out["rows_by_table"] = {t: round((v["inserted"] + v["updated"]) / units, 2) for t, v in counts["tables"].items()}
    return out


async def measured(counter: Counter, cpu: CpuProbe, units: int,
                   work: Callable[[], Awaitable[dict]]) -> dict:
    await wait_quiet(cpu)
    await asyncio.sleep(SETTLE_S)  # the previous workload's counts land before the reset
    before = await counter.reset()
    cpu_before = cpu.snapshot()
    result = await work()
    await wait_quiet(cpu)
    cpu_ms = CpuProbe.delta_ms(cpu_before, cpu.snapshot())
    await asyncio.sleep(SETTLE_S)
    counts = await counter.read(before)
    return {"result": result, "units": units, "per_unit": per_unit(counts, units), "total": counts,
            "cpu_ms_per_unit_indicative": {k: round(v / units, 3) for k, v in cpu_ms.items()}}


async def batch_ingest(session: aiohttp.ClientSession, url: str, targets: list[str], total: int,
                       clients: int) -> dict:
    counter = iter(range(0, total, BATCH))

    async def client() -> None:
        for first in counter:
            # A batch is one execution's events.
            body = {"execution_id": targets[(first // BATCH) % len(targets)],
                    "events": [{"event_type": "worker.heartbeat", "step": "bench", "payload": {"n": n}}
                               for n in range(first, min(total, first + BATCH))]}
            async with session.post(f"{url}/api/events/batch", json=body) as r:
                raw = await r.read()
                if r.status not in (200, 202):
                    raise wl.BenchError(f"POST /api/events/batch answered {r.status}: {raw[:300]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"events": total, "clients": clients, "batch": BATCH, "wall_s": round(time.perf_counter() - t0, 3)}


async def run(args: argparse.Namespace, work: Path) -> dict:
    infra, sup = Infra(work), Supervisor(work / "logs")
    try:
        info = await enable_statements(infra, await infra.up(1))
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(1),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=1, extra_env={"NOETL_LOG_LEVEL": "WARNING",
                                                              "WORKER_MAX_CONCURRENT": str(DEV_WORKER_SLOTS)}))
        await start_fleet(sup, specs)
        counter, cpu = Counter(info), CpuProbe(fleet_roots(sup, info))
        out: dict = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            url = router_url(specs)
            for playbook in wl.PLAYBOOKS:
                await wl.register(session, url, playbook)
            await wl.three_step_run(session, url, 20, 5)  # warm-up: caches, plans, partitions
            out["three_step_alone"] = await measured(counter, cpu, 3 * args.alone,
                                                     lambda: wl.three_step_run(session, url, args.alone, 1))
            print(f"three_step_alone {out['three_step_alone']['per_unit']}", flush=True)
            out["three_step_50"] = await measured(counter, cpu, 3 * args.total,
                                                  lambda: wl.three_step_run(session, url, args.total, 50))
            print(f"three_step_50 {out['three_step_50']['per_unit']}", flush=True)
            out["loop"] = await measured(counter, cpu, args.loop, lambda: wl.loop_run(session, url, args.loop, 600))
            print(f"loop {out['loop']['per_unit']}", flush=True)
            targets = await wl.start_sleepers(session, url, 16)
            try:
                out["ingest_batch"] = await measured(
                    counter, cpu, args.events, lambda: batch_ingest(session, url, targets, args.events, 8))
                out["ingest_single"] = await measured(
                    counter, cpu, args.events // 4, lambda: wl.ingest_run(session, url, targets, args.events // 4, 32))
            finally:
                await wl.cancel_all(session, url, targets)
            print(f"ingest_single {out['ingest_single']['per_unit']}", flush=True)
            print(f"ingest_batch {out['ingest_batch']['per_unit']}", flush=True)
        return out
    finally:
        sup.stop_all()
        infra.down()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.write_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--label", default="current", help="key the run is stored under in --out (e.g. before, after)")
    ap.add_argument("--alone", type=int, default=30, help="3-step executions run one at a time")
    ap.add_argument("--total", type=int, default=300, help="3-step executions run 50 in flight")
    ap.add_argument("--loop", type=int, default=300, help="steps of the sequential loop")
    ap.add_argument("--events", type=int, default=4000, help="events posted in batches")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="noetl-writecost-"))
    try:
        result = asyncio.run(run(args, work))
    except BaseException:
        print(f"bench failed; logs kept under {work}/logs", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("about", __doc__.split("\n\n")[0])
    report[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out} [{args.label}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
