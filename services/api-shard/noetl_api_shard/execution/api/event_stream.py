"""GET /api/executions/{id}/events/stream: Server-Sent Events. Replays the log after
`Last-Event-ID` (header, or `?last_event_id=`) or from the start, then follows new events until
the terminal event (and what was committed with it), and ends with an `end` event. A follower is
woken only when a transaction of its own execution commits (re-checked each second), so followers
cost in proportion to the executions that change, and no writes at all."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
from aiohttp import web

from noetl_common.errors import not_found
from noetl_common.openapi import Op, Param, route

from ...handlers.params import to_id
from ...state import ShardServices, services
from ...store import events as event_store, executions as execution_store
from ...store.projections import TERMINAL as TERMINAL_EVENTS
from ..keys import WAKEUPS
from ..write.ownership import owned_path_id
from ..write.wakeups import Signal
from .views import event_view

PAGE = 500
RECHECK_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0


def register(app: web.Application) -> None:
    route(app, "GET", "/api/executions/{execution_id}/events/stream", stream_events, Op(
        summary="Server-Sent Events of an execution: its log, then live, then an `end` event",
        media="text/event-stream", ok=str, errors=(400, 404, 421),
        query=(Param(name="last_event_id", description="resume after this event (or the Last-Event-ID header)"),)))


def _resume_after(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    return to_id(raw, "Last-Event-ID") if raw else None


async def stream_events(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    execution_id = owned_path_id(request)
    after = _resume_after(request)
    with request.app[WAKEUPS].following(execution_id) as signal:
        ticket = signal.ticket()
        rows = await event_store.log_after(svc.shard_pool, execution_id, after, PAGE)
        # An execution's log starts with its first event: only an empty read asks whether it exists.
        if not rows and await execution_store.status(svc.shard_pool, execution_id) is None:
            raise not_found(f"execution {execution_id} not found")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        return await _follow(svc, response, signal, execution_id, after, (ticket, rows))


async def _follow(svc: ShardServices, response: web.StreamResponse, signal: Signal, execution_id: int,
                  after: int | None, first: tuple[asyncio.Event, list[asyncpg.Record]]) -> web.StreamResponse:
    """`first`: the ticket taken before the first read, and what that read found."""
    last_write = time.monotonic()
    finished: str | None = None
    read: tuple[asyncio.Event, list[asyncpg.Record]] | None = first
    try:
        while True:
            if read is None:
                ticket = signal.ticket()
                rows = await event_store.log_after(svc.shard_pool, execution_id, after, PAGE)
            else:
                (ticket, rows), read = read, None
            ended = None
            frames = []  # one write (one chunk, one syscall) per read, not one per event
            for row in rows:
                after = row["event_id"]
                frames.append(_frame(str(after), row["event_type"], event_view(row)))
                ended = ended or TERMINAL_EVENTS.get(row["event_type"])
            if ended:  # the rest of the terminal event's page went out too (same transaction's bookkeeping)
                frames.append(_frame(None, "end", {"execution_id": str(execution_id), "status": ended}))
            if frames:
                await response.write(b"".join(frames))
            if ended:
                return response
            if rows:
                last_write = time.monotonic()
                if len(rows) == PAGE:
                    continue
            elif finished:
                # Resumed past the terminal event (the status commits with it, and a re-read after
                # seeing the status found nothing newer): nothing more will come.
                await response.write(_frame(None, "end", {"execution_id": str(execution_id), "status": finished}))
                return response
            else:
                status = await execution_store.status(svc.shard_pool, execution_id)
                if status in execution_store.TERMINAL:
                    finished = status
                    continue
            if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                last_write = time.monotonic()
            await signal.wait(ticket, RECHECK_SECONDS)
    except ConnectionResetError:
        return response  # the client went away


def _frame(event_id: str | None, event: str, data: object) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n"
