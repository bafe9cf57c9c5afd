"""Event ingest: a worker's events (one, or a batch) appended in one transaction; an event that
finishes a command advances the engine, once per command.

`accept_cached` is the hot path, run optimistically (one statement, no lock) on the cached
execution: it takes the batches every step sends — heartbeats and outcomes of commands the
engine still waits for, and the `command.started` NoETL's worker posts after a claim this process
granted (a re-send: answered with the claim's own event id). Anything that needs to look at the
database first raises Fallback and is taken by `accept`, under the execution's row lock: re-sends
(a producer-stamped event id already in the log, a command already started or finished, an
Idempotency-Key answered before — the same answer again), a `command.started` the claim book
cannot answer, events of unknown commands. Its lock read fetches everything needed for those in
one statement.
"""

from __future__ import annotations

from typing import Any

import msgspec

from noetl_common.errors import ApiError, not_found
from noetl_common.pools import resolve_pool
from noetl_common.vocabulary import EventType

from ...store import events as event_store, executions as execution_store
from ...store.events import NewEvent
from ...store.writes import CommandChange
from . import engine_port as engine, step_results
from .claim_book import ClaimBook
from .orchestration import Orchestrator, TERMINAL
from .ownership import require_owned
from .txn import Eager, Fallback, Txn
from .worker_events import FINISHING, PROGRESS, WorkerEvent, reports_success, status_for, worker_pipelines

STARTED = EventType.COMMAND_STARTED
DEDUPED = FINISHING | {STARTED}   # one of each per command; a second is a re-send


class CommandView:
    """The columns of a command that ingest reads and updates as the batch goes."""

    __slots__ = ("command_id", "execution_id", "step", "tool_kind", "status", "attempt", "iteration", "started",
                 "catalog_id")

    def __init__(self, row: Any) -> None:
        self.command_id: int = row["command_id"]
        self.execution_id: int = row["command_execution_id"]
        self.step: str = row["step"]
        self.tool_kind: str = row["tool_kind"]
        self.status: str = row["command_status"]
        self.attempt: int = row["attempt"]
        self.iteration: int | None = row["iteration"]
        self.started: bool = row["command_started"]
        self.catalog_id: int | None = row["command_catalog_id"]


class Accepted(msgspec.Struct):
    event_ids: list[int]
    commands_generated: int
    duplicates: int = 0                          # events recognised as re-sends (not logged again)
    closed: bool = False                         # the execution had ended before this batch: nothing logged
    prior_answer: dict[str, Any] | None = None   # an Idempotency-Key seen before: its first answer


async def accept(orch: Orchestrator, txn: Txn, execution_id: int, events: list[WorkerEvent], *,
                 lease_seconds: float, idempotency_key: str | None = None,
                 eager: Eager | None = None) -> Accepted:
    """Append `events` (all of one execution) within `txn`."""
    svc = orch.svc
    require_owned(svc, execution_id)
    command_ids = sorted({e.command_id for e in events if e.command_id is not None})
    stamped = [e.event_id for e in events if e.event_id is not None]
    rows = await execution_store.lock_for_events(txn.conn, execution_id, idempotency_key, command_ids, stamped)
    if not rows:
        raise not_found(f"execution {execution_id} not found")
    head = rows[0]
    if idempotency_key and head["prior_answer"] is not None:
        return Accepted([], 0, prior_answer=head["prior_answer"])
    commands = {r["command_id"]: CommandView(r) for r in rows if r["command_id"] is not None}
    logged: set[int] = set(head["logged_ids"])
    seen = await _logged_once_events(txn, execution_id, events, commands)
    late = head["status"] in TERMINAL
    ids: list[int] = []
    finishing: list[tuple[CommandView, WorkerEvent, int]] = []
    duplicates = 0
    for ev in events:
        if ev.event_id is not None and ev.event_id in logged:
            ids.append(ev.event_id)
            duplicates += 1
            continue
        cmd = _command_of(ev, commands, execution_id)
        if cmd is not None and ev.event_type in DEDUPED and (cmd.command_id, ev.event_type) in seen:
            ids.append(seen[(cmd.command_id, ev.event_type)])
            duplicates += 1
            continue
        if cmd is not None and cmd.status not in TERMINAL:
            # Before it is logged: a large result goes to the result store, the log gets a reference.
            await step_results.prepare(svc, txn.conn, ev, svc.settings.event_result_max_bytes)
        if late:
            # The log ends at the terminal event, so a reader that stops there misses nothing: a
            # late event (a step that ran on after its execution was cancelled) is not logged; an
            # outcome still closes its command's row (GET /api/commands/{id} shows it).
            if cmd is not None and ev.event_type in FINISHING and cmd.status not in TERMINAL:
                cmd.status = _record_outcome(txn, cmd.command_id, ev)
            continue
        row = _event_row(svc, ev, cmd, head["catalog_id"])
        txn.uow.append(row)
        ids.append(row.event_id)
        if ev.event_id is not None:
            logged.add(ev.event_id)
        if cmd is None:
            continue
        if ev.event_type in DEDUPED:
            seen[(cmd.command_id, ev.event_type)] = row.event_id
        if ev.event_type in PROGRESS:
            _progress(txn, cmd, ev, lease_seconds)
        elif ev.event_type in FINISHING and cmd.status not in TERMINAL:
            cmd.status = "COMPLETED" if reports_success(ev.event_type, ev.status, ev.payload) else "FAILED"
            finishing.append((cmd, ev, row.event_id))
    # What the batch caused is logged after the whole batch (causal order: a step's
    # command.completed comes before the next step's events and before the terminal event).
    generated = 0
    for cmd, ev, event_id in finishing:
        generated += await _decide(orch, txn, await orch.load(txn, head), cmd.command_id, ev, event_id, eager)
    return Accepted(ids, generated, duplicates, closed=late)


