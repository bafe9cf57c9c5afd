"""replay(log) folds the whole history; it must equal the incrementally built state."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable

import msgspec

from ..dsl.model import Playbook
from .core import apply, start
from .events import EngineEvent
from .state import State


def replay(playbook: Playbook, *, execution_id: int, workload: dict[str, Any], catalog_id: int,
           events: Iterable[tuple[int, EngineEvent]], start_ms: int, mint: Callable[[], int]) -> State:
    """`events` are (now_ms, event) in log order; `mint` yields the ids minted the first time."""
    state, _ = start(playbook, execution_id=execution_id, workload=workload, catalog_id=catalog_id,
                     now_ms=start_ms, mint=mint)
    for now_ms, event in events:
        state, _ = apply(playbook, state, event, now_ms=now_ms, mint=mint)
    return state


def checksum(state: State) -> str:
    canonical = json.dumps(msgspec.to_builtins(state), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
