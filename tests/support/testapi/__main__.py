"""python -m tests.support.testapi: serve the local test API on NOETL_HTTP_HOST:NOETL_HTTP_PORT
(default 127.0.0.1:5555, the e2e server's port) until stopped. TEST_API_STATIC_DIR: a directory
served under /static/. TEST_API_TLS_PORT with TEST_API_TLS_CERT and TEST_API_TLS_KEY: the same app
over HTTPS on that port too; with TEST_API_PROXY_PORT and TEST_API_PROXY_HOSTS (comma-separated) as
well, an HTTPS proxy that answers for those hosts with this app (see proxy.py)."""

from __future__ import annotations

import asyncio
import os
import ssl

from aiohttp import web

from . import proxy
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
    proxy_port = os.environ.get("TEST_API_PROXY_PORT")
    if proxy_port:
        hosts = frozenset(h.strip().lower() for h in os.environ.get("TEST_API_PROXY_HOSTS", "").split(",") if h.strip())
        await proxy.serve(host, int(proxy_port), hosts, os.environ["TEST_API_TLS_CERT"],
                          os.environ["TEST_API_TLS_KEY"], port)
        print(f"test api: proxy http://{host}:{proxy_port} for {', '.join(sorted(hosts))}", flush=True)
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