def _command_of(ev: WorkerEvent, commands: dict[int, CommandView], execution_id: int) -> CommandView | None:
    if ev.command_id is None:
        return None
    cmd = commands.get(ev.command_id)
    if cmd is None or cmd.execution_id != execution_id:
        raise ApiError(404, f"command {ev.command_id} is not a command of execution {execution_id}", "not_found")
    return cmd


async def _logged_once_events(txn: Txn, execution_id: int, events: list[WorkerEvent],
                              commands: dict[int, CommandView]) -> dict[tuple[int, str], int]:
    """(command, event type) -> event id, for events logged at most once per command that this
    batch repeats: a `command.started` of a started command, a finishing event of a finished one.
    Only re-sends (and a NoETL worker's `command.started` after a claim that started it) need the
    lookup, so an ordinary outcome batch costs no query."""
    candidates = sorted({e.command_id for e in events if e.command_id in commands
                         and commands[e.command_id].execution_id == execution_id
                         and _maybe_repeat(e.event_type, commands[e.command_id])})
    if not candidates:
        return {}
    return await event_store.firsts_for_commands(txn.conn, execution_id, candidates, sorted(DEDUPED))


def _maybe_repeat(event_type: str, cmd: CommandView) -> bool:
    return (event_type == STARTED and cmd.started) or (event_type in FINISHING and cmd.status in TERMINAL)


def _event_row(svc: Any, ev: WorkerEvent, cmd: CommandView | None, catalog_id: int) -> NewEvent:
    return NewEvent(
        event_id=ev.event_id or svc.mint_owned_id(), execution_id=ev.execution_id, event_type=ev.event_type,
        node_name=ev.step or (cmd.step if cmd else None), node_type=cmd.tool_kind if cmd else None,
        status=status_for(ev.event_type, ev.status), catalog_id=catalog_id,
        command_id=ev.command_id, worker_id=ev.worker_id, attempt=cmd.attempt if cmd else None,
        iteration=cmd.iteration if cmd else None, payload=ev.payload, error=ev.error_text, meta=ev.meta or None)


def _progress(txn: Txn, cmd: CommandView, ev: WorkerEvent, lease_seconds: float) -> None:
    """A sign of life from the holder extends its lease (and marks it running on start)."""
    if cmd.status not in ("CLAIMED", "RUNNING"):
        return
    started = ev.event_type == STARTED
    status = "RUNNING" if started and cmd.status == "CLAIMED" else None
    txn.uow.change_command(CommandChange(command_id=cmd.command_id, status=status, lease_seconds=lease_seconds,
                                         started=started))
    cmd.started = cmd.started or started
    cmd.status = status or cmd.status


