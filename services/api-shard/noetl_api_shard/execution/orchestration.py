"""Write side of executions: every change is one shard transaction that appends events, updates
the execution/command rows and writes the outbox rows announcing them.

Per-execution serialisation: the execution row is locked FOR UPDATE before the engine runs, so
two events of one execution never decide concurrently, while other executions proceed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import msgspec

from noetl_common.errors import ApiError
from noetl_common.ids import timestamp_ms

from ..state import ShardServices
from ..store import catalog as catalog_store
from ..store import commands as command_store
from ..store import events as event_store
from ..store import executions as execution_store
from ..store import outbox as outbox_store
from ..store.commands import NewCommand
from ..store.events import NewEvent
from ..store.executions import NewExecution
from ..store.outbox import OutboxRow
from . import engine_port as engine

log = logging.getLogger("noetl.api_shard.orchestration")

DEFAULT_POOL = "default"
# How many workers may take one command over after the previous holder vanished (lease expired)
# before the step fails. Tool-level retries are separate: the engine issues a new command each.
TAKEOVER_ATTEMPTS = 3
CHILD_EVENT = {"COMPLETED": "child.completed", "FAILED": "child.failed", "CANCELLED": "child.cancelled"}
TERMINAL_EVENT = {"COMPLETED": "playbook.completed", "FAILED": "playbook.failed", "CANCELLED": "execution.cancelled"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def engine_time(cause_id: int) -> int:
    """The engine's clock is the timestamp inside the id of the event it reacts to, so a replay of
    the log reproduces the exact same state."""
    return timestamp_ms(cause_id)


class Outcome(msgspec.Struct):
    commands: int = 0
    finished: str | None = None


class FollowUp(msgspec.Struct):
    """An engine event for an execution, applied after the current apply's state is saved
    (never nested inside it, which would overwrite one of the two states)."""

    execution_id: int
    event: Any
    cause_event_id: int


class Orchestrator:
    """Holds the parsed-playbook cache (catalog rows are immutable, so caching by id is safe)."""

    def __init__(self, svc: ShardServices, public_url: str | None = None) -> None:
        self.svc = svc
        self.public_url = public_url
        self._playbooks: dict[int, tuple[Any, asyncpg.Record]] = {}

    async def playbook(self, catalog_id: int) -> tuple[Any, asyncpg.Record]:
        cached = self._playbooks.get(catalog_id)
        if cached is None:
            row = await catalog_store.get_by_id(self.svc.cluster_pool, catalog_id)
            if row is None:
                raise ApiError(404, f"Executable catalog entry not found: catalog_id={catalog_id}", "not_found")
            cached = (engine.parse_playbook(row["payload"] if row["payload"] is not None else row["content"]), row)
            self._playbooks[catalog_id] = cached
        return cached

    # --- events and outbox --------------------------------------------------------------------
    async def append(self, conn: asyncpg.Connection, events: list[NewEvent]) -> None:
        """Events plus their mirror on noetl.events.<shard>.<execution_id> (for the projector)."""
        await event_store.insert_many(conn, events)
        self.svc.metrics.events_ingested(len(events))
        shard = self.svc.settings.shard_index
        await outbox_store.enqueue(conn, [OutboxRow(
            id=self.svc.mint_owned_id(), execution_id=e.execution_id, event_id=e.event_id,
            subject=f"noetl.events.{shard}.{e.execution_id}",
            payload={"event_id": str(e.event_id), "execution_id": str(e.execution_id), "event_type": e.event_type,
                     "parent_execution_id": str(e.parent_execution_id or "") or None,
                     "node_name": e.node_name, "status": e.status, "command_id": str(e.command_id or "") or None,
                     "worker_id": e.worker_id, "attempt": e.attempt, "iteration": e.iteration, "error": e.error,
                     "catalog_id": str(e.catalog_id or "") or None, "event_time_ms": now_ms()})
            for e in events])

    # --- start --------------------------------------------------------------------------------
    async def start(self, conn: asyncpg.Connection, queue: list[FollowUp], *, catalog_id: int,
                    workload: dict[str, Any], parent_execution_id: int | None = None,
                    parent_command_id: int | None = None, requested_by: str | None = None) -> tuple[int, Outcome]:
        playbook, row = await self.playbook(catalog_id)
        declared = row["payload"].get("workload") if isinstance(row["payload"], dict) else None
        merged = {**(declared if isinstance(declared, dict) else {}), **workload}
        execution_id = self.svc.mint_owned_id()
        init_event_id = self.svc.mint_owned_id()  # before the engine mints, so the log starts with it
        state, decisions = engine.start(playbook, execution_id=execution_id, workload=merged,
                                        catalog_id=catalog_id, now_ms=engine_time(execution_id),
                                        mint=self.svc.mint_owned_id)
        await execution_store.insert(conn, NewExecution(
            execution_id=execution_id, catalog_id=catalog_id, path=row["path"], version=row["version"],
            workload=merged, state=engine.encode_state(state), parent_execution_id=parent_execution_id,
            parent_command_id=parent_command_id, requested_by=requested_by))
        init = NewEvent(event_id=init_event_id, execution_id=execution_id,
                        event_type="playbook.initialized", node_name=row["path"], node_type="playbook",
                        status="RUNNING", catalog_id=catalog_id, parent_execution_id=parent_execution_id,
                        payload={"context": {"workload": merged}})
        await self.append(conn, [init])
        await execution_store.save_state(conn, execution_id, state=engine.encode_state(state),
                                         state_event_id=init.event_id, last_event_id=init.event_id,
                                         last_event_type=init.event_type, last_step=None)
        outcome = await self.persist(conn, queue, execution_id, catalog_id, decisions, parent_event_id=init.event_id)
        return execution_id, outcome

    # --- advance ------------------------------------------------------------------------------
    async def advance(self, conn: asyncpg.Connection, queue: list[FollowUp], execution: asyncpg.Record,
                      event: Any, cause_event_id: int | None) -> Outcome:
        """Run the engine on one event for a locked, non-terminal execution and persist its decisions."""
        playbook, _ = await self.playbook(execution["catalog_id"])
        state = engine.decode_state(execution["state"])
        state, decisions = engine.apply(playbook, state, event, now_ms=engine_time(cause_event_id),
                                        mint=self.svc.mint_owned_id)
        await execution_store.save_state(conn, execution["execution_id"], state=engine.encode_state(state),
                                         state_event_id=cause_event_id, last_event_id=None,
                                         last_event_type=None, last_step=None)
        return await self.persist(conn, queue, execution["execution_id"], execution["catalog_id"], decisions,
                                  parent_event_id=cause_event_id)

    async def drain(self, conn: asyncpg.Connection, queue: list[FollowUp]) -> None:
        """Apply queued follow-ups (in order; each may queue more) within the caller's transaction."""
        while queue:
            item = queue.pop(0)
            execution = await execution_store.lock(conn, item.execution_id)
            if execution is not None and execution["status"] not in execution_store.TERMINAL:
                await self.advance(conn, queue, execution, item.event, item.cause_event_id)

    async def persist(self, conn: asyncpg.Connection, queue: list[FollowUp], execution_id: int, catalog_id: int,
                      decisions: list[Any], parent_event_id: int | None) -> Outcome:
        outcome = Outcome()
        events: list[NewEvent] = []
        notifications: list[OutboxRow] = []
        finish = None
        for d in decisions:
            if isinstance(d, engine.IssueCommand):
                outcome.commands += 1
                pool = getattr(d, "pool", None) or DEFAULT_POOL
                context = {"tool_config": d.tool_config, "input": d.input,
                           "tool": {"kind": d.tool_kind, **(d.tool_config or {})}, "pipeline": d.pipeline,
                           "render_context": d.context, "iteration": d.iteration, "item": d.item,
                           "attempt": d.attempt, "max_attempts": d.max_attempts}
                await command_store.insert(conn, NewCommand(
                    command_id=d.command_id, execution_id=execution_id, catalog_id=catalog_id, step=d.step,
                    tool_kind=d.tool_kind, pool=pool, iteration=d.iteration, context=context,
                    attempt=1, max_attempts=TAKEOVER_ATTEMPTS))
                events.append(NewEvent(event_id=d.command_id, execution_id=execution_id, event_type="command.issued",
                                       node_name=d.step, node_type=d.tool_kind, status="PENDING", catalog_id=catalog_id,
                                       parent_event_id=parent_event_id, command_id=d.command_id, attempt=d.attempt,
                                       iteration=d.iteration, payload={"context": context}))
                note = {"execution_id": execution_id, "event_id": d.command_id, "command_id": str(d.command_id),
                        "step": d.step, "execution_pool": pool}
                if self.public_url:
                    note["server_url"] = self.public_url
                notifications.append(OutboxRow(id=self.svc.mint_owned_id(), execution_id=execution_id,
                                               event_id=d.command_id, subject=f"noetl.commands.{pool}.{execution_id}",
                                               payload=note))
            elif isinstance(d, engine.EmitEvent):
                events.append(NewEvent(event_id=self.svc.mint_owned_id(), execution_id=execution_id,
                                       event_type=d.event_type, node_name=d.step, status="INFO", catalog_id=catalog_id,
                                       parent_event_id=parent_event_id, payload=d.payload or {}))
            elif isinstance(d, engine.StartChild):
                await self.start_child(conn, queue, execution_id, catalog_id, d, events)
            elif isinstance(d, engine.Finish):
                finish = d
        await self.append(conn, events)
        await outbox_store.enqueue(conn, notifications)
        if finish is not None:
            outcome.finished = finish.status
            await self.finish(conn, queue, execution_id, catalog_id, finish.status, finish.result, finish.error,
                              parent_event_id, finish.step_results)
        return outcome

    async def start_child(self, conn: asyncpg.Connection, queue: list[FollowUp], execution_id: int,
                          catalog_id: int, d: Any, events: list[NewEvent]) -> None:
        """`kind: playbook` steps: the child lives on this shard (ids minted here are owned here)."""
        await command_store.insert(conn, NewCommand(
            command_id=d.command_id, execution_id=execution_id, catalog_id=catalog_id, step=d.step,
            tool_kind="playbook", pool=None, iteration=getattr(d, "iteration", None),
            context={"path": d.path, "version": d.version, "workload": d.workload}))
        await conn.execute("UPDATE noetl.command SET status = 'RUNNING', started_at = now() WHERE command_id = $1",
                           d.command_id)
        events.append(NewEvent(event_id=d.command_id, execution_id=execution_id, event_type="command.issued",
                               node_name=d.step, node_type="playbook", status="RUNNING", catalog_id=catalog_id,
                               command_id=d.command_id, payload={"context": {"path": d.path, "workload": d.workload}}))
        child_row = await catalog_store.get_by_path(self.svc.cluster_pool, d.path, d.version)
        if child_row is None:
            # The parent step fails cleanly instead of waiting for a child that can never start.
            reason = f"sub-playbook {d.path!r} is not registered in the catalog"
            failed = NewEvent(event_id=self.svc.mint_owned_id(), execution_id=execution_id,
                              event_type="command.failed", node_name=d.step, node_type="playbook", status="FAILED",
                              catalog_id=catalog_id, command_id=d.command_id, payload={"error": reason}, error=reason)
            events.append(failed)
            await command_store.finish(conn, d.command_id, "FAILED", None, reason)
            queue.append(FollowUp(execution_id, engine.command_failed(d.command_id, reason), failed.event_id))
            return
        await self.start(conn, queue, catalog_id=child_row["catalog_id"], workload=d.workload or {},
                         parent_execution_id=execution_id, parent_command_id=d.command_id)

    async def finish(self, conn: asyncpg.Connection, queue: list[FollowUp], execution_id: int, catalog_id: int,
                     status: str, result: Any, error: str | None, parent_event_id: int | None,
                     step_results: dict[str, Any] | None = None) -> None:
        if not await execution_store.finish(conn, execution_id, status, result, error):
            return  # already terminal: the terminal event exists exactly once
        self.svc.metrics.execution_finished(status)
        row = await execution_store.get(conn, execution_id)
        await command_store.cancel_open(conn, execution_id)
        await self.append(conn, [NewEvent(
            event_id=self.svc.mint_owned_id(), execution_id=execution_id, event_type=TERMINAL_EVENT[status],
            node_name=row["path"], node_type="playbook", status=status, catalog_id=catalog_id,
            parent_event_id=parent_event_id, parent_execution_id=row["parent_execution_id"],
            payload={"result": result, "error": error}, error=error)])
        await conn.execute("UPDATE noetl.execution SET last_event_type = $2, updated_at = now() "
                           "WHERE execution_id = $1", execution_id, TERMINAL_EVENT[status])
        parent_id, parent_cmd = row["parent_execution_id"], row["parent_command_id"]
        if parent_id and parent_cmd and self.svc.shard_map.current.owner(parent_id) == self.svc.settings.shard_index:
            await command_store.finish(conn, parent_cmd, "COMPLETED" if status == "COMPLETED" else "FAILED",
                                       result, error)
            # Logged in the parent's own history so a replay of the parent sees the child's outcome.
            done = NewEvent(event_id=self.svc.mint_owned_id(), execution_id=parent_id,
                            event_type=CHILD_EVENT[status], node_type="playbook", status=status,
                            command_id=parent_cmd, payload={"status": status, "result": result, "error": error,
                                                            "steps": step_results or {},
                                                            "child_execution_id": str(execution_id)}, error=error)
            parent_step = await conn.fetchval("SELECT step FROM noetl.command WHERE command_id = $1", parent_cmd)
            done.node_name = parent_step
            await self.append(conn, [done])
            queue.append(FollowUp(parent_id, engine.child_done(parent_cmd, status, result, error, step_results),
                                  done.event_id))
