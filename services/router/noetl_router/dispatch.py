"""The catch-all handler: decide where a request goes (routing.decide), then relay, place, fan
out or answer locally. Errors become JSON naming the id or the shard at fault."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from noetl_common.errors import ApiError
from noetl_common.observability import execution_id_var

from . import dashboard, database, fanout, fleet_ops, preview
from .context import CONTEXT, RouterContext
from .forward import SHARD_HEADER, buffered_reply, path_qs, relay, upstream_headers
from .listing import CursorError
from .event_relay import MISROUTED, RELAY_UP_TO
from .routing import EXECUTION_HEADER, Decision, Kind, Rule, RoutingError, decide, needs_body
from .shardmap import ShardMapUnavailable
from .upstream import IDEMPOTENT, ShardUnavailable

log = logging.getLogger("noetl.router")

EVENTS_PATH = "/api/events"


async def handle(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    body: bytes | None = None
    if needs_body(request.method, request.path, request.headers):
        body = await request.read()  # bounded by client_max_size (413 past it)
    try:
        decision = decide(request.method, request.path, request.query, request.headers, body)
    except RoutingError as exc:
        raise ApiError(400, str(exc), "bad_routing_id") from None
    ctx.metrics.route_taken(decision.rule.value, decision.kind.value)
    if decision.field == "execution_id" and len(decision.ids) == 1:
        execution_id_var.set(str(decision.ids[0]))  # every log line of this request carries it
    try:
        response = await _dispatch(request, ctx, decision, body)
        if decision.kind is Kind.PLACE and (placed := response.headers.get(EXECUTION_HEADER)):
            execution_id_var.set(placed)  # the new execution, named by the shard's answer
        return response
    except ShardUnavailable as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        retry_after = str(max(1, round(ctx.settings.probe_interval_seconds)))
        raise ApiError(503, str(exc), "shard_unavailable", shard=exc.shard,
                       headers={SHARD_HEADER: str(exc.shard), "Retry-After": retry_after}) from None
    except ShardMapUnavailable as exc:
        raise ApiError(503, str(exc), "shard_map_unavailable", headers={"Retry-After": "1"}) from None
    except fanout.UpstreamAnswer as exc:
        return exc.response
    except CursorError as exc:
        raise ApiError(400, str(exc), "bad_page_params") from None


async def _dispatch(request: web.Request, ctx: RouterContext, decision: Decision,
                    body: bytes | None) -> web.StreamResponse:
    kind = decision.kind
    if kind is Kind.OWNER:
        return await _to_owner(request, ctx, decision, body)
    if kind is Kind.PLACE:
        return await _to_any(request, ctx, body, place=True)
    if kind is Kind.ANY:
        return await _to_any(request, ctx, body)
    if kind is Kind.LIST_EXECUTIONS:
        return await fanout.list_executions(request, ctx)
    if kind is Kind.PENDING_COUNT:
        return await fanout.pending_count(request, ctx)
    if kind is Kind.CLEANUP:
        return await fleet_ops.cleanup(request, ctx)
    if kind is Kind.RESULT_STATS:
        return await fleet_ops.result_stats(request, ctx)
    if kind is Kind.PREVIEW:
        return await preview.handle(request)
    if kind is Kind.SHARD:
        return await database.on_shard(request, ctx, decision.ids[0], body)
    if kind is Kind.SQL_ALL:
        return await database.execute_everywhere(request, ctx, body or b"")
    if kind is Kind.DASHBOARD_STATS:
        return await dashboard.stats(request, ctx)
    if kind is Kind.DB_SCHEMA:
        if request.method == "GET":
            return await database.validate(request, ctx)
        return await database.init(request, ctx)
    raise ApiError(400, f"{request.path} is shard-local and carries no id to route by; "
                        "call the shard directly (see NOETL_SHARD_URLS)", "per_shard_route")


def owner_of(ctx: RouterContext, decision: Decision) -> int:
    shard_map = ctx.maps().require()
    owners = sorted({shard_map.owner(i) for i in decision.ids})
    if len(owners) > 1:
        raise ApiError(400, f"the {decision.field}s in this request belong to different shards "
                            f"({', '.join(map(str, owners))}); send one request per shard", "mixed_shards")
    return owners[0]


async def _to_owner(request: web.Request, ctx: RouterContext, decision: Decision,
                    body: bytes | None) -> web.StreamResponse:
    if body is None:
        body = await request.read()  # small JSON; kept so a 421 can be replayed to the right shard
    shard = owner_of(ctx, decision)
    if ctx.events is not None and _relayable(request, decision, body):
        return await ctx.events.forward(shard, body, lambda: _alone(request, ctx, decision, body, shard))
    return await _alone(request, ctx, decision, body, shard)


def _relayable(request: web.Request, decision: Decision, body: bytes) -> bool:
    """A single event whose body the router parsed (so it is one JSON object) and small."""
    return (decision.rule is Rule.BODY and request.method == "POST" and not request.query_string
            and request.path.rstrip("/") == EVENTS_PATH and len(body) <= RELAY_UP_TO)


async def _alone(request: web.Request, ctx: RouterContext, decision: Decision, body: bytes,
                 shard: int) -> web.StreamResponse:
    headers = upstream_headers(request, buffered=True)
    if decision.field == "execution_id" and len(decision.ids) == 1:
        # The id it was routed by, found in the path or body, so the shard's log lines of this
        # request carry it without parsing anything (body-routed /api/events included).
        headers[EXECUTION_HEADER] = str(decision.ids[0])
    generation = ctx.maps().generation
    upstream = await ctx.up().request(shard, request.method, path_qs(request), headers=headers, body=body or None)
    if upstream.status != MISROUTED:
        return await relay(request, upstream, shard)
    # The shard says the map moved: refresh it (once per burst) and try the owner it names.
    raw, reply = await buffered_reply(upstream, shard)
    ctx.metrics.error(shard, "misrouted")
    await ctx.maps().refresh(generation)
    retry_shard = owner_of(ctx, decision)
    if retry_shard == shard:
        retry_shard = _named_owner(raw, shard)
    log.info("shard %s answered 421 for %s %s; retrying on shard %s", shard, decision.field, decision.ids,
             retry_shard)
    if retry_shard == shard:
        return reply
    upstream = await ctx.up().request(retry_shard, request.method, path_qs(request), headers=headers,
                                      body=body or None)
    return await relay(request, upstream, retry_shard)


NOT_PLACEABLE = frozenset({"shard_draining", "shard_not_active"})


class _Coded(msgspec.Struct):
    code: str | None = None


def _code(raw: bytes) -> str | None:
    try:
        return msgspec.json.decode(raw, type=_Coded).code
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class _Misrouted(msgspec.Struct):
    owner_shard: int | None = None


def _named_owner(raw: bytes, fallback: int) -> int:
    try:
        named = msgspec.json.decode(raw, type=_Misrouted).owner_shard
    except (msgspec.DecodeError, msgspec.ValidationError):
        return fallback
    return named if named is not None and named >= 0 else fallback


async def _to_any(request: web.Request, ctx: RouterContext, body: bytes | None,
                  place: bool = False) -> web.StreamResponse:
    """Cluster-wide data or a new execution: the next healthy shard, round robin (a new
    execution only on shards the map places on). When a shard cannot be connected to, nothing
    reached it, so the next healthy one gets the request; so does one that refused a new
    execution as draining (our map was behind: it is refreshed)."""
    payload: Any
    # A new execution's body is small and is kept: a draining shard's refusal sends it elsewhere.
    if body is not None or request.method in IDEMPOTENT or place:
        payload = (body if body is not None else await request.read()) or None
    else:
        payload = request.content if request.body_exists else None  # streamed, never buffered
    headers = upstream_headers(request, buffered=payload is None or isinstance(payload, bytes))
    tried: set[int] = set()
    last: ShardUnavailable | None = None
    refused: web.Response | None = None
    while True:
        shard = ctx.board.next_healthy(ctx.placeable() if place else None)
        if shard is None or shard in tried:
            break
        tried.add(shard)
        try:
            upstream = await ctx.up().request(shard, request.method, path_qs(request), headers=headers,
                                              body=payload)
        except ShardUnavailable as exc:
            last = exc
            if exc.sent:  # it may have been applied: never send it twice
                raise
            continue
        if place and upstream.status == 503 and isinstance(payload, (bytes, type(None))):
            raw, reply = await buffered_reply(upstream, shard)
            if _code(raw) in NOT_PLACEABLE:  # refused before anything was written
                log.info("shard %s refused a new execution (%s); refreshing the map", shard, _code(raw))
                refused = reply
                await ctx.maps().refresh(ctx.maps().generation)
                continue
            return reply
        return await relay(request, upstream, shard)
    if refused is not None:
        return refused
    if last is not None:
        raise last
    raise ApiError(503, "no shard is healthy", "no_healthy_shard", headers={"Retry-After": "1"})
