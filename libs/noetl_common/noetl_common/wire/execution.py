"""Wire shapes of the execution API: execute, events, commands/claims (reference §1.3.1-1.3.5).

NoETL clients use two spellings for several fields (the Python worker's `name`/`payload`/
`node_name`, the Rust worker's `event_type`/`context`/`step`) and send ids as ints or strings;
both are accepted and normalised by `normalise()`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import IdLike as Id


class ExecuteRequest(msgspec.Struct, kw_only=True):
    path: str | None = None
    catalog_id: Id | None = None
    version: int | str | None = None
    resource_kind: str | None = None
    payload: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    parent_execution_id: Id | None = None
    parent_command_id: Id | None = None
    execution_pool: str | None = None   # the worker pool to run in (NoETL's pool routing)


class ExecuteResponse(msgspec.Struct, kw_only=True):
    execution_id: str
    status: str
    commands_generated: int
    path: str | None = None
    catalog_id: str | None = None


class EventIn(msgspec.Struct, kw_only=True):
    """One event as a worker posts it, in either NoETL spelling."""

    execution_id: Id | None = None
    event_type: str | None = None
    name: str | None = None
    step: str | None = None
    node_name: str | None = None
    payload: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    worker_id: str | None = None
    event_id: Id | None = None
    command_id: Id | None = None
    status: str | None = None
    actionable: bool = True
    informative: bool = True


class EagerOffer(msgspec.Struct, kw_only=True):
    """Extension: a worker reporting an outcome offers to take up to `slots` next commands of its
    `pool` at once; they come back claimed and started in the answer's `commands`."""

    slots: int
    pool: str


class BatchRequest(msgspec.Struct, kw_only=True):
    execution_id: Id
    events: list[EventIn]
    worker_id: str | None = None
    catalog_id: Id | None = None
    eager: EagerOffer | None = None


class EventAccepted(msgspec.Struct, kw_only=True):
    status: str
    event_id: int
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


class ClaimRequest(msgspec.Struct, kw_only=True):
    worker_id: str
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
    status: str | None = None
    reason: str | None = None
    error: str | None = None
