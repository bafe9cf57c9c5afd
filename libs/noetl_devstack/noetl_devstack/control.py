"""`make run`'s control endpoint (127.0.0.1 only, bearer = the internal token): start and stop
api-shard processes of the running fleet, so that shards added by `make scale` belong to the
`make run` that serves them and its Ctrl-C stops them with the rest.

    GET /metrics                     -> this process' Prometheus metrics (restarts), no token
    GET /shards                      -> {"shards": [{"index", "url", "running"}]}
    PUT /shards  {"count": M}        -> start api-shard-0..M-1 that do not run (each ready before
                                        the answer), stop those >= M; answers like GET

It starts and stops processes only: committing shard-map epochs, and deciding that a shard is
drained before it is stopped, is the operator CLI's job (python -m noetl_ops scale)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Awaitable, Callable, Protocol

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from noetl_common.wire.localrun import ShardCountRequest, ShardProcess, ShardProcesses

from .errors import StartError
from .ports import free_port

MAX_SHARDS = 1024


class ShardSlots(Protocol):
    def processes(self) -> list[ShardProcess]: ...
    async def start(self, index: int) -> None: ...
    async def stop(self, index: int) -> None: ...


def _json(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def control_app(slots: ShardSlots, token: str, registry: CollectorRegistry | None = None) -> web.Application:
    # One change at a time: two scales racing would start the same shard twice.
    lock = asyncio.Lock()

    @web.middleware
    async def bearer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.path == "/metrics":
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(403, "missing or wrong bearer token (the internal API token)")
        return await handler(request)

    async def get_shards(_request: web.Request) -> web.Response:
        return _json(ShardProcesses(shards=slots.processes()))

    async def put_shards(request: web.Request) -> web.Response:
        try:
            wanted = msgspec.json.decode(await request.read(), type=ShardCountRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(422, f"body must be {{\"count\": M}}: {exc}")
        if not 1 <= wanted.count <= MAX_SHARDS:
            return _error(422, f"count must be between 1 and {MAX_SHARDS}, got {wanted.count}")
        async with lock:
            running = {p.index for p in slots.processes() if p.running}
            try:
                for index in range(wanted.count):
                    if index not in running:
                        await slots.start(index)
            except StartError as exc:
                return _error(500, str(exc))
            for index in sorted(running, reverse=True):
                if index >= wanted.count:
                    await slots.stop(index)
        return _json(ShardProcesses(shards=slots.processes()))

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry) if registry is not None else b""
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=[bearer])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/shards", get_shards)
    app.router.add_put("/shards", put_shards)
    return app


async def serve_control(slots: ShardSlots, token: str,
                        registry: CollectorRegistry | None = None) -> tuple[web.AppRunner, str]:
    """Listen on a free 127.0.0.1 port; returns the runner (cleanup() stops it) and the URL."""
    port = free_port()
    runner = web.AppRunner(control_app(slots, token, registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"
