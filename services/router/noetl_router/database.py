"""NoETL's database routes across the fleet: SQL on one shard or every shard
(`POST /api/postgres/execute` with target shard / all_shards; target cluster goes to any shard
like other cluster-wide requests), and `/api/db/validate` / `/api/db/init` on every shard (each
checks or migrates the cluster database and its own), merged into one answer."""

from __future__ import annotations

from typing import Any, Callable

import msgspec
from aiohttp import web

from noetl_common.errors import ApiError, json_response
from noetl_common.wire.database import DbInitResponse, DbValidateResponse, MigrationState, PostgresExecuteResponse

from .context import RouterContext
from .fanout import UpstreamAnswer
from .fleet_ops import _each, _relay_client_error
from .forward import SHARD_HEADER, path_qs, relay, upstream_headers


def _headers(request: web.Request) -> Any:
    # The trust marker and forwarding headers as for any relayed request; the router reads these
    # answers, so no compression.
    headers = upstream_headers(request, buffered=True)
    headers.popall("Accept-Encoding", None)
    return headers


async def on_shard(request: web.Request, ctx: RouterContext, shard: int, body: bytes | None) -> web.StreamResponse:
    if shard not in ctx.directory.indexes():
        raise ApiError(400, f"shard {shard} is not in the fleet (shards: "
                            f"{', '.join(map(str, ctx.directory.indexes()))})", "unknown_shard")
    upstream = await ctx.up().request(shard, request.method, path_qs(request),
                                      headers=upstream_headers(request, buffered=True), body=body or None)
    return await relay(request, upstream, shard)


async def _everywhere(request: web.Request, ctx: RouterContext, body: bytes | None,
                      per_shard: Callable[[int], bytes] | None = None) -> dict[int, Any]:
    """Each shard's 200 answer; any refusal (403, 400) is passed on as is, and a shard that cannot
    be asked makes it a 503 naming it (the answer would be partial). `per_shard` makes each
    shard's body."""
    answers = await _each(ctx, request.method, path_qs(request), _headers(request), body or None, per_shard)
    _relay_client_error(answers)
    decoded: dict[int, Any] = {}
    for shard, (status, raw, reply) in sorted(answers.items()):
        if status != 200:
            if reply is not None:
                raise UpstreamAnswer(reply)
            raise ApiError(503, f"shard {shard} is unavailable: {raw!s}", "shard_unavailable", shard=shard,
                           headers={SHARD_HEADER: str(shard), "Retry-After": "1"})
        decoded[shard] = raw
    return decoded


async def execute_everywhere(request: web.Request, ctx: RouterContext, body: bytes) -> web.Response:
    doc = msgspec.json.decode(body)  # routing.sql_target decoded it already: a JSON object

    def for_shard(shard: int) -> bytes:  # each shard runs it as its own
        return msgspec.json.encode({**doc, "target": "shard", "shard": shard})

    answers = await _everywhere(request, ctx, body, for_shard)
    parts = [msgspec.json.decode(raw, type=PostgresExecuteResponse) for raw in answers.values()]
    rows = [row for p in parts for row in (p.result or [])]
    has_rows = any(p.result is not None for p in parts)
    merged = PostgresExecuteResponse(
        status="ok", database="all shards", result=rows if has_rows else None, row_count=len(rows),
        columns=next((p.columns for p in parts if p.columns is not None), None),
        truncated=any(p.truncated for p in parts), shards=parts)
    return json_response(merged, headers={SHARD_HEADER: ",".join(map(str, answers))})


def _merge_states(parts: list[DbValidateResponse] | list[DbInitResponse]) -> list[MigrationState]:
    # Every shard reports the cluster database too: listed once.
    seen: dict[str, MigrationState] = {}
    for part in parts:
        for state in part.databases:
            seen.setdefault(state.database, state)
    return list(seen.values())


async def validate(request: web.Request, ctx: RouterContext) -> web.Response:
    answers = await _everywhere(request, ctx, None)
    parts = [msgspec.json.decode(raw, type=DbValidateResponse) for raw in answers.values()]
    states = _merge_states(parts)
    missing = [f"{s.database}: {label}" for s in states for label in s.pending]
    tables = sorted({t for p in parts for t in p.tables})
    return json_response(DbValidateResponse(status="ok" if not missing else "error", valid=not missing,
                                            tables=tables, missing=missing, databases=states),
                         headers={SHARD_HEADER: ",".join(map(str, answers))})


async def init(request: web.Request, ctx: RouterContext) -> web.Response:
    answers = await _everywhere(request, ctx, await request.read())
    parts = [msgspec.json.decode(raw, type=DbInitResponse) for raw in answers.values()]
    applied = list(dict.fromkeys(a for p in parts for a in p.applied))
    message = f"applied {len(applied)} migrations" if applied else "schema is current; nothing to apply"
    return json_response(DbInitResponse(status="ok", message=message, applied=applied,
                                        databases=_merge_states(parts)),
                         headers={SHARD_HEADER: ",".join(map(str, answers))})