async def accept_cached(orch: Orchestrator, txn: Txn, execution_id: int, events: list[WorkerEvent], *,
                        lease_seconds: float, eager: Eager | None = None) -> Accepted:
    """The hot path (an optimistic `txn` holding the execution): events of commands the engine
    still waits for, nothing to look up. Raises Fallback for anything else, before writing."""
    require_owned(orch.svc, execution_id)
    ex = txn.loaded[execution_id]
    pending = ex.state.pending
    limit = orch.svc.settings.event_result_max_bytes
    resent = _claims_restarted(orch.claims, events)
    if ex.status in TERMINAL or not all(_cached_ok(e, pending, limit, resent) for e in events):
        raise Fallback("these events need the database")
    ids: list[int] = []
    duplicates = 0
    finishing: dict[int, tuple[WorkerEvent, int]] = {}
    for ev in events:
        if ev.event_type == STARTED:  # repeats the claim's own: answered with its id, not logged again
            ids.append(resent[ev.command_id])  # type: ignore[index]
            duplicates += 1
            continue
        waiting = pending.get(ev.command_id) if ev.command_id is not None else None
        row = NewEvent(event_id=orch.svc.mint_owned_id(), execution_id=execution_id, event_type=ev.event_type,
                       node_name=ev.step or (waiting.step if waiting else None),
                       status=status_for(ev.event_type, ev.status), catalog_id=ex.catalog_id,
                       command_id=ev.command_id, worker_id=ev.worker_id,
                       iteration=waiting.iteration if waiting else None, payload=ev.payload, error=ev.error_text,
                       meta=ev.meta or None)  # node_type and attempt come from the command row (writes.py)
        txn.uow.append(row)
        ids.append(row.event_id)
        if ev.command_id is None:
            continue
        if ev.event_type in PROGRESS:
            txn.uow.change_command(CommandChange(command_id=ev.command_id, lease_seconds=lease_seconds))
        elif ev.event_type in FINISHING and ev.command_id not in finishing:
            finishing[ev.command_id] = (ev, row.event_id)
    generated = 0
    for command_id, (ev, event_id) in finishing.items():  # after the batch, as in `accept`
        generated += await _decide(orch, txn, ex, command_id, ev, event_id, eager)
    return Accepted(ids, generated, duplicates)


def _claims_restarted(claims: ClaimBook, events: list[WorkerEvent]) -> dict[int, int]:
    """command id -> its `command.started` event id, for each `command.started` in `events` that
    repeats a claim this process granted (NoETL's worker posts one after every claim)."""
    resent = {}
    for ev in events:
        if ev.event_type == STARTED and ev.command_id is not None:
            claim = claims.holder(ev.command_id)
            if claim is not None:
                resent[ev.command_id] = claim.started_event_id
    return resent


def _cached_ok(ev: WorkerEvent, pending: dict[int, Any], result_limit: int, resent: dict[int, int]) -> bool:
    """Nothing to look up: no producer-stamped id, a command the engine waits for, a result small
    enough to log inline; a `command.started` only when it repeats a claim (`resent`)."""
    if ev.event_id is not None or (ev.command_id is not None and ev.command_id not in pending):
        return False
    if ev.event_type == STARTED:
        return ev.command_id in resent
    return not step_results.needs_store(ev, result_limit)


def _record_outcome(txn: Txn, command_id: int, ev: WorkerEvent) -> str:
    """The command's row takes the outcome; returns its new status."""
    ok = reports_success(ev.event_type, ev.status, ev.payload)
    status = "COMPLETED" if ok else "FAILED"
    txn.uow.change_command(CommandChange(command_id=command_id, status=status, completed=True,
                                         result=ev.result if ok else None,
                                         error=None if ok else (ev.error_text or "command failed")))
    return status


async def _decide(orch: Orchestrator, txn: Txn, ex: Any, command_id: int, ev: WorkerEvent, event_id: int,
                  eager: Eager | None) -> int:
    """A command's first finishing event: its outcome on the row, and the engine advanced once."""
    _record_outcome(txn, command_id, ev)
    ok = reports_success(ev.event_type, ev.status, ev.payload)
    orch.svc.metrics.step_finished(command_id, resolve_pool(ex.execution_pool, ex.path), ok)
    return (await orch.advance(txn, ex, engine_event_for(command_id, ev), event_id, eager, ev.worker_id)).commands


def engine_event_for(command_id: int, ev: WorkerEvent) -> Any:
    """The engine input a finishing event stands for, as ingested (replay.engine_event_of reads the
    logged row the same way; tests/unit/api_shard/test_event_mapping.py holds them together)."""
    pipelined = worker_pipelines(ev.payload)
    if reports_success(ev.event_type, ev.status, ev.payload):
        return engine.command_done(command_id, step_results.engine_value(ev), pipelined=pipelined)
    return engine.command_failed(command_id, ev.error_text or f"{ev.event_type} without an error message",
                                 pipelined=pipelined)
