"""Event ingest: append a worker's event and, when it finishes a command, advance the engine —
all in one transaction under the execution's row lock. Re-sent events are no-ops that return the
original event id."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from noetl_common.errors import ApiError, not_found

from ..state import ShardServices
from ..store import commands as command_store
from ..store import events as event_store
from ..store import executions as execution_store
from ..store.events import NewEvent
from . import engine_port as engine
from .orchestration import FollowUp, Orchestrator
from .ownership import require_owned
from .worker_events import FINISH_ERROR, FINISH_OK, FINISHING, PROGRESS, WorkerEvent, status_for

class Ingested(msgspec.Struct):
    event_id: int
    commands_generated: int
    duplicate: bool


async def ingest(svc: ShardServices, orch: Orchestrator, conn: asyncpg.Connection, ev: WorkerEvent,
                 lease_seconds: float) -> Ingested:
    """Caller holds a transaction on `conn`."""
    require_owned(svc, ev.execution_id)
    execution = await execution_store.lock(conn, ev.execution_id)
    if execution is None:
        raise not_found(f"execution {ev.execution_id} not found")
    if ev.event_id is not None:
        # A producer-stamped id (the Rust worker's) is the row's id: a re-send finds the original.
        existing = await event_store.get(conn, ev.event_id)
        if existing is not None:
            return Ingested(existing["event_id"], 0, True)
    command = None
    if ev.command_id is not None:
        command = await command_store.get(conn, ev.command_id)
        if command is None or command["execution_id"] != ev.execution_id:
            raise ApiError(404, f"command {ev.command_id} is not a command of execution {ev.execution_id}",
                           "not_found")
        existing = await event_store.find_for_command(conn, ev.execution_id, ev.command_id, (ev.event_type,))
        if existing is not None and ev.event_type in FINISHING | {"command.started"}:
            return Ingested(existing["event_id"], 0, True)
    error = ev.error_text
    row = NewEvent(
        event_id=ev.event_id or svc.mint_owned_id(), execution_id=ev.execution_id, event_type=ev.event_type,
        node_name=ev.step or (command["step"] if command else None),
        node_type=command["tool_kind"] if command else None, status=status_for(ev.event_type, ev.status),
        catalog_id=execution["catalog_id"], command_id=ev.command_id, worker_id=ev.worker_id,
        attempt=command["attempt"] if command else None, iteration=command["iteration"] if command else None,
        payload=ev.payload, error=error,
        meta=ev.meta or None)
    await orch.append(conn, [row])
    generated = 0
    if command is not None:
        if ev.event_type in PROGRESS:
            await command_store.touch(conn, command["command_id"], lease_seconds,
                                      started=ev.event_type == "command.started")
        elif ev.event_type in FINISHING:
            ok = ev.event_type in FINISH_OK and not _reports_failure(ev)
            await command_store.finish(conn, command["command_id"], "COMPLETED" if ok else "FAILED",
                                       ev.result if ok else None, None if ok else (error or "command failed"))
            if execution["status"] not in execution_store.TERMINAL:
                event = engine.command_done(command["command_id"], _result_of(ev)) if ok else \
                    engine.command_failed(command["command_id"], error or f"{ev.event_type} without an error message")
                queue: list[FollowUp] = []
                outcome = await orch.advance(conn, queue, execution, event, row.event_id)
                await orch.drain(conn, queue)
                generated = outcome.commands
    await conn.execute("UPDATE noetl.execution SET last_event_id = $2, last_event_type = $3, "
                       "last_step = coalesce($4, last_step), updated_at = now() WHERE execution_id = $1 "
                       "AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
                       ev.execution_id, row.event_id, row.event_type, row.node_name)
    return Ingested(row.event_id, generated, False)


def _reports_failure(ev: WorkerEvent) -> bool:
    """`command.completed` whose status says the tool failed (the Rust worker's shape)."""
    status = (ev.status or ev.payload.get("status") or "").upper()
    return ev.event_type == "command.completed" and status in ("FAILED", "ERROR")


def _result_of(ev: WorkerEvent) -> Any:
    result = ev.payload.get("result")
    # A reference-only envelope {status, context} carries the value under context.
    return result


async def fail_command(svc: ShardServices, orch: Orchestrator, conn: asyncpg.Connection,
                       command: asyncpg.Record, reason: str) -> None:
    """A command the fleet gave up on (attempts exhausted): record it and let the engine decide."""
    await command_store.finish(conn, command["command_id"], "FAILED", None, reason)
    row = NewEvent(event_id=svc.mint_owned_id(), execution_id=command["execution_id"], event_type="command.failed",
                   node_name=command["step"], node_type=command["tool_kind"], status="FAILED",
                   catalog_id=command["catalog_id"], command_id=command["command_id"], attempt=command["attempt"],
                   iteration=command["iteration"], payload={"error": reason}, error=reason)
    await orch.append(conn, [row])
    execution = await execution_store.lock(conn, command["execution_id"])
    if execution is not None and execution["status"] not in execution_store.TERMINAL:
        queue: list[FollowUp] = []
        await orch.advance(conn, queue, execution, engine.command_failed(command["command_id"], reason), row.event_id)
        await orch.drain(conn, queue)
