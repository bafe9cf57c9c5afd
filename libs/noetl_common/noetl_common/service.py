"""`python -m <service>`: the one way every process starts. Settings come from the environment
(a bad one exits 2 with one line naming the variable), logs are JSON, and a start-up failure
(database unreachable, port taken) exits 1 with one clear line instead of a traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Callable, Mapping, TypeVar

from aiohttp import web

from .config import ConfigError
from .observability import configure_logging
from .tracing import configure_tracing

S = TypeVar("S")
EXIT_STARTUP = 1
EXIT_CONFIG = 2


def _use_uvloop() -> None:
    """uvloop where it is installed (not on Windows): the fleet's processes spend most of their
    time in socket I/O, which it does at a fraction of asyncio's default loop's cost."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_service(service: str, load: Callable[[Mapping[str, str]], S], build: Callable[[S], web.Application],
                *, shard: Callable[[S], str] | None = None, describe: Callable[[S], str] | None = None) -> int:
    prog = f"noetl-{service}"
    try:
        settings: Any = load(os.environ)
        shard_label = shard(settings) if shard else ""
        configure_logging(service, settings.log_level, shard=shard_label)
        configure_tracing(service, os.environ, shard=shard_label)  # before build: the app asks if it is on
        app = build(settings)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log = logging.getLogger(f"noetl.{service}")
    _use_uvloop()
    log.info("starting%s on %s:%s", f" {describe(settings)}" if describe else "", settings.http.host,
             settings.http.port)
    try:
        web.run_app(app, host=settings.http.host, port=settings.http.port, print=None, access_log=None,
                    handle_signals=True)
    except Exception as exc:  # start-up failures: one clear line, the traceback stays out
        log.error("start-up failed: %s: %s", type(exc).__name__, exc)
        print(f"{prog}: start-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0
