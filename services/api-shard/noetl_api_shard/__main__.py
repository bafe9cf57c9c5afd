"""`python -m noetl_api_shard`: one shard's HTTP API, configured from the environment."""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from noetl_common.config import ConfigError, ShardSettings
from noetl_common.observability import configure_logging

from .app import SERVICE_NAME, create_app

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def main() -> int:
    try:
        settings = ShardSettings.from_env(os.environ)
        configure_logging(SERVICE_NAME, settings.log_level, shard=str(settings.shard_index))
        app = create_app(settings)
    except ConfigError as exc:
        print(f"noetl-api-shard: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log = logging.getLogger("noetl.api_shard")
    log.info("starting shard %s of %s on %s:%s", settings.shard_index, settings.shard_count,
             settings.http.host, settings.http.port)
    try:
        web.run_app(app, host=settings.http.host, port=settings.http.port, print=None,
                    access_log=None, handle_signals=True)
    except Exception as exc:  # start-up failures (database unreachable, bad migration): one clear line
        log.error("start-up failed: %s: %s", type(exc).__name__, exc)
        print(f"noetl-api-shard: start-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


if __name__ == "__main__":
    sys.exit(main())
