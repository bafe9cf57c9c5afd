"""NoETL's batch-status routes for the request id `POST /api/events/batch` answers:
`GET /api/events/batch/{request_id}/status` and `.../stream` (SSE).

A batch is accepted and processed in one transaction here (NoETL's Python server queues the
processing), and the request id is the id of the `batch.accepted` event logged in it, minted by
this shard (so it routes by hash like any id). A request id the shard answered is therefore
always `completed`; one it never answered is 404 (status) or a `not_found` frame (stream)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response, not_found
from noetl_common.openapi import Op, Param, route
from noetl_common.vocabulary import EventType

from ...handlers.params import query_str
from ...state import ShardServices, services
from ...store import events as event_store
from ..write.ownership import owned_path_id
from .views import iso

DEFAULT_STREAM_TIMEOUT = 30.0
MAX_STREAM_TIMEOUT = 3600.0


class BatchStatus(msgspec.Struct, kw_only=True):
    """NoETL's batch status body (also each `status` frame of the stream)."""

    request_id: str
    state: str                       # completed (or not_found, in a stream frame)
    status: str                      # COMPLETED | NOT_FOUND
    execution_id: str | None = None
    error_code: str | None = None
    message: str | None = None
    commands_generated: int = 0
    idempotency_key: str | None = None
    event_ids: list[Any] = []
    updated_at: str | None = None


def register(app: web.Application) -> None:
    route(app, "GET", "/api/events/batch/{request_id}/status", batch_status, Op(
        summary="Status of a POST /api/events/batch request, by its request_id", ok=BatchStatus,
        errors=(400, 404, 421)))
    route(app, "GET", "/api/events/batch/{request_id}/stream", batch_stream, Op(
        summary="The same status as server-sent events (`event: status`), ending at a final state",
        media="text/event-stream", errors=(400, 421),
        query=(Param(name="timeout_seconds", type=Annotated[float, msgspec.Meta(gt=0, le=MAX_STREAM_TIMEOUT)],
                     description="default 30"),),
        description="An unknown request id is a `not_found` frame, not a 404."))


async def _lookup(svc: ShardServices, request_id: int) -> dict[str, Any] | None:
    row = await event_store.get(svc.shard_pool, request_id)
    if row is None or row["event_type"] != EventType.BATCH_ACCEPTED:
        return None
    answer = row["payload"] or {}
    return {"request_id": str(request_id), "execution_id": str(row["execution_id"]), "state": "completed",
            "status": "COMPLETED", "error_code": None, "message": None,
            "commands_generated": answer.get("commands_generated", 0),
            "idempotency_key": (row["meta"] or {}).get("idempotency_key"),
            "event_ids": answer.get("event_ids", []), "updated_at": iso(row["created_at"])}


def _request_id(request: web.Request) -> tuple[ShardServices, int]:
    svc = services(request)
    request_id = owned_path_id(request, "request_id")
    return svc, request_id


async def batch_status(request: web.Request) -> web.Response:
    svc, request_id = _request_id(request)
    body = await _lookup(svc, request_id)
    if body is None:
        raise not_found(f"batch request {request_id} not found")
    return json_response(body)


def _timeout(request: web.Request) -> float:
    raw = query_str(request, "timeout_seconds")
    if raw is None:
        return DEFAULT_STREAM_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"query parameter timeout_seconds must be a number, got {raw!r}") from None
    if not 0 < value <= MAX_STREAM_TIMEOUT:
        raise bad_request(f"query parameter timeout_seconds must be > 0 and <= {MAX_STREAM_TIMEOUT:g}, got {raw}")
    return value


async def batch_stream(request: web.Request) -> web.StreamResponse:
    """NoETL's frames (`event: status`, `data: <status body>`); ends at a final state. The state is
    final at once here, so `timeout_seconds` (validated like NoETL's) bounds nothing in practice."""
    svc, request_id = _request_id(request)
    _timeout(request)
    body = await _lookup(svc, request_id)
    frame = body or {"request_id": str(request_id), "state": "not_found", "status": "NOT_FOUND",
                     "message": f"batch request {request_id} not found"}
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    try:
        await response.write(b"event: status\ndata: " + msgspec.json.encode(frame) + b"\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return response
