"""NoETL-compatible health, shard diagnostics and the shard map."""

from __future__ import annotations

from noetl_common.shard_query import parse_shard_query

import asyncio
import importlib.metadata
import time
from typing import Callable

import asyncpg
from aiohttp import web

from noetl_common.db import ping
from noetl_common.errors import ApiError, json_response
from noetl_common.openapi import Op, Param, SignedIdParam, route
from noetl_common.shard_query import ShardCountParam
from noetl_common.sharding import SHARD_HASH_SEED, shard_for
from noetl_common.wire.shard import ApiHealth, ServerConfig, ShardEndpoint, ShardInfo, ShardMapWithShards

from ..execution.keys import ANNOUNCER
from ..map_keeper import KEEPER
from ..state import services
from ..store import shard_map as shard_map_store

PROBE_TIMEOUT_SECONDS = 2.0


def register(app: web.Application) -> None:
    route(app, "GET", "/api/health", api_health, Op(
        summary="NoETL health: both databases answer (503, same body, when not)", ok=ApiHealth,
        other=((503, ApiHealth),)))
    route(app, "GET", "/api/runtime/shard-info", shard_info, Op(
        summary="Which shard an execution id hashes to (drift guard)", ok=ShardInfo, errors=(400,),
        query=(Param(name="execution_id", type=SignedIdParam, required=True),
               Param(name="shard_count", type=ShardCountParam, required=True))))
    route(app, "GET", "/api/shard-map", shard_map, Op(
        summary="The shard map's epochs and every known shard's URL (discovery)", ok=ShardMapWithShards,
        errors=(503,)))


def _version() -> str:
    try:
        return importlib.metadata.version("noetl-api-shard")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _probe(pool_getter: Callable[[], asyncpg.Pool]) -> bool:
    try:
        await ping(pool_getter(), PROBE_TIMEOUT_SECONDS)
        return True
    except Exception:  # any failure means "disconnected"; /readyz carries the reason
        return False


async def api_health(request: web.Request) -> web.Response:
    svc = services(request)
    cluster_ok, shard_ok = await asyncio.gather(_probe(lambda: svc.cluster_pool), _probe(lambda: svc.shard_pool))
    healthy = cluster_ok and shard_ok
    body = ApiHealth(
        status="ok" if healthy else "unhealthy",
        database="connected" if cluster_ok else "disconnected",
        shard_database="connected" if shard_ok else "disconnected",
        nats=request.app[ANNOUNCER].state,  # only to announce commands promptly; the outbox relay is the guarantee
        uptime_seconds=round(time.monotonic() - svc.started_monotonic, 3),
        version=_version(),
        shard_index=svc.settings.shard_index,
        shard_count=svc.shard_map.current.count_at(time.time_ns() // 1_000_000),
    )
    return json_response(body, status=200 if healthy else 503)


async def shard_info(request: web.Request) -> web.Response:
    """Drift-guard diagnostic (NoETL §1.3.12): which shard an id hashes to. Public, no I/O."""
    svc = services(request)
    execution_id, count = parse_shard_query(request.query)
    body = ShardInfo(
        execution_id=execution_id,
        shard_count=count,
        shard_index=shard_for(execution_id, count),
        source="noetl-server",
        hash_function="twox_hash::XxHash64",
        seed=SHARD_HASH_SEED,
        server_config=ServerConfig(shard_index=svc.settings.shard_index,
                                   shard_count=svc.shard_map.current.count_at(time.time_ns() // 1_000_000)),
        owner_shard=svc.shard_map.current.owner(execution_id),
    )
    return json_response(body)


async def shard_map(request: web.Request) -> web.Response:
    """The epochs from the cluster table (fresh read; also confirms this process's view) and
    every shard that recorded its URL: how the router, publisher and projector find shards."""
    svc = services(request)
    try:
        confirmed = await request.app[KEEPER].reload()
    except RuntimeError:
        raise ApiError(503, "the shard map is empty; the shard seeds it at start-up", "shard_map_empty") from None
    loaded = confirmed.shard_map
    urls = await shard_map_store.endpoints(svc.cluster_pool)
    now_ms = time.time_ns() // 1_000_000
    shards = [ShardEndpoint(index=i, url=url, draining=loaded.draining(i, now_ms)) for i, url in sorted(urls.items())]
    return json_response(ShardMapWithShards(epochs=list(loaded.epochs), current_shard_count=loaded.count_at(now_ms),
                                            shard_index=svc.settings.shard_index, shards=shards))
