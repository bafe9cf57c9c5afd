"""Bearer-gated internal routes the outbox publisher and KEDA use (the auth middleware gates
/api/internal/*). Claims long-poll: an empty claim waits until this process commits an outbox row
(or the deadline) instead of the publisher hammering the database. A claim may carry the ids the
publisher published since its last claim: they are deleted in the same statement, so a steady
relay costs one transaction per batch; so are the rows the shard announced itself."""

from __future__ import annotations

import asyncio

from aiohttp import web

from noetl_common.errors import json_response, read_json
from noetl_common.openapi import Op, Param, route
from noetl_common.wire.internal import (OutboxClaim, OutboxClaimRequest, OutboxFailed, OutboxMarked, OutboxPending,
                                        OutboxPublished)

from ...handlers.params import query_int
from ...state import services
from ...store import outbox as store
from ..keys import ANNOUNCER, WAKEUPS

MAX_LIMIT = 1000
MAX_WAIT_MS = 30_000
RECHECK_SECONDS = 1.0  # rows whose backoff or lease ran out are found without a wake-up


def register(app: web.Application) -> None:
    route(app, "POST", "/api/internal/outbox/claim", claim, Op(
        summary="Claim the oldest due outbox rows (long-polls with wait_ms)", body=OutboxClaimRequest,
        body_required=False, ok=OutboxClaim, errors=(400, 422),
        query=(Param(name="limit", type=int), Param(name="wait_ms", type=int))))
    route(app, "POST", "/api/internal/outbox/mark-published", mark_published, Op(
        summary="Delete published outbox rows", body=OutboxPublished, ok=OutboxMarked, errors=(400, 422)))
    route(app, "POST", "/api/internal/outbox/mark-failed", mark_failed, Op(
        summary="Back off outbox rows that failed to publish", body=OutboxFailed, ok=OutboxMarked, errors=(400, 422)))
    route(app, "GET", "/api/internal/outbox/pending-count", pending_count, Op(
        summary="This shard's outbox backlog", ok=OutboxPending))


async def claim(request: web.Request) -> web.Response:
    svc = services(request)
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    wait_ms = query_int(request, "wait_ms", 0, 0, MAX_WAIT_MS)
    body = await read_json(request, OutboxClaimRequest, allow_empty=True)
    wakeups = request.app[WAKEUPS]
    signal = wakeups.outbox
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    announcer = request.app[ANNOUNCER]
    published = body.published
    pause = min(wakeups.claim_pause(loop.time()), wait_ms / 1000)
    if pause > 0:
        await signal.wait(signal.ticket(), pause)
    while True:
        ticket = signal.ticket()
        wakeups.claim_reading()
        # Rows the shard announced itself are deleted here, not relayed (prompt_announce).
        messages = await store.claim(svc.shard_pool, limit=limit, published=published + announcer.take_acked())
        published = []
        remaining = deadline - loop.time()
        if messages or remaining <= 0:
            break
        await signal.wait(ticket, min(remaining, RECHECK_SECONDS))
    wakeups.claim_read(loop.time(), found=len(messages), limit=limit)
    return json_response(OutboxClaim(shard=svc.settings.shard_index, items=messages))


async def mark_published(request: web.Request) -> web.Response:
    body = await read_json(request, OutboxPublished)
    count = await store.mark_published(services(request).shard_pool, body.ids)
    return json_response(OutboxMarked(marked=count))


async def mark_failed(request: web.Request) -> web.Response:
    body = await read_json(request, OutboxFailed)
    count = await store.mark_failed(services(request).shard_pool, [(f.id, f.error) for f in body.failures])
    return json_response(OutboxMarked(marked=count))


async def pending_count(request: web.Request) -> web.Response:
    svc = services(request)
    counts = await store.pending_count(svc.shard_pool)
    return json_response(OutboxPending(**counts, shard=svc.settings.shard_index))
