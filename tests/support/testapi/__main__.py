"""python -m tests.support.testapi: serve the local test API on NOETL_HTTP_HOST:NOETL_HTTP_PORT
(default 127.0.0.1:5555, the e2e server's port) until stopped."""

from __future__ import annotations

import os

from aiohttp import web

from .app import build_app


def main() -> None:
    host = os.environ.get("NOETL_HTTP_HOST", "127.0.0.1")
    port = int(os.environ.get("NOETL_HTTP_PORT", "5555"))
    print(f"test api: http://{host}:{port}", flush=True)
    web.run_app(build_app(), host=host, port=port, print=None)


if __name__ == "__main__":
    main()
