"""Compact per-execution state, persisted after every event (msgpack) and equal to a replay."""

from __future__ import annotations

from typing import Any

import msgspec


class Pending(msgspec.Struct, kw_only=True):
    """A command in flight; removed when it finishes, which makes a second finishing event a no-op."""

    step: str
    iteration: int | None = None
    item: Any = None
    attempt: int = 1
    max_attempts: int = 1
    claim: bool = False       # a cursor loop's claim command, not an iteration


class LoopState(msgspec.Struct, kw_only=True):
    items: list[Any]
    next_index: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    results: dict[int, Any] = {}
    frames: int = 0           # cursor mode: frames claimed so far (items grow with each)


class State(msgspec.Struct, kw_only=True):
    execution_id: int
    catalog_id: int
    workload: dict[str, Any]
    vars: dict[str, Any] = {}                 # persisted `set:` values (flat: ctx.x -> x)
    results: dict[str, Any] = {}              # step name -> final result
    step_status: dict[str, str] = {}          # running | done | failed | skipped
    tokens: dict[str, dict[str, bool]] = {}   # fan-in step -> upstream -> live?
    pending: dict[int, Pending] = {}
    loops: dict[str, LoopState] = {}
    failures: list[str] = []
    status: str = "RUNNING"
    end_result: Any = None
    last_step: str | None = None
