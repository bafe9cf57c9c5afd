"""`make bench-large`: NoETL's heavy-payload batch playbooks at their real 256 KB per item through a
fleet of its own (1 shard, durable Postgres), the shard's memory sampled throughout; writes
bench/results/large_payload.json.

Reported: each playbook's wall time and outcome; the shard's RSS (max and the series, sampled every
SAMPLE_SECONDS; the bound is 512 MB); per step run (a command) and per large result (one the shard
moved to the result store): write transactions, counted exactly as the transaction ids Postgres
assigned over the run (as tests/integration/fleet/test_hot_path_cost.py counts them), and all
committed transactions (pg_stat_database, read-only ones included), i.e. database round trips
that commit; and the largest rows the run left (commands, loop results, step results), which
stay small when large results are kept by reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.soak import status_kb
from noetl_devstack.infra import shard_db
from noetl_devstack.postgres import with_database
from tests.conformance.__main__ import credential_for, local_fleet
from tests.conformance.runner import Runner, load_index, needs_of

TIER2 = Path(__file__).resolve().parents[1] / "tests" / "conformance" / "tier2"
FIXTURES = ("batch_heavy_payload_pipeline_in_step", "batch_heavy_payload_pipeline_in_step_parallel")
RSS_BOUND_MB = 512
SAMPLE_SECONDS = 0.25
OUT = Path(__file__).resolve().parent / "results" / "large_payload.json"


async def next_xid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))


async def commits(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT sum(xact_commit)::bigint FROM pg_stat_database"))


async def shard_counts(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM noetl.command) AS commands, "
            "(SELECT count(*) FROM noetl.result_store) AS stored_results, "
            "(SELECT coalesce(sum(bytes), 0)::bigint FROM noetl.result_store) AS stored_bytes, "
            "(SELECT coalesce(max(pg_column_size(context)), 0) FROM noetl.command) AS largest_command_bytes, "
            "(SELECT coalesce(max(pg_column_size(result)), 0) FROM noetl.loop_result) AS largest_loop_result_bytes, "
            "(SELECT coalesce(max(pg_column_size(result)), 0) FROM noetl.step_result) AS largest_step_result_bytes")
        return dict(row)
    finally:
        await conn.close()


async def sample_rss(pid: int, series: list[tuple[float, float]], stop: asyncio.Event, t0: float) -> None:
    while not stop.is_set():
        kb = status_kb(pid)
        if kb is not None:
            series.append((round(time.monotonic() - t0, 2), round(kb / 1024, 1)))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except TimeoutError:
            pass


async def run(timeout: float) -> dict[str, Any]:
    index = load_index(TIER2)
    only = set(FIXTURES)
    script_root = (TIER2 / index.get("script_root", ".")).resolve()
    async with local_fleet(script_root, 1, 2, needs=needs_of(index, only), index=index) as fleet:
        shard_pid = fleet.supervisor.running["api-shard-0"][0].pid
        shard_dsn = with_database(fleet.cluster_dsn, shard_db(0))
        admin = await asyncpg.connect(fleet.cluster_dsn)
        try:
            xid0, commits0 = await next_xid(admin), await commits(admin)
            t0 = time.monotonic()
            series: list[tuple[float, float]] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(shard_pid, series, stop, t0))
            runner = Runner(fleet.router, TIER2, scratch_dsn=fleet.scratch_dsn,
                            pg_credential=credential_for(fleet.scratch_dsn), available=fleet.available,
                            test_api_url=fleet.test_api, timeout=timeout)
            outcomes = await runner.run(only)
            stop.set()
            await sampler
            seconds = time.monotonic() - t0
            xids, committed = await next_xid(admin) - xid0, await commits(admin) - commits0
        finally:
            await admin.close()
        counts = await shard_counts(shard_dsn)
    commands, stored = counts["commands"] or 1, counts["stored_results"] or 1
    peak = max((mb for _, mb in series), default=None)
    return {
        "fixtures": [{"id": o.fixture, "passed": o.passed, "detail": o.detail, "seconds": round(o.seconds, 1)}
                     for o in outcomes],
        "payload_kb_per_item": 256,
        "seconds": round(seconds, 1),
        "shard_rss_mb": {"max": peak, "bound": RSS_BOUND_MB, "within_bound": peak is not None and peak < RSS_BOUND_MB,
                         "samples": len(series), "series": series},
        "shard": counts,
        "write_transactions": xids,
        "committed_transactions": committed,
        "write_transactions_per_command": round(xids / commands, 2),
        "committed_transactions_per_command": round(committed / commands, 2),
        "write_transactions_per_large_result": round(xids / stored, 2),
        "note": "transactions are counted server-wide over the run (every process of the fleet, publisher and "
                "projector included); a command is one step run (loop iterations, children's steps included)",
    }


def compact_pairs(text: str) -> str:
    """The RSS series' [seconds, MB] pairs one per line (indent=1 spreads each over four)."""
    return re.sub(r"\[\n\s+([\d.]+),\n\s+([\d.]+)\n\s+\]", r"[\1, \2]", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_payload_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=600.0, help="per playbook, seconds")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.timeout))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(compact_pairs(json.dumps(report, indent=1)) + "\n")
    rss = report["shard_rss_mb"]
    for f in report["fixtures"]:
        print(f"{'PASS' if f['passed'] else 'FAIL'} {f['id']}: {f['detail']} ({f['seconds']} s)")
    print(f"shard RSS max {rss['max']} MB (bound {rss['bound']} MB, {rss['samples']} samples); "
          f"{report['write_transactions_per_command']} write / {report['committed_transactions_per_command']} "
          f"committed transactions per command, {report['write_transactions_per_large_result']} write transactions "
          f"per large result; largest command {report['shard']['largest_command_bytes']} B, loop result "
          f"{report['shard']['largest_loop_result_bytes']} B -> {OUT}")
    ok = all(f["passed"] for f in report["fixtures"]) and rss["within_bound"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
