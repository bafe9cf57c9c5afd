"""NoETL's `/api/health` and `/api/pool/status` answered for the whole fleet: every shard is
asked at once and the answers are merged. (`/health`, `/healthz`, `/readyz` and
`/api/health/ready` are the router's own, from the HTTP shell.)

- `/api/health`: NoETL's fields, `status` "ok" only when every shard is healthy (else 503,
  "unhealthy"), `database` "connected" only when every shard reaches its databases; `shards` has
  each shard's own answer (or why it could not be asked).
- `/api/pool/status`: the fleet's sum — pool_min/max/size/available and requests_waiting added
  up, utilization and slots from those sums — with each shard's own body under `shards`. Every
  NoETL worker polls it every 2 s: one fan-out serves every request for
  `pool_status_cache_seconds`, so its cost does not grow with the number of workers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from noetl_common.errors import json_response
from noetl_common.openapi import Op, route
from noetl_common.recent import Recent
from noetl_common.wire.health import FleetHealth, FleetPoolStatus, PoolStatus, pool_status

from .context import CONTEXT, RouterContext
from .upstream import ShardUnavailable

ASK_TIMEOUT_SECONDS = 5.0
POOL_STATUS = web.AppKey("pool_status", Recent[FleetPoolStatus])


def register(app: web.Application, cache_seconds: float) -> None:
    app[POOL_STATUS] = Recent(cache_seconds)
    route(app, "GET", "/api/health", api_health, Op(
        summary="NoETL health of the whole fleet: every shard asked (503, same body, unless all are healthy)",
        ok=FleetHealth, other=((503, FleetHealth),)))
    route(app, "GET", "/api/pool/status", fleet_pool_status, Op(
        summary="Database pools of the whole fleet: every shard's numbers summed, each shard's body under shards",
        ok=FleetPoolStatus))


async def _ask(ctx: RouterContext, shard: int, path: str) -> tuple[int, Any]:
    """(status, decoded body) of one shard; (0, reason) when it cannot be asked."""
    try:
        response = await ctx.up().request(shard, "GET", path, headers={}, retry=False,
                                          timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_SECONDS))
    except ShardUnavailable as exc:
        return 0, exc.reason
    try:
        raw = await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    finally:
        response.release()
    try:
        return response.status, msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return 0, f"shard answered {response.status} with a body that is not JSON"


async def _ask_all(ctx: RouterContext, path: str) -> dict[int, tuple[int, Any]]:
    shards = ctx.listable()
    return dict(zip(shards, await asyncio.gather(*(_ask(ctx, i, path) for i in shards))))


def _version() -> str:
    import importlib.metadata
    try:
        return importlib.metadata.version("noetl-router")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def api_health(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    answers = await _ask_all(ctx, "/api/health")
    shards: dict[str, Any] = {}
    healthy = connected = True
    for i, (status, body) in answers.items():
        if status == 0 or not isinstance(body, dict):
            shards[str(i)] = {"status": "unreachable", "error": body}
            healthy = connected = False
            continue
        shards[str(i)] = body
        healthy = healthy and status == 200 and body.get("status") == "ok"
        connected = connected and body.get("database") == "connected" and body.get("shard_database") == "connected"
    body = FleetHealth(status="ok" if healthy else "unhealthy", database="connected" if connected else "disconnected",
                       nats="not_used", uptime_seconds=round(time.monotonic() - ctx.started_monotonic, 3),
                       version=_version(), shard_count=len(answers), shards=shards)
    return json_response(body, status=200 if healthy else 503)


async def fleet_pool_status(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return json_response(await request.app[POOL_STATUS].get(lambda: _pool_status(ctx)))


async def _pool_status(ctx: RouterContext) -> FleetPoolStatus:
    answers = await _ask_all(ctx, "/api/pool/status")
    shards: dict[str, Any] = {}
    parts: list[PoolStatus] = []
    for i, (status, body) in answers.items():
        try:
            if status != 200:
                raise ValueError(body if status == 0 else f"shard answered {status}")
            part = msgspec.convert(body, PoolStatus)
        except (ValueError, msgspec.ValidationError) as exc:
            shards[str(i)] = {"status": "unavailable", "error": str(exc)}
            continue
        shards[str(i)] = body
        if part.status != "unavailable":
            parts.append(part)
    total = pool_status(pool_min=sum(p.pool_min for p in parts), pool_max=sum(p.pool_max for p in parts),
                        pool_size=sum(p.pool_size for p in parts),
                        pool_available=sum(p.pool_available for p in parts),
                        requests_waiting=sum(p.requests_waiting for p in parts))
    overall = total.status
    if not parts:
        overall = "unavailable"
    elif len(parts) < len(answers):
        overall = "degraded"  # some shards answered, not all: the sums cover those only
    elif any(p.status == "saturated" for p in parts):
        overall = "saturated"
    return FleetPoolStatus(**{**msgspec.structs.asdict(total), "status": overall}, shard_count=len(answers),
                           shards_reporting=len(parts), shards=shards)
