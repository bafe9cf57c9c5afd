"""DBOS Transact peer for the hot-path bench; runs in its bench-only virtualenv (bench/.peers/dbos).

Uses the workflows and measuring functions of ../shared/peers/dbos_bench.py (imported, not copied)
against a system database on the Postgres server the fleet uses.

Two ways to run it:
  --all               warm up, run the default program, print one JSON document (standalone use);
  (default) commands  one per stdin line, so the fleet bench can interleave the peer with the fleet
                      and meter each workload from outside:
                        fanout <total> <batch>   ->  RESULT {...}  (rounds of <batch>)
                        loop <n>                 ->  RESULT {...}
                        quit
                      The runner launches DBOS, warms up and prints READY before reading commands.

Nothing from the fleet is imported: this file sees only the peer virtualenv."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers"
DEFAULT_PROGRAM = ["fanout 600 50", "loop 100", "loop 1000", "loop 5000"]


def launch(peers_dir: Path, sys_url: str):
    sys.path.insert(0, str(peers_dir))
    import dbos_bench  # noqa: E402  (registers its workflows with DBOS at import)
    from dbos import DBOS

    DBOS(config={"name": "dbos-hotpath-bench", "system_database_url": sys_url, "log_level": "WARNING"})
    DBOS.launch()
    return dbos_bench, DBOS


def warm_up(bench, sys_url: str) -> float:
    # Connections, code paths, catalog caches: what dbos_bench.py's own main does before measuring.
    t = time.perf_counter()
    bench.run_fanout("serial", 100, 50, sys_url, tag="warm")
    bench.run_loop(200, sys_url, chunk=100)
    return time.perf_counter() - t


def fanout_view(raw: dict, in_flight: int) -> dict:
    """dbos_bench's fan-out result in the bench's key names (its db_* latencies are server side)."""
    # dbos_bench's "serial" mode starts a round of `in_flight`, waits for all of them, repeats;
    # the fleet's lanes start a new execution as soon as one finishes.
    return {"executions": raw["workflows"], "in_flight": in_flight, "wall_s": round(raw["elapsed_s"], 3),
            "wf_per_s": round(raw["wf_per_s"], 2), "steps_per_s": round(raw["steps_per_s"], 2),
            "server_p50_ms": round(raw["db_p50_ms"], 2), "server_p99_ms": round(raw["db_p99_ms"], 2),
            "client_p50_ms": round(raw["client_p50_ms"], 2), "client_p99_ms": round(raw["client_p99_ms"], 2),
            "write_xacts_per_wf_own_count": round(raw["write_xacts_per_wf"], 3), "start_pattern": "rounds"}


def loop_view(raw: dict, n: int) -> dict:
    return {"n": n, "wall_s": round(raw["elapsed_s"], 3), "steps_per_s": round(raw["steps_per_s"], 2),
            "write_xacts_per_step_own_count": round(raw["write_xacts_per_step"], 3), "truncated": False,
            "chunk_steps_per_s": [round(r, 1) for r in raw["chunk_steps_per_s"]]}


def run_command(bench, sys_url: str, line: str) -> dict:
    words = line.split()
    if words[0] == "fanout":
        total, batch = int(words[1]), int(words[2])
        return fanout_view(bench.run_fanout("serial", total, batch, sys_url, tag="hot"), batch)
    if words[0] == "loop":
        n = int(words[1])
        return loop_view(bench.run_loop(n, sys_url, chunk=min(1000, max(1, n // 10))), n)
    raise ValueError(f"unknown command {line!r}")


def serve(bench, sys_url: str) -> None:
    print("READY " + json.dumps({"warm_up_s": round(warm_up(bench, sys_url), 2)}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line == "quit":
            return
        try:
            print("RESULT " + json.dumps(run_command(bench, sys_url, line)), flush=True)
        except Exception as exc:  # the parent reports it; the runner stays usable
            print("ERROR " + json.dumps({"command": line, "error": repr(exc)}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sys-url", required=True, help="DSN of the DBOS system database (must exist)")
    ap.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS)
    ap.add_argument("--all", action="store_true", help="run the default program and print JSON")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    bench, dbos = launch(args.peers_dir, args.sys_url)
    try:
        if args.all:
            doc = {"warm_up_s": warm_up(bench, args.sys_url),
                   "results": {cmd: run_command(bench, args.sys_url, cmd) for cmd in DEFAULT_PROGRAM}}
            text = json.dumps(doc, indent=2)
            print(text)
            if args.json_out:
                args.json_out.write_text(text + "\n")
        else:
            serve(bench, args.sys_url)
    finally:
        dbos.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
