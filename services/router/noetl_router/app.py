"""Wiring of the router process: settings -> context -> aiohttp app with background loops."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY

from noetl_common.discovery import FleetView, ShardDirectory

from . import api_document, background, dispatch, fleet_health
from .config import RouterSettings
from .context import CONTEXT, RouterContext
from .event_relay import EventRelay
from .health import HealthBoard
from .metrics import RouterMetrics
from .shardmap import ShardMapSource, fetcher
from .upstream import Upstreams

SERVICE_NAME = "router"
# The client library must not add headers the caller did not send (we forward, not originate).
SKIP_AUTO_HEADERS = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")

log = logging.getLogger("noetl.router")


def create_app(settings: RouterSettings) -> web.Application:
    app = build_app(service=SERVICE_NAME, max_body_bytes=settings.http.max_body_bytes,
                    internal_token=settings.internal_token, api_token=settings.api_token,
                    request_timeout=settings.http.request_timeout_seconds,
                    max_in_flight=settings.http.max_in_flight, openapi=api_document.source)
    metrics = RouterMetrics(app[REGISTRY_KEY])
    board = HealthBoard(len(settings.shard_urls), settings.failure_threshold, on_change=_health_logger(metrics))
    directory = ShardDirectory(dict(enumerate(settings.shard_urls)), settings.shard_url_pattern)
    ctx = RouterContext(settings=settings, board=board, metrics=metrics, directory=directory)
    if settings.internal_token:
        ctx.events = EventRelay(ctx.up, settings.internal_token, metrics)
    app[CONTEXT] = ctx
    app.cleanup_ctx.append(_lifecycle)
    add_readiness_check(app, "shards", lambda: _ready(ctx))
    fleet_health.register(app, settings.pool_status_cache_seconds)  # answered by the router itself, before the catch-all
    # Described by api_document: the shards' own routes, and what dispatch answers itself.
    app.router.add_route("*", "/{tail:.*}", dispatch.handle)
    return app


def _health_logger(metrics: RouterMetrics):
    def changed(shard: int, healthy: bool) -> None:
        metrics.set_health(shard, healthy)
        log.log(logging.INFO if healthy else logging.WARNING, "shard %s is %s", shard,
                "healthy" if healthy else "unhealthy")

    return changed


async def _ready(ctx: RouterContext) -> None:
    if ctx.shard_map is None or ctx.shard_map.current is None:
        raise RuntimeError("the shard map has not been loaded yet")
    if not ctx.board.healthy_shards():
        raise RuntimeError("no shard is ready")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CONTEXT]
    s = ctx.settings
    timeout = aiohttp.ClientTimeout(total=None, connect=s.connect_timeout_seconds, sock_read=s.read_timeout_seconds)
    # No cookie jar: a proxy must not keep one client's cookies for the next (and it costs CPU).
    session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0),
                                    auto_decompress=False, skip_auto_headers=SKIP_AUTO_HEADERS,
                                    cookie_jar=aiohttp.DummyCookieJar())
    ctx.upstreams = Upstreams(ctx.directory, session, ctx.board, ctx.metrics, attempts=s.retry_attempts,
                              backoff_seconds=s.retry_backoff_seconds,
                              probe_timeout_seconds=min(2.0, s.connect_timeout_seconds * 2))
    def order() -> list[int]:
        return ctx.board.healthy_shards() + [i for i in ctx.directory.indexes() if not ctx.board.is_healthy(i)]

    async def learn_shards(view: FleetView) -> None:
        for shard in ctx.directory.update(view):
            ctx.board.ensure(shard)
            log.info("shard %s joined at %s", shard, ctx.directory.url(shard))
            await ctx.up().probe(shard)  # healthy before the first request if it is ready

    ctx.shard_map = ShardMapSource(fetcher(ctx.upstreams, order), learn_shards)
    await background.initial_probe(ctx.upstreams, ctx.board)
    if not await ctx.shard_map.refresh():
        log.warning("no shard answered /api/shard-map at start; id-routed requests get 503 until one does")
    loops = background.loops(ctx.upstreams, ctx.shard_map, ctx.metrics.loops, probe_interval=s.probe_interval_seconds,
                             map_interval=s.map_refresh_seconds)
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        await asyncio.gather(*(loop.close() for loop in loops))
        await session.close()
