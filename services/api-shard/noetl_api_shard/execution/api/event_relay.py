"""POST /api/internal/events/relay: single `POST /api/events` bodies the router received together
for this shard, sent on as one request (bearer-gated by the internal auth middleware). Each is
taken as if it had come alone, all at once (their writes share the group commit), and answered at
its index with the status and JSON it would have had alone: one bad event is its own 4xx, never
its neighbours'. What the router saves is an HTTP exchange per event, on both sides."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, Callable

import msgspec
from aiohttp import web

from noetl_common import tracing
from noetl_common.errors import api_error, json_response, read_json
from noetl_common.openapi import Op, route
from noetl_common.wire.execution import EventAccepted
from noetl_common.wire.internal import RELAY_PATH, RelayAnswer, RelayAnswers, RelayedEvent, RelayedEvents

from ...map_keeper import KEEPER
from ..keys import ORCHESTRATOR
from ..write.orchestration import Orchestrator

Ingest = Callable[[Orchestrator, bytes], Awaitable[EventAccepted]]
_encode = msgspec.json.Encoder().encode


def register(app: web.Application, ingest: Ingest) -> None:
    async def relay(request: web.Request) -> web.Response:
        body = await read_json(request, RelayedEvents)
        # Each event mints ids as POST /api/events does (fresh_map_for_writes skips internal routes).
        await request.app[KEEPER].ensure_fresh()
        orch = request.app[ORCHESTRATOR]
        with orch.group.held(orch.svc.write_pool):
            tasks = [asyncio.ensure_future(_one(orch, ingest, item)) for item in body.items]
            await asyncio.sleep(0)  # each runs up to its write: they go out in one statement
        answers = await asyncio.gather(*tasks)
        return json_response(RelayAnswers(items=list(answers)))

    route(app, "POST", RELAY_PATH, relay, Op(
        summary="Single events the router received together, each answered as POST /api/events would",
        body=RelayedEvents, ok=RelayAnswers, errors=(400, 422)))


async def _one(orch: Orchestrator, ingest: Ingest, item: RelayedEvent) -> RelayAnswer:
    # A task of its own (gather): its execution id in the log context stays its own.
    with _span(item.traceparent):
        try:
            accepted = await ingest(orch, bytes(item.body))
        except Exception as exc:  # each answered as the error middleware would
            err = api_error(exc, "POST /api/events (relayed)")
            retry_after = (err.headers or {}).get("Retry-After")
            return RelayAnswer(status=err.status, body=msgspec.Raw(_encode(err.body())), retry_after=retry_after)
    return RelayAnswer(status=200, body=msgspec.Raw(_encode(accepted)))


def _span(traceparent: str | None) -> contextlib.AbstractContextManager:
    """The SERVER span a lone POST /api/events would have had, child of its router span."""
    parent = tracing.context_from(traceparent)
    if parent is None:
        return contextlib.nullcontext()
    return tracing.tracer("noetl.http").start_as_current_span(
        "POST /api/events", context=parent, kind=tracing.SpanKind.SERVER,
        attributes={"http.request.method": "POST", "http.route": "/api/events", "noetl.relayed": True})
