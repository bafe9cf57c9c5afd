"""`GET /api/pool/status` (NoETL's shape) for this shard's asyncpg pools. The top-level fields
describe the shard pool, the one every execution route uses; `pools` has both (shard, cluster)."""

from __future__ import annotations

import asyncpg
import msgspec
from aiohttp import web

from noetl_common.errors import json_response
from noetl_common.openapi import Op, route
from noetl_common.wire.health import UNAVAILABLE, PoolStatus, ShardPoolStatus, pool_status

from ..state import services


def register(app: web.Application) -> None:
    route(app, "GET", "/api/pool/status", get_pool_status, Op(
        summary="This shard's database pools (NoETL's shape: the shard pool at the top level)",
        ok=ShardPoolStatus, description="200 even when a pool is unavailable: `status` says so."))


def waiting(pool: asyncpg.Pool) -> int:
    # asyncpg has no public count of queued acquirers: they wait on the pool's internal queue.
    # Read it defensively (0 if a future asyncpg renames it) rather than fail the route.
    getters = getattr(getattr(pool, "_queue", None), "_getters", None)
    try:
        return sum(1 for g in getters if not g.done()) if getters is not None else 0
    except Exception:
        return 0


def status_of(pool: asyncpg.Pool | None) -> PoolStatus:
    if pool is None or pool.is_closing():
        return UNAVAILABLE
    return pool_status(pool_min=pool.get_min_size(), pool_max=pool.get_max_size(), pool_size=pool.get_size(),
                       pool_available=pool.get_idle_size(), requests_waiting=waiting(pool))


async def get_pool_status(request: web.Request) -> web.Response:
    svc = services(request)
    pools = svc.open_pools()
    shard = status_of(pools.get("shard"))
    body = ShardPoolStatus(**msgspec.structs.asdict(shard), shard_index=svc.settings.shard_index,
                           pools={name: status_of(pools.get(name)) for name in ("shard", "shard_write", "cluster")})
    return json_response(body)  # 200 even when unavailable: NoETL says so in `status`
