"""Write-side routes: execute, events (single and batch), cancel, finalize, replay; plus wiring
of the read side and command claims."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response, not_found, read_json, unprocessable
from noetl_common.ids import parse_id
from noetl_common.openapi import Op, Param, route
from noetl_common.pools import valid_pool
from noetl_common.wire.execution import (BatchAccepted, BatchRequest, CancelRequest, ClaimRequest, CommandOut,
                                         EventAccepted, EventIn, ExecuteRequest, ExecuteResponse, FinalizeRequest)
from noetl_common.wire.execution_views import CancelResponse, FinalizeResponse, ReplayReport

from ..handlers.params import path_id, query_str, to_id
from ..state import SERVICES, services
from ..store import catalog as catalog_store
from ..store import commands as command_store
from ..store import executions as execution_store
from ..store.events import NewEvent
from . import commands_api, engine_port as engine, queries, reaper
from .commands_api import command_out
from .ingest import Accepted, accept, accept_cached
from .keys import ORCHESTRATOR
from .orchestration import TERMINAL, Orchestrator
from .txn import Eager, Fallback, Txn
from .ownership import require_owned
from .replay import compare
from .worker_events import normalise

EXECUTABLE_KINDS = {"playbook", "playbooks", "agent", "agents"}
MAX_BATCH_EVENTS = 256
MAX_EAGER_SLOTS = 64


def register(app: web.Application) -> None:
    settings = app[SERVICES].settings
    queries.register(app)
    route(app, "GET", "/api/commands/{event_id}", commands_api.get_command, Op(
        summary="A command, by its command.issued event id", ok=CommandOut, errors=(404, 421)))
    route(app, "POST", "/api/commands/{event_id}/claim",
          commands_api.make_claim_handler(app[ORCHESTRATOR], settings.claim_lease_seconds), Op(
              summary="Claim a command (a lease; also records command.started)", body=ClaimRequest, ok=CommandOut,
              errors=(400, 404, 409, 421, 422)))
    route(app, "POST", "/api/execute", execute, Op(
        summary="Start a playbook execution", body=ExecuteRequest, ok=ExecuteResponse, errors=(400, 404, 422)))
    route(app, "POST", "/api/events", post_event, Op(
        summary="One worker event", body=EventIn, ok=EventAccepted, errors=(400, 404, 421, 422)))
    route(app, "POST", "/api/events/batch", post_batch, Op(
        summary="A batch of one execution's events, in one transaction", body=BatchRequest, ok=BatchAccepted,
        status=202, errors=(400, 404, 421, 422),
        description="An Idempotency-Key header makes a re-sent batch answer the first answer again."))
    route(app, "POST", "/api/executions/{execution_id}/cancel", cancel, Op(
        summary="Cancel an execution (and, with cascade, its children)", body=CancelRequest, body_required=False,
        ok=CancelResponse, errors=(404, 421)))
    route(app, "POST", "/api/executions/{execution_id}/finalize", finalize, Op(
        summary="Force an execution to a terminal status", body=FinalizeRequest, body_required=False,
        ok=FinalizeResponse, errors=(404, 421, 422)))
    route(app, "GET", "/api/replay/state", replay_state, Op(
        summary="Replay an execution's log and compare with the stored state", ok=ReplayReport,
        query=(Param(name="execution_id", required=True),), errors=(400, 404, 421)))
    reaper.install(app, app[ORCHESTRATOR], interval_seconds=settings.reaper_interval_seconds,
                   unclaimed_after_seconds=settings.unclaimed_after_seconds)


def _id(value: Any, field: str) -> int:
    try:
        return parse_id(value, field)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


async def execute(request: web.Request) -> web.Response:
    svc = services(request)
    orch = request.app[ORCHESTRATOR]
    body = await read_json(request, ExecuteRequest)
    if body.resource_kind is not None and body.resource_kind.lower() not in EXECUTABLE_KINDS:
        raise unprocessable(f"Catalog kind '{body.resource_kind}' is not executable")
    if body.catalog_id is not None:
        row = await catalog_store.get_by_id(svc.cluster_pool, _id(body.catalog_id, "catalog_id"))
        label = f"catalog_id={body.catalog_id}"
    elif body.path:
        version = None
        if body.version not in (None, "", "latest"):
            version = _id(body.version, "version")
        row = await catalog_store.get_by_path(svc.cluster_pool, body.path, version)
        label = body.path + (f" version {version}" if version else "")
    else:
        raise unprocessable("either path or catalog_id is required")
    if row is None:
        raise not_found(f"Executable catalog entry not found: {label}")
    if (row["kind"] or "").lower() not in EXECUTABLE_KINDS:
        raise unprocessable(f"Catalog kind '{row['kind']}' is not executable")
    workload = {**(body.workload or {}), **(body.payload or {})}
    parent = _id(body.parent_execution_id, "parent_execution_id") if body.parent_execution_id is not None else None
    if body.execution_pool is not None and not valid_pool(body.execution_pool):
        raise unprocessable(f"execution_pool must be letters, digits, '-' or '_' (one subject token), "
                            f"got {body.execution_pool!r}")
    try:
        execution_id, outcome = await _start(orch, row["catalog_id"], workload, parent, body.execution_pool)
    except engine.PlaybookError as exc:
        raise unprocessable(f"playbook {row['path']} cannot run: {exc}") from None
    return json_response(ExecuteResponse(execution_id=str(execution_id), status="started",
                                         commands_generated=outcome.commands, path=row["path"],
                                         catalog_id=str(row["catalog_id"])))


async def _start(orch: Orchestrator, catalog_id: int, workload: dict[str, Any], parent: int | None,
                 pool: str | None) -> tuple[int, Any]:
    """A new execution touches nothing existing: optimistic (one statement), with the locked
    path kept for the rare case it falls back."""
    try:
        async with orch.optimistic(None) as txn:
            return await orch.start(txn, catalog_id=catalog_id, workload=workload, parent_execution_id=parent,
                                    execution_pool=pool)
    except Fallback:
        pass
    async with orch.transaction() as txn:
        return await orch.start(txn, catalog_id=catalog_id, workload=workload, parent_execution_id=parent,
                                execution_pool=pool)


async def post_event(request: web.Request) -> web.Response:
    svc = services(request)
    ev = normalise(await read_json(request, EventIn))
    require_owned(svc, ev.execution_id)
    done, _ = await _accept(request.app[ORCHESTRATOR], ev.execution_id, [ev], None, None)
    return json_response(EventAccepted(status="ok", event_id=done.event_ids[0],
                                       commands_generated=done.commands_generated, duplicate=done.duplicates > 0))


def _eager(body: BatchRequest, lease_seconds: float) -> Eager | None:
    offer = body.eager
    if offer is None:
        return None
    if not body.worker_id:
        raise bad_request("eager needs the batch's worker_id (the worker the commands are claimed for)")
    if not 1 <= offer.slots <= MAX_EAGER_SLOTS:
        raise unprocessable(f"eager.slots must be between 1 and {MAX_EAGER_SLOTS}, got {offer.slots}")
    return Eager(worker_id=body.worker_id, pool=offer.pool, slots=offer.slots, lease_seconds=lease_seconds)


async def _accept(orch: Orchestrator, execution_id: int, events: list[Any], key: str | None,
                  eager: Eager | None) -> tuple[Accepted, BatchAccepted]:
    """Events of one execution, optimistically when they allow it, else under the row lock.
    With an Idempotency-Key, returns the batch's answer too (logged as `batch.accepted`), or the
    first answer again when the key was answered before."""
    lease = orch.svc.settings.claim_lease_seconds
    try:
        async with orch.optimistic(execution_id, batch_key=(execution_id, key) if key else None) as txn:
            done = await accept_cached(orch, txn, execution_id, events, lease_seconds=lease, eager=eager)
            return done, _answer(orch, txn, execution_id, done, key, eager)
    except Fallback:
        if eager is not None:
            eager.claimed = []  # nothing of the optimistic attempt was written
    async with orch.transaction() as txn:
        done = await accept(orch, txn, execution_id, events, lease_seconds=lease, idempotency_key=key, eager=eager)
        if done.prior_answer is not None:
            return done, await _replayed(txn, done.prior_answer)
        return done, _answer(orch, txn, execution_id, done, key, eager)


def _answer(orch: Orchestrator, txn: Txn, execution_id: int, done: Accepted, key: str | None,
            eager: Eager | None) -> BatchAccepted:
    # The request id is a snowflake, as NoETL's: the id of the batch.accepted event when one is logged.
    request_id = orch.svc.mint_owned_id()
    answer = BatchAccepted(status="accepted", request_id=str(request_id), event_ids=done.event_ids,
                           commands_generated=done.commands_generated, duplicate=False, queue_depth=0,
                           idempotency_key=key)
    if eager is not None:
        answer.commands = [command_out(msgspec.structs.asdict(c), claimed=True) for c in eager.claimed]
    if key:
        logged = msgspec.to_builtins(msgspec.structs.replace(answer, commands=msgspec.UNSET))
        if eager is not None:
            # The log keeps the handed-over commands by id (their rows have the rest): a replay rebuilds them.
            logged.update(commands=None, command_ids=[str(c.command_id) for c in eager.claimed])
        txn.uow.append(NewEvent(event_id=request_id, execution_id=execution_id, event_type="batch.accepted",
                                node_name="events.batch", status="COMPLETED", payload=logged,
                                meta={"idempotency_key": key}))
    return answer


async def _replayed(txn: Txn, prior: dict[str, Any]) -> BatchAccepted:
    """An earlier answer again, with its handed-over commands rebuilt from their rows."""
    ids = prior.get("command_ids")
    answer = msgspec.convert({k: v for k, v in prior.items() if k not in ("commands", "command_ids")},
                             BatchAccepted)
    answer.duplicate = True
    if ids is not None:
        rows = [await command_store.get(txn.conn, int(i)) for i in ids]
        answer.commands = [command_out(r, claimed=True) for r in rows if r is not None]
    return answer


async def post_batch(request: web.Request) -> web.Response:
    """All events of a batch in one transaction; an Idempotency-Key replays the first answer."""
    svc = services(request)
    body = await read_json(request, BatchRequest)
    if not body.events:
        raise bad_request("events must be a non-empty list")
    if len(body.events) > MAX_BATCH_EVENTS:
        raise unprocessable(f"events has {len(body.events)} items; at most {MAX_BATCH_EVENTS} per batch")
    execution_id = _id(body.execution_id, "execution_id")
    require_owned(svc, execution_id)
    events = [normalise(e, default_execution_id=execution_id, default_worker=body.worker_id, where=f"events[{i}].")
              for i, e in enumerate(body.events)]
    for i, e in enumerate(events):
        if e.execution_id != execution_id:
            raise bad_request(f"events[{i}].execution_id differs from the batch's execution_id")
    key = request.headers.get("Idempotency-Key") or request.headers.get("X-Idempotency-Key")
    _, answer = await _accept(request.app[ORCHESTRATOR], execution_id, events, key,
                              _eager(body, svc.settings.claim_lease_seconds))
    return json_response(answer, status=202)


async def _cancel_one(orch: Orchestrator, txn: Txn, execution_id: int, reason: str, cascade: bool,
                      cancelled: list[str]) -> None:
    ex = await orch.lock(txn, execution_id)
    if ex is None or ex.status in TERMINAL:
        return
    row = NewEvent(event_id=orch.svc.mint_owned_id(), execution_id=execution_id,
                   event_type="execution.cancel_requested", node_name="cancel", status="INFO",
                   catalog_id=ex.catalog_id, payload={"reason": reason},
                   meta={"cancelled_by": "api", "cascade": cascade})
    txn.uow.append(row)
    outcome = await orch.advance(txn, ex, engine.cancel(), row.event_id)
    if outcome.finished is None:  # the engine always finishes on cancel; this keeps the promise regardless
        await orch.finish(txn, ex, "CANCELLED", None, reason, row.event_id)
    cancelled.append(str(execution_id))
    if cascade:
        for child in await execution_store.children(txn.conn, execution_id):
            await _cancel_one(orch, txn, child["execution_id"], reason, cascade, cancelled)


async def cancel(request: web.Request) -> web.Response:
    svc = services(request)
    execution_id = path_id(request, "execution_id")
    require_owned(svc, execution_id)
    body = await read_json(request, CancelRequest, allow_empty=True)
    orch = request.app[ORCHESTRATOR]
    async with orch.transaction() as txn:
        ex = await orch.lock(txn, execution_id)
        if ex is None:
            raise not_found(f"execution {execution_id} not found")
        if ex.status in TERMINAL:
            return json_response(CancelResponse(status="already_completed", execution_id=str(execution_id),
                                                cancelled_executions=[], message=f"execution is already {ex.status}"))
        cancelled: list[str] = []
        await _cancel_one(orch, txn, execution_id, body.reason or "cancelled via API", body.cascade, cancelled)
    return json_response(CancelResponse(status="cancelled", execution_id=str(execution_id),
                                        cancelled_executions=cancelled,
                                        message=f"cancelled {len(cancelled)} execution(s)"))


async def finalize(request: web.Request) -> web.Response:
    """Force a stuck execution to a terminal status (operator action)."""
    svc = services(request)
    execution_id = path_id(request, "execution_id")
    require_owned(svc, execution_id)
    body = await read_json(request, FinalizeRequest, allow_empty=True)
    status = (body.status or "FAILED").upper()
    if status not in ("COMPLETED", "FAILED"):
        raise unprocessable(f"status must be COMPLETED or FAILED, got {body.status!r}")
    orch = request.app[ORCHESTRATOR]
    async with orch.transaction() as txn:
        ex = await orch.lock(txn, execution_id)
        if ex is None:
            raise not_found(f"execution {execution_id} not found")
        if ex.status in TERMINAL:
            return json_response(FinalizeResponse(status="already_completed", execution_id=str(execution_id),
                                                  message=f"execution is already {ex.status}"))
        reason = body.reason or body.error or "finalized by operator"
        await orch.finish(txn, ex, status, None, reason if status == "FAILED" else None, execution_id)
    return json_response(FinalizeResponse(status="finalized", execution_id=str(execution_id),
                                          message=f"execution marked {status}"))


async def replay_state(request: web.Request) -> web.Response:
    svc = services(request)
    raw = query_str(request, "execution_id")
    if raw is None:
        raise bad_request("query parameter execution_id is required")
    execution_id = to_id(raw, "execution_id")
    require_owned(svc, execution_id)
    return json_response(await compare(svc.shard_pool, request.app[ORCHESTRATOR], execution_id))
