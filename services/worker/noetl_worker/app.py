"""Health/metrics server around the worker loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY

from .config import WorkerSettings
from .executor import default_runners
from .runtime import Worker, WorkerMetrics

log = logging.getLogger("noetl.worker")


def create_app(settings: WorkerSettings) -> web.Application:
    app = build_app(service="worker", max_body_bytes=64 * 1024)
    worker = Worker(settings, default_runners(), WorkerMetrics(app[REGISTRY_KEY]))
    state: dict[str, asyncio.Task] = {}

    async def ready() -> None:
        task = state.get("loop")
        if task is not None and task.done():
            raise RuntimeError("the worker loop has stopped")
        if not worker.connected:
            raise ConnectionError("NATS is not connected")

    add_readiness_check(app, "nats", ready)

    def loop_ended(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker loop crashed", exc_info=task.exception())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(worker.run(), name="worker")
        task.add_done_callback(loop_ended)
        state["loop"] = task
        yield
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, settings.shutdown_grace_seconds + 10)

    app.cleanup_ctx.append(lifecycle)
    return app
