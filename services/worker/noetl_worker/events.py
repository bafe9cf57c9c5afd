"""The events a worker posts for one command (contract §3.2): started, heartbeats, and the outcome
pair — `call.done` + `command.completed`, or `call.error` + `command.failed` — in one batch."""

from __future__ import annotations

from typing import Any

import msgspec

from .wire import Event
from noetl_common.vocabulary import EventType


class Reporter(msgspec.Struct, frozen=True):
    """Builds the events of one claimed command; idempotency keys are stable per attempt, so a
    re-sent batch (lost answer, redelivered message) is recognised by the server."""

    execution_id: int
    step: str
    command_id: str
    worker_id: str
    attempt: int

    def _event(self, event_type: str, payload: dict[str, Any], status: str | None = None, *,
               actionable: bool = True) -> Event:
        return Event(event_type=event_type, step=self.step, command_id=self.command_id, worker_id=self.worker_id,
                     status=status, actionable=actionable,
                     payload={"command_id": self.command_id, "worker_id": self.worker_id, **payload})

    def key(self, what: str) -> str:
        return f"{self.worker_id}:{self.execution_id}:{self.command_id}:{self.attempt}:{what}"

    def started(self) -> list[Event]:
        return [self._event(EventType.COMMAND_STARTED, {}, "RUNNING", actionable=False)]

    def heartbeat(self) -> list[Event]:
        return [self._event(EventType.COMMAND_HEARTBEAT, {}, "RUNNING", actionable=False)]

    def succeeded(self, result: Any, stdout: str) -> list[Event]:
        return [self._event(EventType.CALL_DONE, {"result": result, "stdout": stdout}, "COMPLETED"),
                self._event(EventType.COMMAND_COMPLETED, {"status": "COMPLETED"}, "COMPLETED", actionable=False)]

    def failed(self, error: str, stdout: str) -> list[Event]:
        return [self._event(EventType.CALL_ERROR, {"error": error, "stdout": stdout}, "FAILED"),
                self._event(EventType.COMMAND_FAILED, {"error": error}, "FAILED", actionable=False)]
