"""History migration bench (issue 26): how long does migration 0007 lock a shard that has history,
with and without the online pre-step (`noetl_ops history prepare`)?

One shard database at schema 0006 is filled with `--events` events (history_bench's bulk SQL:
finished executions over `--days` past days, their events and commands), vacuumed and
checkpointed, and copied (CREATE DATABASE ... TEMPLATE). The copy is migrated as it is: 0007-0009
run in one transaction at the shard's start, holding every per-execution table from the first
rename to the commit, so that run's time is the shard's downtime. On the original the pre-step
runs while `--writers` connections write as a serving 0006 shard would (their p50/p99 before and
during, and any error), then the same migrations. bench/results/history_migration.json.

    python -m bench.history_migration [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from noetl_common.db import apply_migrations, create_pool, history_prepare, load_migrations
from noetl_common.ids import compose
from noetl_devstack.infra import Infra
from noetl_devstack.postgres import ensure_databases, with_database

from .history_bench import fill
from .hotpath_bench import machine_info

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "history_migration.json"
PREPARED, UNPREPARED = "noetl_shard_prepared", "noetl_shard_unprepared"


def say(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.history_migration", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to fill the shard with (default %(default)s)")
    p.add_argument("--events-per-execution", type=int, default=20)
    p.add_argument("--days", type=int, default=5, help="past days the history is spread over")
    p.add_argument("--writers", type=int, default=4, help="connections writing while the pre-step runs")
    p.add_argument("--split", action="store_true",
                   help="apply 0007, 0008 and 0009 in a transaction each (where the time goes), not in one as a start does")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


class Writers:
    """A serving 0006 shard's step writes (an execution, its events, a command issued and
    finished, results) on `count` connections, each transaction timed; the ids written in `ids`.
    `start()`/`mark()`/`finish()` (before and during), or `async with` (the migration test)."""

    def __init__(self, pool: asyncpg.Pool, count: int = 4, path: str = "bench/live") -> None:
        self.pool, self.count, self.path = pool, count, path
        self.stop = asyncio.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.ids: list[int] = []
        self.split = 0
        self._seq = itertools.count()

    async def _one(self, node: int) -> None:
        while not self.stop.is_set():
            # ids 8 apart within a millisecond: the events, command and result ids below stay unique
            eid = compose(int(time.time() * 1000), node, (next(self._seq) * 8) & 4095)
            started = time.perf_counter()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute("INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status) "
                                       "VALUES ($1, 1, $2, 1, 'RUNNING')", eid, self.path)
                    await conn.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) "
                                       "SELECT $1::bigint, $1::bigint + k, 'step.enter' FROM generate_series(1, 3) AS k", eid)
                    await conn.execute("INSERT INTO noetl.command (command_id, execution_id, step, tool_kind) "
                                       "VALUES ($1::bigint + 4, $1, 'start', 'python')", eid)
                    await conn.execute("UPDATE noetl.command SET status = 'COMPLETED' WHERE command_id = $1::bigint + 4", eid)
                    await conn.execute("INSERT INTO noetl.result_store (result_id, execution_id, name, bytes, sha256) "
                                       "VALUES ($1::bigint + 5, $1, 'start', 1, 'x')", eid)
                    await conn.execute("INSERT INTO noetl.step_result (execution_id, step) VALUES ($1, 'start')", eid)
                    await conn.execute("UPDATE noetl.execution SET status = 'COMPLETED' WHERE execution_id = $1", eid)
                self.ids.append(eid)
            except Exception as exc:  # any failure is a finding
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.perf_counter() - started)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._one(n + 1)) for n in range(self.count)]

    def mark(self) -> None:
        self.split = len(self.latencies)

    async def finish(self) -> dict:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        return {"before": _pcts(self.latencies[:self.split]), "during": _pcts(self.latencies[self.split:]),
                "errors": self.errors[:20], "error_count": len(self.errors)}

    async def __aenter__(self) -> "Writers":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.finish()

    def p99_ms(self) -> float:
        return _pcts(self.latencies).get("p99_ms", 0.0)


def _pcts(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"transactions": 0}
    at = lambda q: round(ordered[int(q * (len(ordered) - 1))] * 1000, 2)  # noqa: E731
    return {"transactions": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def migrate(dsn: str, split: bool) -> dict:
    """0007-0009 as the shard's start runs them (one transaction), or (`split`) each in a
    transaction of its own to see where the time goes; seconds."""
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        out = {}
        pending = [m for m in load_migrations("shard") if m.version >= 7]
        for batch in ([[m] for m in pending] if split else [pending]):
            started = time.perf_counter()
            await apply_migrations(conn, "shard", [m for m in load_migrations("shard") if m.version < 7] + batch)
            out["-".join(m.label[:4] for m in batch)] = round(time.perf_counter() - started, 3)
        return {"migration_seconds": round(sum(out.values()), 3), "by_migration": out}
    finally:
        await conn.close()


async def bench(args: argparse.Namespace, work: Path) -> dict:
    infra = Infra(work)
    try:
        info = await infra.up(1)
        await ensure_databases(info.admin_dsn, [PREPARED])
        prepared = with_database(info.admin_dsn, PREPARED)
        pool = await create_pool(prepared, min_size=1, max_size=2)
        try:
            await apply_migrations(pool, "shard", [m for m in load_migrations("shard") if m.version < 7])
        finally:
            await pool.close()
        say(f"filling {args.events} events at schema 0006 ...")
        filled = await fill(prepared, args)
        admin = await asyncpg.connect(info.admin_dsn)
        try:
            t0 = time.perf_counter()
            await admin.execute(f'CREATE DATABASE "{UNPREPARED}" TEMPLATE "{PREPARED}"')
            say(f"copied in {time.perf_counter() - t0:.1f} s")
        finally:
            await admin.close()

        say("migrating the unprepared copy (0007-0009) ...")
        unprepared = await migrate(with_database(info.admin_dsn, UNPREPARED), args.split)
        say(f"  {unprepared}")

        say(f"preparing the original online, {args.writers} writers ...")
        pool = await create_pool(prepared, min_size=args.writers, max_size=args.writers)
        try:
            writers = Writers(pool, args.writers)
            writers.start()
            await asyncio.sleep(5)
            writers.mark()
            report = await history_prepare.prepare(prepared, say=lambda line: say(f"  {line}"))
            load = await writers.finish()
        finally:
            await pool.close()
        say("migrating the prepared original (0007-0009) ...")
        prepared_run = await migrate(prepared, args.split)
        say(f"  {prepared_run}")
        return {"benchmark": "history migration: 0007-0009's run (the shard's downtime) with and without the "
                             "online pre-step, on a 0006 shard holding --events events",
                "machine": machine_info(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "fill": filled,
                "unprepared": unprepared,
                "prepared": {**prepared_run, "prepare_seconds": round(report.seconds, 2),
                             "indexes": [{"index": i.index, "seconds": i.seconds} for i in report.indexes],
                             "checks": [{"table": c.table, "lock_ms": c.lock_ms, "lock_waits": c.lock_waits,
                                         "seconds": c.seconds} for c in report.checks],
                             "writers": load}}
    finally:
        infra.down()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="noetl-history-migration-") as work:
        report = asyncio.run(bench(args, Path(work)))
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    p, w = report["prepared"], report["prepared"]["writers"]
    say(f"migration: {report['unprepared']['migration_seconds']} s unprepared, {p['migration_seconds']} s prepared "
        f"(prepare {p['prepare_seconds']} s online); writers p99 {w['before'].get('p99_ms')} ms before, "
        f"{w['during'].get('p99_ms')} ms during, {w['error_count']} errors")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
