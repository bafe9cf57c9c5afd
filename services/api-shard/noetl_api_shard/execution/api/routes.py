"""Write-side routes: execute, events (single and batch), cancel, finalize, replay; plus wiring
of the read side and command claims."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from noetl_common import tracing
from noetl_common.errors import bad_request, decode_json, json_response, not_found, read_json, unprocessable
from noetl_common.ids import parse_id
from noetl_common.observability import execution_id_var
from noetl_common.openapi import IdParam, Op, Param, route
from noetl_common.wire.execution import (BatchAccepted, BatchRequest, CancelRequest, ClaimRequest, CommandOut,
                                         EventAccepted, EventPost, ExecuteRequest, ExecuteResponse,
                                         FinalizeRequest)
from noetl_common.wire.execution_views import CancelResponse, FinalizeResponse, ReplayReport
from noetl_common.vocabulary import EventType

from ...handlers.params import query_str, to_id
from ...state import SERVICES, services
from ...store import commands as command_store
from ...store.events import NewEvent
from ..keys import ORCHESTRATOR
from ..upkeep import reaper
from ..write.cancelling import cancel_one
from ..write.execution_cache import Loaded
from ..write.ingest import Accepted, accept, accept_cached
from ..write.orchestration import Orchestrator, TERMINAL
from ..write.ownership import owned_path_id, require_owned
from ..write.replay import compare
from ..write.starting import start_request
from ..write.txn import Eager, Fallback, Txn
from ..write.worker_events import ENGINE_WRITTEN, normalise
from . import batch_status, cleanup, commands_api, event_relay, execute_batch, queries, result_api
from .commands_api import command_out


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
        summary="Start a playbook execution", body=ExecuteRequest, ok=ExecuteResponse, errors=(400, 404, 422, 503),
        description="503 shard_draining: this shard takes no new executions (the router tries another)."))
    route(app, "POST", "/api/execute/batch", execute_batch.execute_batch, Op(
        summary="Start up to 1000 executions; each item is started as POST /api/execute would",
        body=execute_batch.BatchExecuteRequest, ok=execute_batch.BatchExecuteResponse, errors=(400, 422, 503),
        description="A bad item is an `error` result at its index (with the status it would have had "
                    "alone); the others still start."))
    route(app, "POST", "/api/executions/cleanup", cleanup.cleanup_stuck, Op(
        summary="Cancel this shard's PENDING/RUNNING executions older than older_than_minutes",
        body=cleanup.CleanupRequest, body_required=False, ok=cleanup.CleanupResponse, errors=(400, 422)))
    route(app, "POST", "/api/events", post_event, Op(
        summary="One worker event", body=EventPost, ok=EventAccepted, errors=(400, 404, 421, 422)))
    route(app, "POST", "/api/events/batch", post_batch, Op(
        summary="A batch of one execution's events, in one transaction", body=BatchRequest, ok=BatchAccepted,
        status=202, errors=(400, 404, 421, 422),
        description="An Idempotency-Key header makes a re-sent batch answer the first answer again. "
                    "request_id is the id of the batch.accepted event: GET /api/events/batch/{request_id}/status."))
    event_relay.register(app, ingest_event)
    batch_status.register(app)
    result_api.register(app)
    route(app, "POST", "/api/executions/{execution_id}/cancel", cancel, Op(
        summary="Cancel an execution (and, with cascade, its children)", body=CancelRequest, body_required=False,
        ok=CancelResponse, errors=(404, 421)))
    # NoETL's web UI calls this for Stop on its executions list (no NoETL server serves it): a cancel.
    route(app, "POST", "/api/executions/{execution_id}/stop", cancel, Op(
        summary="Stop an execution: the same as cancel", body=CancelRequest, body_required=False,
        ok=CancelResponse, errors=(404, 421)))
    route(app, "POST", "/api/executions/{execution_id}/finalize", finalize, Op(
        summary="Force an execution to a terminal status", body=FinalizeRequest, body_required=False,
        ok=FinalizeResponse, errors=(404, 421, 422)))
    route(app, "GET", "/api/replay/state", replay_state, Op(
        summary="Replay an execution's log and compare with the stored state", ok=ReplayReport,
        query=(Param(name="execution_id", type=IdParam, required=True),), errors=(400, 404, 421)))
    reaper.install(app, app[ORCHESTRATOR], interval_seconds=settings.reaper_interval_seconds,
                   unclaimed_after_seconds=settings.unclaimed_after_seconds)


def _id(value: Any, field: str) -> int:
    try:
        return parse_id(value, field)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


async def execute(request: web.Request) -> web.Response:
    body = await read_json(request, ExecuteRequest)
    started = await start_request(services(request), request.app[ORCHESTRATOR], body)
    execution_id_var.set(started.execution_id)
    # Also as a header, so the router can name the execution on its own span and log lines.
    return json_response(started, headers={"X-Execution-ID": started.execution_id})


async def post_event(request: web.Request) -> web.Response:
    return json_response(await ingest_event(request.app[ORCHESTRATOR], await request.read()))


async def ingest_event(orch: Orchestrator, raw: bytes) -> EventAccepted:
    """One event, from its request body: what POST /api/events answers, or the ApiError it raises
    (the router's relay of several such bodies takes each through here)."""
    svc = orch.svc
    started = time.perf_counter()
    ev = normalise(decode_json(raw, EventPost))
    execution_id_var.set(str(ev.execution_id))  # this request's log lines, whoever sent it
    require_owned(svc, ev.execution_id)
    if ev.event_type in ENGINE_WRITTEN:  # a repeat of the engine's own: taken, not logged
        return EventAccepted(status="ok", event_id=None, commands_generated=0, duplicate=True)
    done, _ = await _accept(orch, ev.execution_id, [ev], None, None, batch=False)
    svc.metrics.ingest.observe(time.perf_counter() - started)
    return EventAccepted(status="ok", event_id=done.event_ids[0] if done.event_ids else None,
                         commands_generated=done.commands_generated, duplicate=done.duplicates > 0)


def _eager(body: BatchRequest, lease_seconds: float) -> Eager | None:
    offer = body.eager
    if offer is None:
        return None
    if not body.worker_id:
        raise bad_request("eager needs the batch's worker_id (the worker the commands are claimed for)")
    return Eager(worker_id=body.worker_id, pool=offer.pool, slots=offer.slots, lease_seconds=lease_seconds)


async def _accept(orch: Orchestrator, execution_id: int, events: list[Any], key: str | None,
                  eager: Eager | None, *, batch: bool = True) -> tuple[Accepted, BatchAccepted]:
    """Events of one execution, optimistically when they allow it, else under the row lock.
    With an Idempotency-Key, returns the batch's answer too (logged as `batch.accepted`), or the
    first answer again when the key was answered before."""
    lease = orch.svc.settings.claim_lease_seconds
    # The request id is a snowflake, as NoETL's: the id of the batch.accepted event every batch
    # logs, so GET /api/events/batch/{request_id}/status finds it (and it routes by hash). Minted
    # first, so the log reads in causal order: the batch accepted, its events, what they caused.
    request_id = orch.svc.mint_owned_id() if batch else 0
    try:
        async with orch.optimistic(execution_id, batch_key=(execution_id, key) if key else None) as txn:
            done = await accept_cached(orch, txn, execution_id, events, lease_seconds=lease, eager=eager)
            return done, _answer(txn, execution_id, request_id, done, key, eager, batch)
    except Fallback:
        if eager is not None:
            eager.claimed = []  # nothing of the optimistic attempt was written
    async with orch.transaction() as txn:
        done = await accept(orch, txn, execution_id, events, lease_seconds=lease, idempotency_key=key, eager=eager)
        if done.prior_answer is not None:
            return done, await _replayed(txn, done.prior_answer)
        return done, _answer(txn, execution_id, request_id, done, key, eager, batch)


def _answer(txn: Txn, execution_id: int, request_id: int, done: Accepted, key: str | None,
            eager: Eager | None, batch: bool) -> BatchAccepted:
    answer = BatchAccepted(status="accepted", request_id=str(request_id), event_ids=done.event_ids,
                           commands_generated=done.commands_generated, duplicate=False, queue_depth=0,
                           idempotency_key=key)
    if done.closed:
        answer.ended = True
    if eager is not None:
        answer.commands = [command_out(msgspec.structs.asdict(c), claimed=True) for c in eager.claimed]
        traceparent = tracing.current_traceparent()
        if traceparent:
            # A handed-over command's span is a child of this request's span, as a notified one
            # is of the span that wrote its notification (answer only: the row stays as it was).
            for command in answer.commands:
                command.meta[tracing.TRACEPARENT] = traceparent
    if batch and not done.closed:  # an ended execution's log ends at its terminal event
        logged = msgspec.to_builtins(msgspec.structs.replace(answer, commands=msgspec.UNSET))
        if eager is not None:
            # The log keeps the handed-over commands by id (their rows have the rest): a replay rebuilds them.
            logged.update(commands=None, command_ids=[str(c.command_id) for c in eager.claimed])
        txn.uow.append(NewEvent(event_id=request_id, execution_id=execution_id, event_type=EventType.BATCH_ACCEPTED,
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
    started = time.perf_counter()
    body = await read_json(request, BatchRequest)  # 1..MAX_BATCH_EVENTS events, eager.slots 1..64: the Struct's
    execution_id = _id(body.execution_id, "execution_id")
    execution_id_var.set(str(execution_id))  # this request's log lines, whoever sent it
    require_owned(svc, execution_id)
    events = [normalise(e, default_execution_id=execution_id, default_worker=body.worker_id, where=f"events[{i}].")
              for i, e in enumerate(body.events)]
    for i, e in enumerate(events):
        if e.execution_id != execution_id:
            raise bad_request(f"events[{i}].execution_id differs from the batch's execution_id")
    events = [e for e in events if e.event_type not in ENGINE_WRITTEN]  # repeats of the engine's own
    key = request.headers.get("Idempotency-Key") or request.headers.get("X-Idempotency-Key")
    _, answer = await _accept(request.app[ORCHESTRATOR], execution_id, events, key,
                              _eager(body, svc.settings.claim_lease_seconds))
    svc.metrics.ingest.observe(time.perf_counter() - started)
    return json_response(answer, status=202)


async def _locked(orch: Orchestrator, txn: Txn, execution_id: int) -> Loaded:
    ex = await orch.lock(txn, execution_id)
    if ex is None:
        raise not_found(f"execution {execution_id} not found")
    return ex


async def cancel(request: web.Request) -> web.Response:
    execution_id = owned_path_id(request)
    body = await read_json(request, CancelRequest, allow_empty=True)
    orch = request.app[ORCHESTRATOR]
    async with orch.transaction() as txn:
        ex = await _locked(orch, txn, execution_id)
        if ex.status in TERMINAL:
            return json_response(CancelResponse(status="already_completed", execution_id=str(execution_id),
                                                cancelled_executions=[], message=f"execution is already {ex.status}"))
        cancelled: list[str] = []
        await cancel_one(orch, txn, execution_id, body.reason or "cancelled via API", body.cascade, cancelled)
    return json_response(CancelResponse(status="cancelled", execution_id=str(execution_id),
                                        cancelled_executions=cancelled,
                                        message=f"cancelled {len(cancelled)} execution(s)"))


async def finalize(request: web.Request) -> web.Response:
    """Force a stuck execution to a terminal status (operator action)."""
    execution_id = owned_path_id(request)
    body = await read_json(request, FinalizeRequest, allow_empty=True)
    status = (body.status or "FAILED").upper()
    if status not in ("COMPLETED", "FAILED"):
        raise unprocessable(f"status must be COMPLETED or FAILED, got {body.status!r}")
    orch = request.app[ORCHESTRATOR]
    async with orch.transaction() as txn:
        ex = await _locked(orch, txn, execution_id)
        if ex.status in TERMINAL:
            return json_response(FinalizeResponse(status="already_completed", execution_id=str(execution_id),
                                                  message=f"execution is already {ex.status}"))
        reason = body.reason or body.error or "finalized by operator"
        await orch.finish(txn, ex, status=status, error=reason if status == "FAILED" else None)
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
