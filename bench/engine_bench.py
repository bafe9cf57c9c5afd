"""Engine cost per event vs loop size: sequential and parallel loops of 10 / 100 / 1,000 / 10,000
iterations, measured two ways. Writes bench/results/engine.json.

- `engine`: start/apply alone, State and ExecutionData kept in memory.
- `shard_cycle`: what the shard pays per event around the engine: decode the State (msgpack),
  apply, encode the State, encode the journaled data rows. ExecutionData stays cached in memory,
  as on the shard. `state_bytes_max` is the largest encoded State seen.

Per-event cost must stay flat as the loop grows. A parallel loop without `max_in_flight` keeps
every iteration in flight, so its State carries one `pending` entry per iteration: that cost is
the in-flight count, which `max_in_flight` bounds (see `parallel_capped`).
"""

from __future__ import annotations

import itertools
import json
import platform
import time
from pathlib import Path

import msgspec

from noetl_common.dsl import parse_playbook
from noetl_common.engine import EngineEvent, ExecutionData, Finish, IssueCommand, State, apply, start

SIZES = (10, 100, 1_000, 10_000)
MODES = {"sequential": {"mode": "sequential"}, "parallel": {"mode": "parallel"},
         "parallel_capped": {"mode": "parallel", "max_in_flight": 100}}
RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"


def loop_playbook(spec: dict, n: int):
    return parse_playbook({"metadata": {"name": "bench", "path": "bench/loop"}, "workload": {"n": n},
                           "workflow": [{"step": "start", "tool": {"kind": "noop"},
                                         "loop": {"in": "{{ n }}", "iterator": "i", "spec": spec},
                                         "next": "end"},
                                        {"step": "end", "tool": {"kind": "noop"}}]})


def run(mode: str, n: int, cycle: bool) -> dict:
    pb = loop_playbook(MODES[mode], n)
    ids = itertools.count(1)
    mint = lambda: next(ids)  # noqa: E731
    encode, decode = msgspec.msgpack.encode, msgspec.msgpack.Decoder(State).decode
    data = ExecutionData()
    state, decisions = start(pb, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=mint, data=data)
    raw, state_max = encode(state), 0
    data.take_journal()
    queue = [d for d in decisions if isinstance(d, IssueCommand)]
    events, total_s, first_s, last_s = 0, 0.0, 0.0, 0.0
    window = max(n // 10, 1)
    finished = False
    while queue and not finished:
        cmd = queue.pop()
        event = EngineEvent(kind="command_done", command_id=cmd.command_id, result={"i": cmd.iteration})
        t = time.perf_counter()
        if cycle:
            state = decode(raw)
        state, decisions = apply(pb, state, event, now_ms=events, mint=mint, data=data)
        if cycle:
            raw = encode(state)
            encode(data.take_journal())
        else:
            data.take_journal()
        dt = time.perf_counter() - t
        state_max = max(state_max, len(raw)) if cycle else 0
        total_s += dt
        events += 1
        if events <= window:
            first_s += dt
        elif events > events_expected(n) - window:
            last_s += dt
        for d in decisions:
            if isinstance(d, IssueCommand):
                queue.append(d)
            elif isinstance(d, Finish):
                finished = d.status == "COMPLETED"
    assert finished, "loop did not complete"
    row = {"mode": mode, "measure": "shard_cycle" if cycle else "engine", "iterations": n, "events": events,
           "seconds": round(total_s, 4), "events_per_second": round(events / total_s),
           "us_per_event": round(total_s / events * 1e6, 1),
           "us_per_event_first_10pct": round(first_s / window * 1e6, 1),
           "us_per_event_last_10pct": round(last_s / window * 1e6, 1)}
    if cycle:
        row["state_bytes_max"] = state_max
    return row


def events_expected(n: int) -> int:
    return n + 1  # every iteration, then `end`


def best_of(repeats: int, mode: str, n: int, cycle: bool) -> dict:
    """Least total time of a few runs: the machine is shared, and noise only ever adds time."""
    return min((run(mode, n, cycle) for _ in range(repeats)), key=lambda r: r["seconds"])


def main() -> None:
    rows = [best_of(5 if n <= 1_000 else 2, mode, n, cycle)
            for cycle in (False, True) for mode in MODES for n in SIZES]
    report = {"benchmark": "engine cost per event vs loop size", "python": platform.python_version(),
              "machine": platform.machine(), "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        extra = f", state <= {r['state_bytes_max']} B" if "state_bytes_max" in r else ""
        print(f"{r['measure']:>11} {r['mode']:>15} {r['iterations']:>6} iterations: {r['events_per_second']:>7} "
              f"events/s, {r['us_per_event']:>7} us/event (first 10%: {r['us_per_event_first_10pct']}, "
              f"last 10%: {r['us_per_event_last_10pct']}){extra}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
