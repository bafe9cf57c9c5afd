"""What one shard transaction changes, merged in memory and written as one statement.

Handlers and the orchestrator record changes here instead of writing as they go; at the end the
transaction sends `write_set()` through `store.writes.flush`. Merging happens here: a command
created and claimed in the same transaction becomes one row, an execution's state is encoded once
however many events advanced it, and every transaction's events travel to the projector as one
outbox message.
"""

from __future__ import annotations

import time
from typing import Callable

from noetl_common.engine import DataWrite, LoopItems, LoopResult, StepResult
from noetl_common.streams import events_subject
from noetl_common.vocabulary import EventType
from noetl_common.wire.internal import EventEnvelope, EventsMessage

from ...store.events import NewEvent
from ...store.outbox import OutboxRow
from ...store.writes import (CommandChange, CommandRow, ExecutionWrite, LoopItemsRow, LoopResultRow, StageClose,
                              StageRow, StepResultRow, WriteSet)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def envelope(e: NewEvent, at_ms: int) -> EventEnvelope:
    """The projector's view of an event (ids as strings, as NoETL's mirror sends them)."""
    return EventEnvelope(
        event_id=str(e.event_id), execution_id=str(e.execution_id), event_type=e.event_type,
        parent_execution_id=str(e.parent_execution_id) if e.parent_execution_id else None,
        node_name=e.node_name, status=e.status, command_id=str(e.command_id) if e.command_id else None,
        worker_id=e.worker_id, attempt=e.attempt, iteration=e.iteration, error=e.error,
        catalog_id=str(e.catalog_id) if e.catalog_id else None, event_time_ms=at_ms)


def _merge_change(target: CommandRow | CommandChange, change: CommandChange) -> None:
    for field in ("status", "worker_id", "attempt", "lease_seconds"):
        value = getattr(change, field)
        if value is not None:
            setattr(target, field, value)
    target.started = target.started or change.started
    if isinstance(target, CommandChange):
        target.claimed = target.claimed or change.claimed
    if change.completed:
        target.completed, target.result, target.error = True, change.result, change.error


