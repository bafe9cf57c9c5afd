"""Wiring: health/metrics server, NATS connection, one relay task per served shard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import aiohttp
import nats
from aiohttp import web

from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY

from .config import PublisherSettings
from .relay import RelayMetrics, ShardRelay
from noetl_common.discovery import ShardDirectory, follow_fleet
from noetl_common.streams import ensure_streams

log = logging.getLogger("noetl.outbox_publisher")
PENDING_REFRESH_SECONDS = 5.0

RELAYS = web.AppKey("relays", list)


def create_app(settings: PublisherSettings) -> web.Application:
    app = build_app(service="outbox-publisher", max_body_bytes=1024 * 1024)
    metrics = RelayMetrics(app[REGISTRY_KEY])
    app[RELAYS] = []

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        nc = await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                name=settings.claimer)
        js = nc.jetstream()
        await ensure_streams(js, max_age_seconds=settings.stream_max_age)

        async def nats_ready() -> None:
            if not nc.is_connected:
                raise ConnectionError("NATS is not connected")

        add_readiness_check(app, "nats", nats_ready)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.wait_ms / 1000 + 15))
        relays: list[ShardRelay] = app[RELAYS]
        tasks: list[asyncio.Task] = []

        async def start_relay(shard: int, url: str) -> None:
            relay = ShardRelay(shard=shard, base_url=url, token=settings.internal_token, batch=settings.batch,
                               wait_ms=settings.wait_ms, session=session, js=js, metrics=metrics)
            relays.append(relay)
            tasks.append(asyncio.create_task(relay.run(), name=f"relay-{shard}"))

        for shard, url in sorted(settings.shard_urls.items()):
            await start_relay(shard, url)
        background = [asyncio.create_task(_refresh_pending(relays), name="pending")]
        if settings.discovery is not None:  # shards added to the fleet later get a relay too
            directory = ShardDirectory(settings.discovery.bootstrap, settings.discovery.pattern)
            background.append(asyncio.create_task(
                follow_fleet(session, settings.discovery, directory, start_relay, log), name="discovery"))
        log.info("relaying shards %s to %s", sorted(settings.shard_urls), settings.nats_url)
        yield
        for task in background:
            task.cancel()
        # Graceful: let each relay finish its in-flight batch, then stop.
        for relay in relays:
            relay.stop()
        done, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, *background, return_exceptions=True)
        # Rows published but not yet reported would be published again by the next publisher (deduped).
        await asyncio.gather(*(r.flush() for r in relays), return_exceptions=True)
        await session.close()
        await nc.drain()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _refresh_pending(relays: list[ShardRelay]) -> None:
    while True:
        for relay in relays:
            with contextlib.suppress(Exception):
                await relay.refresh_pending()
        await asyncio.sleep(PENDING_REFRESH_SECONDS)
