"""The one place the shard touches the engine library: parse, start, apply, (de)serialise state,
and rebuild an execution's data (results, loop items and results) from its rows.

Everything else in the shard speaks these names, so an engine API change is a change here.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import msgspec

from noetl_common import engine as _engine
from noetl_common.dsl import PlaybookError, parse_playbook  # noqa: F401
from noetl_common.engine import (EmitEvent, EngineEvent, ExecutionData, Finish, IssueCommand,  # noqa: F401
                                 Release, StartChild, State)
from noetl_common.ids import timestamp_ms

Decision = Any


def start(playbook: Any, *, execution_id: int, workload: dict, catalog_id: int, now_ms: int,
          mint: Callable[[], int], data: ExecutionData) -> tuple[State, list[Decision]]:
    return _engine.start(playbook, execution_id=execution_id, workload=workload, catalog_id=catalog_id,
                         now_ms=now_ms, mint=mint, data=data)


def apply(playbook: Any, state: State, event: EngineEvent, *, now_ms: int, mint: Callable[[], int],
          data: ExecutionData, resolve: Callable[[Any], Any] | None = None) -> tuple[State, list[Decision]]:
    return _engine.apply(playbook, state, event, now_ms=now_ms, mint=mint, data=data, resolve=resolve)


def new_data() -> ExecutionData:
    return ExecutionData()


def data_from_rows(rows: Iterable[Any], running_loops: Iterable[tuple[str, int]]) -> ExecutionData:
    """Rows of `store.executions.load_data`: kind r (step result), i (loop items), l (loop result).
    Every running loop (step, run) exists in the result, rows or not: a loop whose collection is
    still empty (a cursor loop before its first frame) wrote none."""
    results, items, loop_results = [], [], []
    for r in rows:
        kind = r["kind"]
        if kind == "r":
            results.append((r["step"], r["value"]))
        elif kind == "i":
            items.append((r["step"], r["run"], r["pos"], r["value"]))
        else:
            loop_results.append((r["step"], r["run"], r["pos"], r["value"]))
    present = {(step, run) for step, run, _, _ in items}
    items.extend((step, run, 0, []) for step, run in running_loops if (step, run) not in present)
    return ExecutionData.from_rows(results, items, loop_results)


def command_done(command_id: int, result: Any, *, pipelined: bool = False) -> EngineEvent:
    return EngineEvent(kind="command_done", command_id=command_id, result=result, pipelined=pipelined)


def command_failed(command_id: int, error: str, *, pipelined: bool = False) -> EngineEvent:
    return EngineEvent(kind="command_failed", command_id=command_id, error=error, pipelined=pipelined)


def child_done(command_id: int, status: str, result: Any, error: str | None,
               steps: dict[str, Any] | None = None) -> EngineEvent:
    return EngineEvent(kind="child_done", command_id=command_id,
                       result={"status": status, "result": result, "steps": steps or {}},
                       error=(error or f"sub-playbook ended {status}") if status != "COMPLETED" else None)


def cancel() -> EngineEvent:
    return EngineEvent(kind="cancel")


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(State)


def encode_state(state: State) -> bytes:
    return _state_encoder.encode(state)


def decode_state(raw: bytes) -> State:
    return _state_decoder.decode(raw)


def checksum(state: State) -> str:
    return _engine.checksum(state)


def state_view(state: State) -> Any:
    return msgspec.to_builtins(state)


def engine_time(cause_id: int) -> int:
    """The engine's clock is the timestamp inside the id of the event it reacts to, so a replay of
    the log reproduces the exact same state."""
    return timestamp_ms(cause_id)
