"""python -m tests.support.testapi: serve the local test API on NOETL_HTTP_HOST:NOETL_HTTP_PORT
(default 127.0.0.1:5555, the e2e server's port) until stopped. TEST_API_STATIC_DIR: a directory
served under /static/. TEST_API_TLS_PORT with TEST_API_TLS_CERT and TEST_API_TLS_KEY: the same app
over HTTPS on that port too."""

from __future__ import annotations

import asyncio
import os
import ssl

from aiohttp import web

from .app import build_app


async def serve() -> None:
    host = os.environ.get("NOETL_HTTP_HOST", "127.0.0.1")
    port = int(os.environ.get("NOETL_HTTP_PORT", "5555"))
    runner = web.AppRunner(build_app(os.environ.get("TEST_API_STATIC_DIR")))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"test api: http://{host}:{port}", flush=True)
    tls_port = os.environ.get("TEST_API_TLS_PORT")
    if tls_port:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(os.environ["TEST_API_TLS_CERT"], os.environ["TEST_API_TLS_KEY"])
        await web.TCPSite(runner, host, int(tls_port), ssl_context=context).start()
        print(f"test api: https://{host}:{tls_port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
