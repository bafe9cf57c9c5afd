"""python -m tests.support.testapi: serve the local test API on NOETL_HTTP_HOST:NOETL_HTTP_PORT
(default 127.0.0.1:5555, the e2e server's port) until stopped. TEST_API_STATIC_DIR: a directory
served under /static/."""

from __future__ import annotations

import os

from aiohttp import web

from .app import build_app


def main() -> None:
    host = os.environ.get("NOETL_HTTP_HOST", "127.0.0.1")
    port = int(os.environ.get("NOETL_HTTP_PORT", "5555"))
    print(f"test api: http://{host}:{port}", flush=True)
    web.run_app(build_app(os.environ.get("TEST_API_STATIC_DIR")), host=host, port=port, print=None)


if __name__ == "__main__":
    main()
