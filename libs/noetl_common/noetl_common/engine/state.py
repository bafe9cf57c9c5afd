"""Compact per-execution state, persisted after every event (msgpack) and equal to a replay.

Only control data lives here, so its size does not grow with the number of loop iterations: step
results, loop collections and iteration results are in `ExecutionData` (data.py), which the caller
persists as rows of their own.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Pending(msgspec.Struct, kw_only=True):
    """A command in flight; removed when it finishes, which makes a second finishing event a no-op.
    A retried iteration re-reads its item from ExecutionData, so the item is not kept here."""

    step: str
    iteration: int | None = None
    attempt: int = 1
    max_attempts: int = 1
    claim: bool = False       # a cursor loop's claim command, not an iteration


class LoopState(msgspec.Struct, kw_only=True):
    """Counters of a running loop. Its items and results are ExecutionData's, under (step, run)."""

    run: int                  # this loop run's number (State.loop_runs when it started)
    total: int                # items so far (cursor mode: grows with each frame)
    next_index: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    frames: int = 0           # cursor mode: frames claimed so far
    cap: int = 0              # a templated max_in_flight as rendered at loop start; 0 = the step's own
    stage: int = 0            # frames runtime (Loop.frames): the run's stage id, its first claim's id


class State(msgspec.Struct, kw_only=True):
    execution_id: int
    catalog_id: int
    workload: dict[str, Any]
    vars: dict[str, Any] = {}                 # persisted `set:` values (flat: ctx.x -> x)
    step_status: dict[str, str] = {}          # running | done | failed | skipped
    tokens: dict[str, dict[str, bool]] = {}   # fan-in step -> upstream -> live?
    pending: dict[int, Pending] = {}
    loops: dict[str, LoopState] = {}
    # Loop runs started so far; numbers each run so a loop re-entered through a cycle gets fresh
    # data rows. A counter, not `mint`: every minted id must stay a command id.
    loop_runs: int = 0
    failures: list[str] = []
    status: str = "RUNNING"
    last_step: str | None = None
