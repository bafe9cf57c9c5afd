"""replay(log) folds the whole history; it must equal the incrementally built state and data."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable

import msgspec

from ..dsl.model import Playbook
from .core import apply, start
from .data import ExecutionData
from .events import EngineEvent
from .state import State


def replay(playbook: Playbook, *, execution_id: int, workload: dict[str, Any], catalog_id: int,
           events: Iterable[tuple[int, EngineEvent]], start_ms: int,
           mint: Callable[[], int]) -> tuple[State, ExecutionData]:
    """`events` are (now_ms, event) in log order; `mint` yields the ids minted the first time.
    The data comes back with an empty journal: nothing in it is new, and dropping each event's
    writes as they come keeps a long replay's memory to the data itself."""
    data = ExecutionData()
    state, _ = start(playbook, execution_id=execution_id, workload=workload, catalog_id=catalog_id,
                     now_ms=start_ms, mint=mint, data=data)
    data.take_journal()
    for now_ms, event in events:
        state, _ = apply(playbook, state, event, now_ms=now_ms, mint=mint, data=data)
        data.take_journal()
    return state, data


def checksum(state: State) -> str:
    canonical = json.dumps(msgspec.to_builtins(state), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
