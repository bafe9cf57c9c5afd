"""NoETL's frames routes: a worker running a frame of a cursor loop claims it (a lease), heartbeats
while the frame's work runs, and commits it. Each request is one transaction of its own on the
shard's write pool: the frame row locked, the decision (frames.machine), the row updated and the
frame's events logged. The execution's state is not touched (frames are the runtime's record; the
engine hears of the frame's work through its command's outcome, as of any command)."""

from __future__ import annotations

from typing import Any, Mapping

from aiohttp import web

from noetl_common.errors import ApiError, json_response, not_found, read_json
from noetl_common.observability import execution_id_var
from noetl_common.openapi import Op, route
from noetl_common.vocabulary import TERMINAL_STATUSES, EventType
from noetl_common.wire.frames import (FrameClaimRequest, FrameClaimResponse, FrameCommitRequest,
                                      FrameHeartbeatRequest, FrameOut, FrameResponse)

from ..execution.write.ownership import owned_path_id
from ..state import ShardServices, services
from ..store import frames as store
from . import machine
from .machine import ClaimAction

STAGE_OPEN = ("OPEN", "RUNNING")


def register(app: web.Application) -> None:
    route(app, "POST", "/api/stages/{stage_id}/frames/claim", claim_frames, Op(
        summary="Claim frames of a cursor loop's stage (a lease each); mints the frame a cursor's claim key names",
        body=FrameClaimRequest, ok=FrameClaimResponse, errors=(400, 404, 409, 421, 422),
        description="409 stage_not_open (the loop or its execution ended), frame_claim_conflict (another "
                    "worker's lease is live), frame_already_terminal, frame_attempts_exhausted."))
    route(app, "POST", "/api/frames/{frame_id}/heartbeat", heartbeat_frame, Op(
        summary="Extend a held frame's lease (frame.started the first time it says RUNNING, else frame.heartbeat)",
        body=FrameHeartbeatRequest, ok=FrameResponse, errors=(400, 404, 409, 421, 422)))
    route(app, "POST", "/api/frames/{frame_id}/commit", commit_frame, Op(
        summary="End a held frame: frame.committed (COMPLETED) or frame.failed (FAILED)",
        body=FrameCommitRequest, ok=FrameResponse, errors=(400, 404, 409, 421, 422)))


def frame_out(row: Mapping[str, Any], event_id: int | None = None) -> FrameOut:
    lease = row["lease_until"]
    return FrameOut(frame_id=row["frame_id"], stage_id=row["stage_id"], execution_id=row["execution_id"],
                    status=row["status"], cursor=row["cursor"] or {},
                    lease_until=lease.isoformat() if lease is not None else None, owner_worker=row["owner_worker"],
                    parent_frame_id=row["parent_frame_id"], command_id=row["command_id"],
                    claimed_event_id=row["claimed_event_id"], terminal_event_id=row["terminal_event_id"],
                    row_count=row["row_count"] or 0, output_ref=row["output_ref"],
                    events_emitted=row["events_emitted"] or 0, attempts=row["attempts"], event_id=event_id)


def _view(row: Mapping[str, Any] | None) -> machine.Frame | None:
    if row is None:
        return None
    return machine.Frame(frame_id=row["frame_id"], status=row["status"], owner_worker=row["owner_worker"],
                         lease_until=row["lease_until"], attempts=row["attempts"])


def _event(svc: ShardServices, frame: Mapping[str, Any], context: Mapping[str, Any], event_type: EventType,
           status: str, worker: str, *, meta: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
           event_id: int | None = None) -> store.FrameEvent:
    """A frame event with NoETL's meta (ids as strings, informative, not actionable)."""
    base: dict[str, Any] = {"frame_id": str(frame["frame_id"]), "stage_id": str(frame["stage_id"]),
                            "worker_id": worker, "actionable": False, "informative": True}
    if frame["parent_frame_id"] is not None:
        base["parent_frame_id"] = str(frame["parent_frame_id"])
    if frame["command_id"] is not None:
        base["command_id"] = str(frame["command_id"])
    return store.FrameEvent(event_id=event_id or svc.mint_owned_id(), execution_id=frame["execution_id"],
                            event_type=event_type, node_name=context["step_name"], status=status,
                            catalog_id=context["catalog_id"], worker_id=worker, stage_id=frame["stage_id"],
                            frame_id=frame["frame_id"], payload=result or {"status": status},
                            meta={**base, **(meta or {})})


def _command_id(value: int | str | None) -> int | None:
    return int(value) if value is not None else None