class UnitOfWork:
    def __init__(self, shard: int, mint: Callable[[], int]) -> None:
        self.shard = shard
        self.mint = mint
        self.events: list[NewEvent] = []
        self.notifications: list[OutboxRow] = []
        self._new_executions: dict[int, ExecutionWrite] = {}
        self._executions: dict[int, ExecutionWrite] = {}
        self._new_commands: dict[int, CommandRow] = {}
        self._commands: dict[int, CommandChange] = {}
        self._cancel_open: list[int] = []
        self._step_results: list[StepResultRow] = []
        self._loop_items: list[LoopItemsRow] = []
        self._loop_results: list[LoopResultRow] = []
        self._stages: list[StageRow] = []
        self._stage_closes: list[StageClose] = []

    @property
    def empty(self) -> bool:
        return not (self.events or self.notifications or self._new_executions or self._executions
                    or self._new_commands or self._commands or self._cancel_open)

    # --- recording ----------------------------------------------------------------------------
    def append(self, *events: NewEvent) -> None:
        self.events.extend(events)

    def new_execution(self, row: ExecutionWrite) -> None:
        self._new_executions[row.execution_id] = row

    def execution(self, execution_id: int) -> ExecutionWrite:
        """The write record of an execution (the new row itself when it was created here)."""
        row = self._new_executions.get(execution_id) or self._executions.get(execution_id)
        if row is None:
            row = self._executions[execution_id] = ExecutionWrite(execution_id=execution_id)
        return row

    def new_command(self, row: CommandRow) -> None:
        self._new_commands[row.command_id] = row

    def change_command(self, change: CommandChange) -> None:
        target = self._new_commands.get(change.command_id) or self._commands.get(change.command_id)
        if target is None:
            self._commands[change.command_id] = change
        else:
            _merge_change(target, change)

    def command_row(self, command_id: int) -> CommandRow | None:
        return self._new_commands.get(command_id)

    def cancel_open_commands(self, execution_id: int) -> None:
        self._cancel_open.append(execution_id)

    def open_stage(self, row: StageRow) -> None:
        self._stages.append(row)

    def close_stage(self, row: StageClose) -> None:
        self._stage_closes.append(row)

    def notify(self, row: OutboxRow) -> None:
        self.notifications.append(row)

    def record_data(self, execution_id: int, writes: list[DataWrite]) -> None:
        for w in writes:
            if isinstance(w, StepResult):
                self._step_results.append(StepResultRow(execution_id, w.step, w.value))
            elif isinstance(w, LoopResult):
                self._loop_results.append(LoopResultRow(execution_id, w.step, w.run, w.index, w.value))
            elif isinstance(w, LoopItems) and w.items:
                # An empty chunk writes no row (the next chunk takes its offset); the loader knows
                # a running loop from the state.
                self._loop_items.append(LoopItemsRow(execution_id, w.step, w.run, w.offset, w.items))

    # --- the statement ------------------------------------------------------------------------
    def write_set(self) -> WriteSet:
        self._stamp_last_events()
        outbox = list(self.notifications)
        if self.events:
            # One message per transaction carries all its events to the projector.
            at = now_ms()
            first = self.events[0].execution_id
            outbox.append(OutboxRow(id=self.mint(), execution_id=first, event_id=None,
                                    subject=events_subject(self.shard, first),
                                    payload=EventsMessage(events=[envelope(e, at) for e in self.events])))
        return WriteSet(new_executions=list(self._new_executions.values()),
                        executions=list(self._executions.values()), events=self.events,
                        new_commands=list(self._new_commands.values()), commands=list(self._commands.values()),
                        cancel_open_of=self._cancel_open, outbox=outbox, step_results=self._step_results,
                        loop_items=self._loop_items, loop_results=self._loop_results, stages=self._stages,
                        stage_closes=self._stage_closes)

    def _stamp_last_events(self) -> None:
        """One writer of execution.last_event_*: the newest event of each execution touched."""
        latest: dict[int, NewEvent] = {}
        step: dict[int, str] = {}
        for e in self.events:
            if e.execution_id not in latest or e.event_id > latest[e.execution_id].event_id:
                latest[e.execution_id] = e
            if e.command_id is not None and e.node_name:
                step[e.execution_id] = e.node_name
        for execution_id, e in latest.items():
            row = self.execution(execution_id)
            row.last_event_id, row.last_event_type = e.event_id, e.event_type
            row.last_step = step.get(execution_id, row.last_step)

    def granted_claims(self) -> list[tuple[int, int, str, int, float]]:
        """(command id, execution id, worker id, its command.started event id, lease seconds) of every
        claim granted here: by the claim route or handed over eagerly with an outcome."""
        granted = []
        for e in self.events:
            if e.event_type != EventType.COMMAND_STARTED or e.command_id is None or not e.worker_id:
                continue
            row = self._commands.get(e.command_id) or self._new_commands.get(e.command_id)
            if row is None or not row.lease_seconds:
                continue
            if row.claimed if isinstance(row, CommandChange) else row.worker_id is not None:
                granted.append((e.command_id, e.execution_id, e.worker_id, e.event_id, row.lease_seconds))
        return granted

    def issued_commands(self) -> list[CommandRow]:
        """New commands left for a worker to claim (not handed over with an outcome)."""
        return [c for c in self._new_commands.values() if c.status == "ISSUED" and c.worker_id is None]

    def finished_commands(self) -> list[int]:
        return ([c.command_id for c in self._commands.values() if c.completed]
                + [c.command_id for c in self._new_commands.values() if c.completed])

    def executions_touched(self) -> set[int]:
        return {e.execution_id for e in self.events} | set(self._executions) | set(self._new_executions)
