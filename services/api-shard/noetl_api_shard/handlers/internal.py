"""/api/internal/*: service-to-service routes, bearer-gated by the shell's middleware.

Only `ping` for now (it lets clients and tests check the token); the outbox and projection
routes join this module.
"""

from __future__ import annotations

from aiohttp import web

from noetl_common.errors import json_response

from ..state import services


def register(app: web.Application) -> None:
    app.router.add_get("/api/internal/ping", ping)


async def ping(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "shard_index": services(request).settings.shard_index})
