"""Wire shapes of the execution API: execute, events, commands/claims (reference §1.3.1-1.3.5).

NoETL clients use two spellings for several fields (the Python worker's `name`/`payload`/
`node_name`, the Rust worker's `event_type`/`context`/`step`) and send ids as ints or strings;
both are accepted and normalised by `normalise()`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from ..pools import POOL_PATTERN
from . import CommandId, Id, IdOrEmpty, Version, any_of_required

# Event types are short names (worker_events.MAX_EVENT_TYPE).
MAX_EVENT_TYPE = 128


class ExecuteRequest(msgspec.Struct, kw_only=True):
    # Either path (+ version) or catalog_id; the handler answers 422 when neither is given.
    # Constraints here are stated, not enforced on decode: an item of POST /api/execute/batch is
    # decoded with the batch, and a bad item must be an error at its index, not fail the batch;
    # start_request checks each one (resource_kind in any letter case).
    __json_schema_extra__: ClassVar[dict[str, Any]] = any_of_required("path", "catalog_id")

    path: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1})] | None = None
    catalog_id: Id | None = None
    version: Version | None = None
    resource_kind: Annotated[str, msgspec.Meta(
        extra_json_schema={"enum": ["playbook", "playbooks", "agent", "agents"]})] | None = None
    payload: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    parent_execution_id: Id | None = None
    parent_command_id: Id | None = None
    # The worker pool to run in (NoETL's pool routing): one NATS subject token.
    execution_pool: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": POOL_PATTERN})] | None = None


class ExecuteResponse(msgspec.Struct, kw_only=True):
    execution_id: str
    status: str
    commands_generated: int
    path: str | None = None
    catalog_id: str | None = None


EventType = Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": MAX_EVENT_TYPE})]


class EventIn(msgspec.Struct, kw_only=True):
    """One event as a worker posts it, in either NoETL spelling (event_type or name: one is
    required, which normalise() checks and the schema states)."""

    __json_schema_extra__: ClassVar[dict[str, Any]] = any_of_required("event_type", "name")

    execution_id: Id | None = None
    event_type: EventType | None = None
    name: EventType | None = None
    step: str | None = None
    node_name: str | None = None
    payload: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    worker_id: str | None = None
    event_id: IdOrEmpty | None = None
    command_id: CommandId | None = None  # also the Rust server's "<execution_id>:<step>:<event_id>"
    status: str | None = None
    actionable: bool = True
    informative: bool = True


class EventPost(EventIn, kw_only=True):
    """POST /api/events: one event, which names its execution (the router routes by it)."""

    execution_id: Id


# The most commands one eager offer may ask for (a worker may run more at once: it offers this many).
MAX_EAGER_SLOTS = 64


class EagerOffer(msgspec.Struct, kw_only=True):
    """Extension: a worker reporting an outcome offers to take up to `slots` next commands of its
    `pool` at once; they come back claimed and started in the answer's `commands`."""

    slots: Annotated[int, msgspec.Meta(ge=1, le=MAX_EAGER_SLOTS)]
    pool: str


MAX_BATCH_EVENTS = 256


class BatchRequest(msgspec.Struct, kw_only=True):
    # An eager offer claims commands for the batch's worker: worker_id is required with it.
    __json_schema_extra__: ClassVar[dict[str, Any]] = {
        "if": {"required": ["eager"], "properties": {"eager": {"type": "object"}}},
        "then": {"required": ["worker_id"], "properties": {"worker_id": {"type": "string", "minLength": 1}}}}

    execution_id: Id
    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]
    worker_id: str | None = None
    catalog_id: Id | None = None
    eager: EagerOffer | None = None


class EventAccepted(msgspec.Struct, kw_only=True):
    status: str
    event_id: int | None   # None: the execution had ended, so the event was not logged
    commands_generated: int
    duplicate: bool = False


class BatchAccepted(msgspec.Struct, kw_only=True):
    status: str
    request_id: str
    event_ids: list[int]
    commands_generated: int
    duplicate: bool
    queue_depth: int = 0
    idempotency_key: str | None = None
    # With an eager offer: the next commands, claimed and started for the offering worker.
    commands: list[CommandOut] | msgspec.UnsetType = msgspec.UNSET
    # Only when true: the execution had ended before this batch (its commands are cancelled); a
    # worker drops what it was handed ahead and has not started.
    ended: bool | msgspec.UnsetType = msgspec.UNSET


class ClaimRequest(msgspec.Struct, kw_only=True):
    worker_id: Annotated[str, msgspec.Meta(pattern=r"\S")]
    locality: dict[str, Any] | None = None


class CommandOut(msgspec.Struct, kw_only=True):
    """GET /api/commands/{id} and, with status/event_id, the claim response."""

    execution_id: int
    node_id: str
    node_name: str
    action: str
    context: dict[str, Any]
    meta: dict[str, Any]
    event_id: int | None = None
    command_id: str | None = None
    status: str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    # Claims answer true: the claim recorded `command.started`, the worker need not post it.
    started: bool | msgspec.UnsetType = msgspec.UNSET


class CancelRequest(msgspec.Struct, kw_only=True):
    cascade: bool = False
    reason: str | None = None


class FinalizeRequest(msgspec.Struct, kw_only=True):
    # The terminal status to force (default FAILED); stated, the handler takes any letter case.
    status: Annotated[str, msgspec.Meta(extra_json_schema={"enum": ["COMPLETED", "FAILED"]})] | None = None
    reason: str | None = None
    error: str | None = None
