"""The router's `/openapi.json`: the whole public surface it serves. That is its own routes (the
shell's), the paths its catch-all answers itself (fan-outs, the hash preview), and every shard
route it proxies. The last come from a healthy shard's own `/openapi.json` at request time: the
shards serve those routes, so their document is the truth, and the router adds nothing a shard
lacks. Shard-local internals (outbox claims) are left out: the router refuses them."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from noetl_common import openapi
from noetl_common.errors import ApiError

from . import dashboard, fanout, fleet_ops, preview
from .context import CONTEXT, RouterContext
from .forward import buffered_reply
from .routing import proxied
from .upstream import ShardUnavailable

TITLE = "NoETL fleet router"
# What the catch-all answers without a shard (routing.Kind LIST_EXECUTIONS, PENDING_COUNT, PREVIEW,
# CLEANUP, RESULT_STATS); these replace the shards' descriptions of the same paths.
ANSWERED_HERE = (
    ("GET", "/api/executions", fanout.LIST_OP),
    ("GET", "/api/internal/outbox/pending-count", fanout.PENDING_OP),
    ("GET", "/sharding/preview", preview.OP),
    ("POST", "/api/executions/cleanup", fleet_ops.CLEANUP_OP),
    ("GET", "/api/result/stats", fleet_ops.RESULT_STATS_OP),
    ("GET", "/api/temp/stats", fleet_ops.RESULT_STATS_OP),
    ("GET", "/api/dashboard/stats", dashboard.STATS_OP),
)


async def source(request: web.Request) -> dict[str, Any]:
    own = openapi.document(request.app, title=TITLE, version=openapi.package_version(), extra=ANSWERED_HERE)
    return openapi.merge(own, await shard_document(request.app[CONTEXT]), keep=proxied)


async def shard_document(ctx: RouterContext) -> dict[str, Any]:
    shard = ctx.board.next_healthy()
    if shard is None:
        raise ApiError(503, "no shard is healthy to describe its routes", "no_healthy_shard",
                       headers={"Retry-After": "1"})
    try:
        response = await ctx.up().request(shard, "GET", "/openapi.json", headers={})
    except ShardUnavailable as exc:
        raise ApiError(503, str(exc), "shard_unavailable", headers={"Retry-After": "1"}) from None
    raw, _ = await buffered_reply(response, shard)
    if response.status != 200:
        raise ApiError(502, f"shard {shard} answered {response.status} for /openapi.json", "bad_gateway")
    return msgspec.json.decode(raw)
