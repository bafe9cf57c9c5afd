"""Wiring: health/metrics server, NATS connection, one projection loop per owned shard."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from nats.js import JetStreamContext

from noetl_common.http import build_app
from noetl_common.observability import REGISTRY_KEY
from noetl_common.service import ShardWork, serve_shards
from noetl_common.streams import EVENTS_STREAM

from .config import ProjectorSettings
from .consumer import ProjectorMetrics, ShardProjector

log = logging.getLogger("noetl.projector")
LAG_REFRESH_SECONDS = 2.0


def create_app(settings: ProjectorSettings) -> web.Application:
    app = build_app(service="projector", max_body_bytes=1024 * 1024)
    metrics = ProjectorMetrics(app[REGISTRY_KEY])

    async def start_projector(js: JetStreamContext, session: aiohttp.ClientSession, shard: int,
                              url: str) -> ShardWork:
        p = ShardProjector(shard=shard, base_url=url, token=settings.internal_token, batch=settings.batch,
                           ack_wait_seconds=settings.ack_wait_seconds, linger_seconds=settings.linger_seconds,
                           js=js, session=session, metrics=metrics)
        await p.subscribe()
        return ShardWork(p.loop, p.refresh_lag)

    serve_shards(app, settings, start_projector, metrics.loops, log, streams=(EVENTS_STREAM,),
                 http_timeout_seconds=30, gauge_seconds=LAG_REFRESH_SECONDS)
    return app
