"""`GET /api/dashboard/stats` over the fleet: each shard counts its own executions (summed here)
and reports the cluster's playbook and worker counts (the same from every shard: taken once)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from noetl_common.errors import ApiError, json_response
from noetl_common.openapi import Op
from noetl_common.wire.dashboard import CLUSTER_COUNTS, EXECUTION_COUNTS, DashboardStats

from .context import RouterContext
from .fleet_ops import DROP, _each, _relay_client_error
from .forward import SHARD_HEADER, path_qs
from .upstream import forwardable

STATS_OP = Op(summary="Execution counts of every shard, summed, with the cluster's playbook and worker counts",
              ok=DashboardStats, errors=(503,),
              description="A shard that cannot be asked makes it a 503 naming it: a partial sum would mislead.")


async def stats(request: web.Request, ctx: RouterContext) -> web.Response:
    answers = await _each(ctx, "GET", path_qs(request), forwardable(request.headers, drop=DROP), None)
    _relay_client_error(answers)
    parts: dict[int, DashboardStats] = {}
    for shard, (status, raw, _) in sorted(answers.items()):
        if status != 200 or not isinstance(raw, bytes):
            raise ApiError(503, f"shard {shard} did not answer its dashboard counts ({raw!s:.200})",
                           "shard_unavailable", shard=shard, headers={"Retry-After": "1"})
        parts[shard] = msgspec.json.decode(raw, type=DashboardStats)
    if not parts:
        raise ApiError(503, "no shard is known to count executions on", "no_healthy_shard",
                       headers={"Retry-After": "1"})
    first = next(iter(parts.values()))
    counts = {name: sum(getattr(p, name) for p in parts.values()) for name in EXECUTION_COUNTS}
    counts.update({name: getattr(first, name) for name in CLUSTER_COUNTS})
    shards = {str(s): {name: getattr(p, name) for name in EXECUTION_COUNTS} for s, p in parts.items()}
    return json_response(DashboardStats(stats=counts, shards=shards, **counts),
                         headers={SHARD_HEADER: ",".join(map(str, parts))})
