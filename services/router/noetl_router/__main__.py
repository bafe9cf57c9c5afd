"""`python -m noetl_router`: the execution-id hashing router, configured from the environment."""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from noetl_common.config import ConfigError
from noetl_common.observability import configure_logging

from .app import SERVICE_NAME, create_app
from .config import RouterSettings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def main() -> int:
    try:
        settings = RouterSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"noetl-router: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(SERVICE_NAME, settings.log_level)
    log = logging.getLogger("noetl.router")
    log.info("routing to %s shards on %s:%s", len(settings.shard_urls), settings.http.host, settings.http.port)
    try:
        web.run_app(create_app(settings), host=settings.http.host, port=settings.http.port, print=None,
                    access_log=None, handle_signals=True)
    except Exception as exc:  # e.g. the port is taken: one clear line, no traceback
        log.error("start-up failed: %s: %s", type(exc).__name__, exc)
        print(f"noetl-router: start-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


if __name__ == "__main__":
    sys.exit(main())
