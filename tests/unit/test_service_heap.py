"""Every service freezes its start-up heap once started (run_service's last start-up step), so a
full collection walks only what was allocated since, and collects young objects less often."""

from __future__ import annotations

import gc
import logging

from aiohttp import web

from noetl_common import service
from noetl_common.config import HttpSettings


class _Settings:
    log_level = "INFO"
    http = HttpSettings(host="127.0.0.1", port=0, max_body_bytes=1024)


def test_run_service_freezes_the_heap_after_every_other_start_up_step(monkeypatch):
    seen: list[web.Application] = []
    monkeypatch.setattr(service.web, "run_app", lambda app, **_: seen.append(app))
    monkeypatch.setattr(service, "_use_uvloop", lambda: None)  # a process-wide policy: not in a test

    async def own_step(_app: web.Application) -> None:
        pass

    def build(_settings: _Settings) -> web.Application:
        app = web.Application()
        app.on_startup.append(own_step)
        return app

    handlers, level = list(logging.root.handlers), logging.root.level
    try:
        assert service.run_service("heap-test", lambda _env: _Settings(), build) == 0
    finally:  # run_service configures process-wide logging
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    (app,) = seen
    assert list(app.on_startup)[-1] is service._freeze_startup_heap


async def test_the_start_up_heap_is_frozen_and_young_collections_are_rarer():
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        await service._freeze_startup_heap(web.Application())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (service.YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
