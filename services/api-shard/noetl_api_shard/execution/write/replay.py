"""Fold an execution's event log back through the engine. The result must equal what the shard
stored incrementally — the compact state and the data rows (results, running loops) — and
GET /api/replay/state shows both checksums of each."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import asyncpg

from noetl_common.errors import not_found
from noetl_common.result_refs import ref_of
from noetl_common.wire.execution_views import ReplayReport
from noetl_common.vocabulary import EventType

from ...store import events as event_store
from ...store import executions as execution_store
from ...store import results as result_store
from . import step_results
from . import engine_port as engine
from .orchestration import Orchestrator
from .worker_events import FINISH_ERROR, FINISH_OK, reports_success, worker_pipelines

PAGE = 5000


def engine_event_of(row: Any, stored: Mapping[int, Any] | None = None) -> Any | None:
    """The engine input a logged event stands for, or None for events the engine never saw.
    `stored`: values of the result-store rows the log references, by result id."""
    kind, payload, command_id = row["event_type"], row["payload"] or {}, row["command_id"]
    if command_id is not None:
        if kind in FINISH_OK or kind in FINISH_ERROR:
            pipelined = worker_pipelines(payload)
            if reports_success(kind, row["status"], payload):
                return engine.command_done(command_id, step_results.value_of(payload, stored or {}),
                                           pipelined=pipelined)
            return engine.command_failed(command_id, row["error"] or f"{kind} without an error message",
                                         pipelined=pipelined)
        if kind.startswith("child."):
            return engine.child_done(command_id, str(payload.get("status") or ""), payload.get("result"), payload.get("error"),
                                     payload.get("steps"))
    if kind == EventType.EXECUTION_CANCEL_REQUESTED:
        return engine.cancel()
    return None


async def fold(pool: asyncpg.Pool, playbook: Any, execution: Any) -> tuple[Any, Any, int]:
    """(replayed state, replayed data, events read)."""
    rows = await event_store.engine_inputs(pool, execution["execution_id"], PAGE)
    refs = step_results.refs_in([r["payload"] or {} for r in rows if r["event_type"] in FINISH_OK])
    stored = await result_store.data_by_ids(pool, execution["execution_id"], [r.result_id for r in refs]) \
        if refs else {}
    state, data = fold_rows(playbook, execution, rows, stored)
    return state, data, len(rows)


def fold_rows(playbook: Any, execution: Mapping[str, Any], rows: list[Any],
              stored: Mapping[int, Any]) -> tuple[Any, Any]:
    """(replayed state, replayed data) from an execution's log in order and the result-store
    values it references: rows from the database or from an archive (noetl_common.history_archive)."""
    # Ids the engine minted, in minting order: every decision id is a command.issued event id.
    minted: Iterator[int] = iter(sorted(r["event_id"] for r in rows if r["event_type"] == EventType.COMMAND_ISSUED))

    def mint() -> int:
        return next(minted)

    execution_id = execution["execution_id"]
    data = engine.new_data()
    state, _ = engine.start(playbook, execution_id=execution_id, workload=execution["workload"],
                            catalog_id=execution["catalog_id"], now_ms=engine.engine_time(execution_id), mint=mint, data=data)
    for row in rows:
        event = engine_event_of(row, stored)
        if event is None:
            continue
        state, decisions = engine.apply(playbook, state, event, now_ms=engine.engine_time(row["event_id"]), mint=mint,
                                        data=data, resolve=lambda reference: _stored_value(reference, stored))
        if any(isinstance(d, engine.Finish) for d in decisions):
            break
    return state, data


def _stored_value(reference: Mapping[str, Any], stored: Mapping[int, Any]) -> Any:
    """A stub's value for a template in the replay: the log's stored values are all in hand."""
    ref = ref_of({"reference": dict(reference)})
    return stored.get(ref.result_id) if ref is not None else None


async def compare(pool: asyncpg.Pool, orch: Orchestrator, execution_id: int) -> ReplayReport:
    row = await execution_store.engine_row(pool, execution_id)
    if row is None:
        raise not_found(f"execution {execution_id} not found")
    playbook, _ = await orch.playbook(row["catalog_id"])
    replayed, replayed_data, count = await fold(pool, playbook, row)
    stored = engine.decode_state(row["state"])
    async with pool.acquire() as conn:
        loops = [(step, loop.run) for step, loop in stored.loops.items()]
        stored_data = engine.data_from_rows(await execution_store.load_data(conn, execution_id, loops), loops)
    sums = {"checksum": engine.checksum(replayed), "stored_checksum": engine.checksum(stored),
            "data_checksum": replayed_data.checksum(), "stored_data_checksum": stored_data.checksum()}
    last = await execution_store.get(pool, execution_id)
    assert last is not None, "the execution was read above"
    return ReplayReport(execution_id=str(execution_id), status=row["status"], event_count=count,
                        last_event_id=str(last["last_event_id"]) if last["last_event_id"] else None,
                        last_event_type=last["last_event_type"], **sums,
                        matches=sums["checksum"] == sums["stored_checksum"]
                        and sums["data_checksum"] == sums["stored_data_checksum"],
                        state=engine.state_view(replayed))
