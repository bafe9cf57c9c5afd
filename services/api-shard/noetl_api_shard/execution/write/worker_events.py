"""Normalise what workers post (both NoETL spellings) into one typed event.

Python worker: `{execution_id: str, step|node_name, name, payload, worker_id, meta}`.
Rust worker:   `{execution_id: int, event_type, step, status, context, event_id?, meta}`.
The command an event belongs to is `command_id` at the top level, in the payload/context, or in
meta (NoETL puts it in all three places depending on the path).
"""

from __future__ import annotations

from typing import Any, Mapping

import msgspec

from noetl_common.errors import ApiError, bad_request
from noetl_common.ids import parse_id
from noetl_common.wire.execution import MAX_EVENT_TYPE, EventIn
from noetl_common.vocabulary import PIPELINED, EventType

# Events that finish a command: the engine advances once per command on the first of these.
FINISH_OK = frozenset({EventType.CALL_DONE, EventType.COMMAND_COMPLETED})
FINISH_ERROR = frozenset({EventType.CALL_ERROR, EventType.COMMAND_FAILED})
FINISHING = FINISH_OK | FINISH_ERROR
# Signs of life from a claim holder (extend its lease).
PROGRESS = frozenset({EventType.COMMAND_STARTED, EventType.COMMAND_HEARTBEAT, EventType.CALL_STARTED})
MAX_ERROR_CHARS = 2000
# The engine logs every step.enter/step.exit itself; NoETL's Python worker posts its own pair too,
# which would log each twice (and count a step run twice in the projection's step_count).
ENGINE_WRITTEN = frozenset({EventType.STEP_ENTER, EventType.STEP_EXIT})


class WorkerEvent(msgspec.Struct, kw_only=True):
    execution_id: int
    event_type: str
    step: str | None
    payload: dict[str, Any]
    meta: dict[str, Any]
    worker_id: str | None
    event_id: int | None
    command_id: int | None
    status: str | None
    actionable: bool
    # The step result for the engine when it is not in the payload (a stored reference resolved,
    # or a large result moved to the result store): set by step_results.prepare.
    value: Any = msgspec.UNSET

    @property
    def result(self) -> Any:
        return self.payload.get("result")

    @property
    def error_text(self) -> str | None:
        err = self.payload.get("error")
        if err is None and isinstance(self.payload.get("result"), dict):
            err = self.payload["result"].get("error")
        if err is None:
            return None
        if isinstance(err, dict):
            err = err.get("message") or msgspec.json.encode(err).decode()
        return str(err)[:MAX_ERROR_CHARS]


def _command_id(raw: EventIn, payload: dict[str, Any], meta: dict[str, Any], where: str) -> int | None:
    for candidate, field in ((raw.command_id, "command_id"), (payload.get("command_id"), "payload.command_id"),
                             (meta.get("command_id"), "meta.command_id")):
        if candidate is None or candidate == "":
            continue
        try:
            return parse_id(candidate, f"{where}{field}")
        except ValueError:
            # The Rust server's "<execution_id>:<step>:<event_id>" form: the last numeric part.
            if isinstance(candidate, str) and ":" in candidate:
                tail = candidate.split(":")[2] if candidate.count(":") >= 2 else candidate.rsplit(":", 1)[-1]
                try:
                    return parse_id(tail, f"{where}{field}")
                except ValueError:
                    pass
            raise bad_request(f"{where}{field} must be an integer id, got {candidate!r}") from None
    return None


def normalise(raw: EventIn, *, default_execution_id: Any = None, default_worker: str | None = None,
              where: str = "") -> WorkerEvent:
    """Validate one event; `where` prefixes field names in errors (e.g. 'events[3].')."""
    event_type = raw.event_type or raw.name
    if not event_type:
        raise bad_request(f"{where}event_type (or name) is required")
    if len(event_type) > MAX_EVENT_TYPE:
        raise bad_request(f"{where}event_type is longer than {MAX_EVENT_TYPE} characters")
    exec_raw = raw.execution_id if raw.execution_id is not None else default_execution_id
    if exec_raw is None:
        raise bad_request(f"{where}execution_id is required")
    try:
        execution_id = parse_id(exec_raw, f"{where}execution_id")
        event_id = None if raw.event_id in (None, "") else parse_id(raw.event_id, f"{where}event_id")
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    if raw.payload is not None and raw.context is not None:
        payload = {**raw.context, **raw.payload}
    else:
        payload = dict(raw.payload if raw.payload is not None else (raw.context or {}))
    if "_internal_data" in payload:
        raise ApiError(422, f"{where}payload must not contain _internal_data", "validation_error")
    meta = dict(raw.meta or {})
    return WorkerEvent(
        execution_id=execution_id,
        event_type=event_type,
        step=raw.step or raw.node_name,
        payload=payload,
        meta=meta,
        worker_id=raw.worker_id or default_worker,
        event_id=event_id,
        command_id=_command_id(raw, payload, meta, where),
        status=raw.status,
        actionable=raw.actionable,
    )


def reports_success(event_type: str, status: Any, payload: Mapping[str, Any]) -> bool:
    """Whether a finishing event reports success: a success type whose status, explicit or
    `payload.status`, does not say the tool failed (the Rust worker reports a failed tool as
    `command.completed` with status FAILED; some Python paths put `status: error` in the
    payload). Ingest decides with the event as posted, replay with the logged row; both call this."""
    if event_type not in FINISH_OK:
        return False
    return not any(isinstance(s, str) and s.upper() in ("FAILED", "ERROR") for s in (status, payload.get("status")))


def worker_pipelines(payload: Mapping[str, Any]) -> bool:
    """Whether a finishing event's worker takes a sequential loop's next iteration ahead (engine
    EngineEvent.pipelined; the fleet's worker says so with eager dispatch). Ingest and replay both
    ask this."""
    return payload.get(PIPELINED) is True


def status_for(event_type: str, explicit: str | None) -> str:
    """The event row's status column, derived from its type when the sender gave none."""
    if explicit:
        return explicit.upper()
    if event_type in FINISH_ERROR or event_type.endswith(".failed") or event_type.endswith(".error"):
        return "FAILED"
    if event_type in FINISH_OK or event_type.endswith(".completed") or event_type.endswith(".done"):
        return "COMPLETED"
    if event_type.endswith(".cancelled"):
        return "CANCELLED"
    if event_type in PROGRESS or event_type == EventType.COMMAND_CLAIMED:
        return "RUNNING"
    return "PENDING" if event_type == EventType.COMMAND_ISSUED else "INFO"
