"""Wiring: health/metrics server, NATS connection, one relay loop per served shard."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from nats.js import JetStreamContext

from noetl_common.http import build_app
from noetl_common.observability import REGISTRY_KEY
from noetl_common.service import ShardWork, serve_shards
from noetl_common.streams import STREAMS

from .config import PublisherSettings
from .relay import RelayMetrics, ShardRelay

log = logging.getLogger("noetl.outbox_publisher")
PENDING_REFRESH_SECONDS = 5.0


def create_app(settings: PublisherSettings) -> web.Application:
    app = build_app(service="outbox-publisher", max_body_bytes=1024 * 1024)
    metrics = RelayMetrics(app[REGISTRY_KEY])

    async def start_relay(js: JetStreamContext, session: aiohttp.ClientSession, shard: int, url: str) -> ShardWork:
        relay = ShardRelay(shard=shard, base_url=url, token=settings.internal_token, batch=settings.batch,
                           wait_ms=settings.wait_ms, session=session, js=js, metrics=metrics)
        # Rows published but not reported at shutdown would be published again by the next
        # publisher (deduplicated): report them.
        return ShardWork(relay.loop, relay.refresh_pending, relay.flush)

    serve_shards(app, settings, start_relay, metrics.loops, log, streams=tuple(STREAMS),
                 http_timeout_seconds=settings.wait_ms / 1000 + 15, gauge_seconds=PENDING_REFRESH_SECONDS)
    return app
