"""python -m noetl_projector"""

from __future__ import annotations

import os
import sys

from aiohttp import web

from noetl_common.config import ConfigError
from noetl_common.observability import configure_logging

from .app import create_app
from .config import from_env


def main() -> int:
    try:
        settings = from_env(os.environ)
    except ConfigError as exc:
        print(f"projector: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("projector", settings.log_level)
    web.run_app(create_app(settings), host=settings.http.host, port=settings.http.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
