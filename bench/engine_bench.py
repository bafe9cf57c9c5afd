"""Engine cost per event vs loop size: sequential and parallel loops of 100 / 1,000 / 10,000
iterations. Only time spent inside the engine (start/apply) is counted. Writes
bench/results/engine.json. Per-event cost must stay flat as history grows."""

from __future__ import annotations

import itertools
import json
import platform
import time
from pathlib import Path

from noetl_common.dsl import parse_playbook
from noetl_common.engine import EngineEvent, Finish, IssueCommand, apply, start

SIZES = (100, 1_000, 10_000)
RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"


def loop_playbook(mode: str, n: int):
    return parse_playbook({"metadata": {"name": "bench", "path": "bench/loop"}, "workload": {"n": n},
                           "workflow": [{"step": "start", "tool": {"kind": "noop"},
                                         "loop": {"in": "{{ n }}", "iterator": "i", "spec": {"mode": mode}},
                                         "next": "end"},
                                        {"step": "end", "tool": {"kind": "noop"}}]})


def run(mode: str, n: int) -> dict:
    pb = loop_playbook(mode, n)
    ids = itertools.count(1)
    mint = lambda: next(ids)  # noqa: E731
    engine_s = 0.0
    t = time.perf_counter()
    state, decisions = start(pb, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=mint)
    engine_s += time.perf_counter() - t
    queue = [d for d in decisions if isinstance(d, IssueCommand)]
    events = 0
    per_event_first = per_event_last = 0.0
    window = max(n // 10, 1)
    finished = False
    while queue and not finished:
        cmd = queue.pop()
        event = EngineEvent(kind="command_done", command_id=cmd.command_id, result={"i": cmd.iteration})
        t = time.perf_counter()
        state, decisions = apply(pb, state, event, now_ms=events, mint=mint)
        dt = time.perf_counter() - t
        engine_s += dt
        events += 1
        if events <= window:
            per_event_first += dt
        elif events > n - window:
            per_event_last += dt
        for d in decisions:
            if isinstance(d, IssueCommand):
                queue.append(d)
            elif isinstance(d, Finish):
                finished = d.status == "COMPLETED"
    assert finished, "loop did not complete"
    return {"mode": mode, "iterations": n, "events": events, "engine_seconds": round(engine_s, 4),
            "events_per_second": round(events / engine_s), "us_per_event_first_10pct": round(per_event_first / window * 1e6, 1),
            "us_per_event_last_10pct": round(per_event_last / window * 1e6, 1)}


def main() -> None:
    rows = [run(mode, n) for mode in ("sequential", "parallel") for n in SIZES]
    report = {"benchmark": "engine events/s vs loop size", "python": platform.python_version(),
              "machine": platform.machine(), "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['mode']:>10} {r['iterations']:>6} iterations: {r['events_per_second']:>7} events/s "
              f"(first 10%: {r['us_per_event_first_10pct']} us/event, last 10%: {r['us_per_event_last_10pct']} us/event)")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
