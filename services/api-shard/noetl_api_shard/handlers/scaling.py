"""Online scaling: commit a shard-map epoch (`POST /api/internal/shard-map/epochs`) and report
what this shard holds (`GET /api/internal/shard/status`). Both bearer-gated (internal)."""

from __future__ import annotations

from aiohttp import web

from noetl_common.config import MAX_SHARD_COUNT
from noetl_common.errors import json_response, read_json, unprocessable
from noetl_common.minting import now_ms
from noetl_common.openapi import Op, route
from noetl_common.wire.shard import EpochRequest, EpochResponse, ShardStatus

from ..map_keeper import KEEPER
from ..state import services
from ..store import holdings as holdings_store
from ..store import shard_map as shard_map_store

MAX_GRACE_MS = 3_600_000


def register(app: web.Application) -> None:
    route(app, "POST", "/api/internal/shard-map/epochs", commit_epoch, Op(
        summary="Commit a shard-map epoch (grow or drain); idempotent for the same count", body=EpochRequest,
        ok=EpochResponse, errors=(400, 422),
        description="Takes effect grace_ms from now (at least NOETL_SHARD_EPOCH_GRACE_MS, the minting horizon)."))
    route(app, "GET", "/api/internal/shard/status", shard_status, Op(
        summary="What this shard holds, and whether it is draining or drained", ok=ShardStatus))


async def commit_epoch(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request, EpochRequest)
    if not 1 <= body.shard_count <= MAX_SHARD_COUNT:
        raise unprocessable(f"shard_count must be between 1 and {MAX_SHARD_COUNT}, got {body.shard_count}")
    grace_ms = svc.settings.epoch_grace_ms if body.grace_ms is None else body.grace_ms
    # Every shard mints only within NOETL_SHARD_EPOCH_GRACE_MS of its last map read; an epoch
    # sooner than that could start under ids already minted for the old count.
    if not svc.settings.epoch_grace_ms <= grace_ms <= MAX_GRACE_MS:
        raise unprocessable(f"grace_ms must be between {svc.settings.epoch_grace_ms} "
                            f"(NOETL_SHARD_EPOCH_GRACE_MS, the minting horizon) and {MAX_GRACE_MS}, got {grace_ms}")
    shard_map, created = await shard_map_store.commit_epoch(svc.cluster_pool, body.shard_count, grace_ms, now_ms)
    await request.app[KEEPER].reload()  # this shard need not wait for its own NOTIFY
    newest = shard_map.newest()
    return json_response(EpochResponse(epochs=list(shard_map.epochs), effective_from_ms=newest.effective_from_ms,
                                       shard_count=newest.shard_count, created=created))


async def shard_status(request: web.Request) -> web.Response:
    svc = services(request)
    await request.app[KEEPER].reload()
    shard_map, index, now = svc.shard_map.current, svc.settings.shard_index, now_ms()
    held = await holdings_store.holdings(svc.shard_pool)
    draining = shard_map.draining(index, now)
    return json_response(ShardStatus(
        shard=index, epoch=shard_map.in_force(now), pending_epoch=shard_map.pending(now),
        shard_count_now=shard_map.count_at(now), draining=draining,
        running_executions=held.running_executions, total_executions=held.total_executions,
        outbox_pending=held.outbox_pending,
        drained=draining and held.running_executions == 0 and held.outbox_pending == 0))
