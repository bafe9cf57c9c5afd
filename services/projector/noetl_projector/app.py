"""Wiring: health/metrics server, NATS connection, one projection loop per owned shard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import aiohttp
import nats
from aiohttp import web

from noetl_common.discovery import ShardDirectory, follow_fleet
from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY
from noetl_common.streams import EVENTS_STREAM, ensure_streams

from .config import ProjectorSettings
from .consumer import ProjectorMetrics, ShardProjector

log = logging.getLogger("noetl.projector")
LAG_REFRESH_SECONDS = 2.0
STOP_GRACE_SECONDS = 10.0


def create_app(settings: ProjectorSettings) -> web.Application:
    app = build_app(service="projector", max_body_bytes=1024 * 1024)
    metrics = ProjectorMetrics(app[REGISTRY_KEY])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        nc = await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                name=settings.name)
        js = nc.jetstream()
        await ensure_streams(js, (EVENTS_STREAM,), settings.stream_max_age)

        async def nats_ready() -> None:
            if not nc.is_connected:
                raise ConnectionError("NATS is not connected")

        add_readiness_check(app, "nats", nats_ready)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        projectors: list[ShardProjector] = []
        tasks: list[asyncio.Task] = []

        async def start_projector(shard: int, url: str) -> None:
            p = ShardProjector(shard=shard, base_url=url, token=settings.internal_token, batch=settings.batch,
                               ack_wait_seconds=settings.ack_wait_seconds, linger_seconds=settings.linger_seconds,
                               js=js, session=session, metrics=metrics)
            await p.subscribe()
            projectors.append(p)
            tasks.append(asyncio.create_task(p.run(), name=f"project-{shard}"))

        for shard, url in sorted(settings.shard_urls.items()):
            await start_projector(shard, url)
        background = [asyncio.create_task(_refresh_lag(projectors), name="lag")]
        if settings.discovery is not None:  # shards added to the fleet later get a consumer too
            directory = ShardDirectory(settings.discovery.bootstrap, settings.discovery.pattern)
            background.append(asyncio.create_task(
                follow_fleet(session, settings.discovery, directory, start_projector, log), name="discovery"))
        log.info("projecting shards %s from %s", sorted(settings.shard_urls), settings.nats_url)
        yield
        for task in background:
            task.cancel()
        for p in projectors:
            p.stop()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, *background, return_exceptions=True)
        await session.close()
        with contextlib.suppress(Exception):
            await nc.drain()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _refresh_lag(projectors: list[ShardProjector]) -> None:
    while True:
        for p in projectors:
            try:
                await p.refresh_lag()
            except Exception as exc:  # lag is best effort; the loops carry on
                log.debug("shard %s: lag refresh failed: %s", p.shard, exc)
        await asyncio.sleep(LAG_REFRESH_SECONDS)