async def claim_frames(request: web.Request) -> web.Response:
    svc = services(request)
    stage_id = owned_path_id(request, "stage_id")
    body = await read_json(request, FrameClaimRequest)
    worker = body.worker_id.strip()
    command_id = _command_id(body.command_id)
    key = machine.claim_key(body.cursor)
    claimed: list[FrameOut] = []
    exhausted = False
    async with svc.write_pool.acquire() as conn, conn.transaction():
        stage = await store.stage(conn, stage_id)
        if stage is None:
            raise not_found(f"stage not found: {stage_id}")
        execution_id = stage["execution_id"]
        execution_id_var.set(str(execution_id))
        if stage["status"] not in STAGE_OPEN or stage["execution_status"] in TERMINAL_STATUSES:
            raise ApiError(409, f"stage {stage_id} is {stage['status']} (execution {stage['execution_status']}): "
                                "it takes no claims", "stage_not_open", stage_status=stage["status"])
        policy = body.frame_policy or stage["frame_policy"] or {}
        events: list[store.FrameEvent] = []
        # A claim key names one frame: asking for more cannot find another.
        for _ in range(1 if key is not None else body.requested_count):
            if key is not None:
                row = await store.by_key(conn, execution_id, stage_id, *key)
            else:
                row = await store.claimable(conn, execution_id, stage_id)
            action = machine.on_claim(_view(row), worker, stage["db_now"], machine.max_attempts_of(policy))
            if action is ClaimAction.MINT:
                row = await store.insert(conn, frame_id=svc.mint_owned_id(), stage_id=stage_id, execution_id=execution_id,
                                         parent_frame_id=await store.latest(conn, execution_id, stage_id),
                                         cursor=body.cursor, command_id=command_id, tenant_id=stage["tenant_id"],
                                         organization_id=stage["organization_id"])
                if row is None:  # minted by a concurrent claim a moment ago: that one holds it
                    raise ApiError(409, f"frame {key} of stage {stage_id} was just claimed by another request",
                                   "frame_claim_conflict", stage_id=str(stage_id))
            assert row is not None  # every action but MINT comes from a row
            if action is ClaimAction.RENEW:
                row = await store.extend(conn, row["frame_id"], execution_id, lease_seconds=body.lease_seconds)
                claimed.append(frame_out(row, row["claimed_event_id"]))
                continue
            if action in (ClaimAction.RECLAIM, ClaimAction.EXHAUSTED):
                events.append(_event(svc, row, stage, EventType.FRAME_ABANDONED, "ABANDONED",
                                     row["owner_worker"] or worker, meta={
                                         "previous_owner_worker": row["owner_worker"], "reclaimer_worker": worker,
                                         "lease_until": str(row["lease_until"]), "reason": "lease_expired",
                                         "previous_attempt": row["attempts"], "recovery": machine.recovery(policy)}))
            if action is ClaimAction.EXHAUSTED:
                failed = await store.finish(conn, row["frame_id"], execution_id, status="FAILED", cursor=None,
                                            row_count=None, output_ref=None, events_emitted=None,
                                            terminal_event_id=svc.mint_owned_id())
                events.append(_event(svc, failed, stage, EventType.FRAME_FAILED, "FAILED", worker,
                                     result={"status": "FAILED", "context": {"error": "attempts exhausted"}},
                                     meta={"reason": "attempts_exhausted", "recovery": machine.recovery(policy)},
                                     event_id=failed["terminal_event_id"]))
                exhausted = True  # answered after the commit: the refusal must not undo what it records
                break
            row = await store.claim(conn, row["frame_id"], execution_id, worker=worker, command_id=command_id,
                                    lease_seconds=body.lease_seconds, claimed_event_id=svc.mint_owned_id())
            events.append(_event(svc, row, stage, EventType.FRAME_DISPATCHED, "CLAIMED", worker,
                                 event_id=row["claimed_event_id"], meta={
                                     "attempt": row["attempts"], "frame_policy": policy,
                                     "recovery": machine.recovery(policy), "locality": body.locality}))
            claimed.append(frame_out(row, row["claimed_event_id"]))
        if events:
            await store.log(conn, events)
    if exhausted:
        raise ApiError(409, f"frame {key} of stage {stage_id} lapsed after {machine.max_attempts_of(policy)} "
                            "attempt(s) (NoETL's recovery policy): it failed", "frame_attempts_exhausted",
                       stage_id=str(stage_id))
    return json_response(FrameClaimResponse(frames=claimed))


async def heartbeat_frame(request: web.Request) -> web.Response:
    svc = services(request)
    frame_id = owned_path_id(request, "frame_id")
    body = await read_json(request, FrameHeartbeatRequest)
    worker = body.worker_id.strip()
    async with svc.write_pool.acquire() as conn, conn.transaction():
        row = await store.locked(conn, frame_id)
        event_type = machine.on_heartbeat(_view(row), frame_id, worker, body.status)
        assert row is not None  # on_heartbeat refuses a missing frame
        execution_id_var.set(str(row["execution_id"]))
        updated = await store.extend(conn, frame_id, row["execution_id"], lease_seconds=body.lease_seconds,
                                     status=body.status)
        event = _event(svc, updated, row, event_type, body.status, worker,
                       meta={"lease_until": str(updated["lease_until"])})
        await store.log(conn, [event])
    return json_response(FrameResponse(frame=frame_out(updated, event.event_id)))


async def commit_frame(request: web.Request) -> web.Response:
    svc = services(request)
    frame_id = owned_path_id(request, "frame_id")
    body = await read_json(request, FrameCommitRequest)
    worker = body.worker_id.strip()
    async with svc.write_pool.acquire() as conn, conn.transaction():
        row = await store.locked(conn, frame_id)
        status, event_type = machine.on_commit(_view(row), frame_id, worker, body.status)
        assert row is not None  # on_commit refuses a missing frame
        execution_id_var.set(str(row["execution_id"]))
        updated = await store.finish(conn, frame_id, row["execution_id"], status=status, cursor=body.cursor,
                                     row_count=body.row_count, output_ref=body.output_ref,
                                     events_emitted=body.events_emitted, terminal_event_id=svc.mint_owned_id())
        result: dict[str, Any] = {"status": status}
        if body.output_ref:
            result["reference"] = body.output_ref
        if body.error:
            result["context"] = {"error": body.error}
        event = _event(svc, updated, row, event_type, status, worker, result=result,
                       event_id=updated["terminal_event_id"],
                       meta={"row_count": body.row_count, "events_emitted": body.events_emitted,
                             "cursor": body.cursor, "recovery": machine.recovery(row["frame_policy"])})
        await store.log(conn, [event])
    return json_response(FrameResponse(frame=frame_out(updated, event.event_id)))
