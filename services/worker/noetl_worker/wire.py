"""Wire shapes the worker exchanges with the control plane (contract §1.3.2-1.3.5, §4.1). The
notification it reads from NATS is `noetl_common.wire.internal.CommandNotification`, the shape
the shard writes."""

from __future__ import annotations

from typing import Any

import msgspec


class Command(msgspec.Struct, kw_only=True):
    """GET /api/commands/{id}, the claim response (`ClaimResponse`), and each command handed over
    in an outcome answer (`BatchAnswer.commands`)."""

    execution_id: int
    node_name: str
    action: str = ""
    context: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    node_id: str | None = None
    event_id: int | None = None
    command_id: int | str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    status: str | None = None
    # The shard recorded command.started in the claim transaction (a NoETL server never sends it):
    # the worker must not post its own.
    started: bool = False


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One item of POST /api/events/batch (also the body of POST /api/events, with execution_id).
    The canonical names (`event_type`, `payload`, `step`) are accepted by both NoETL servers."""

    event_type: str
    step: str
    payload: dict[str, Any]
    actionable: bool  # always sent: NoETL's batch route defaults it to false, which would skip the engine
    command_id: str | None = None
    worker_id: str | None = None
    status: str | None = None
    meta: dict[str, Any] | None = None
    informative: bool = True


class EagerRequest(msgspec.Struct, kw_only=True):
    """Opt-in extension of an outcome batch: "I can take `slots` more commands of `pool` now"
    (counting the slot the finishing command frees). A NoETL server ignores the unknown field."""

    slots: int
    pool: str


class EventBatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    execution_id: str
    events: list[Event]
    worker_id: str | None = None
    eager: EagerRequest | None = None  # omitted when None


class BatchAnswer(msgspec.Struct, kw_only=True):
    """The part of a batch answer the worker reads: the next commands of the execution, already
    claimed and started for this worker (eager dispatch). Kept raw so one unreadable command does
    not hide the others; everything else in the answer (status, event_ids, ...) is ignored."""

    commands: list[msgspec.Raw] | None = None
    ended: bool = False  # the execution had ended before the batch: drop what was handed ahead


class Handed(msgspec.Struct):
    """What a batch answer hands over: its commands, and whether the execution had ended."""

    commands: list[Command] = []
    ended: bool = False


class SingleEvent(Event, kw_only=True, omit_defaults=True):
    execution_id: str


class PoolRegistration(msgspec.Struct, kw_only=True):
    """POST /api/worker/pool/register (and the `registration` of a heartbeat, so a pool the
    control plane forgot re-registers in the same call)."""

    name: str
    runtime: str = "python"
    status: str = "ready"
    capacity: int | None = None
    labels: dict[str, Any] | None = None
    hostname: str | None = None
    pid: int | None = None


class PoolHeartbeat(msgspec.Struct, kw_only=True):
    name: str
    registration: PoolRegistration | None = None


class PoolDeregister(msgspec.Struct, kw_only=True):
    name: str
