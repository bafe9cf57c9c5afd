"""/api/internal/*: service-to-service routes, bearer-gated by the shell's middleware.

Only `ping` for now (it lets clients and tests check the token); the outbox and projection
routes join this module.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from noetl_common.errors import json_response
from noetl_common.openapi import Op, route

from ..state import services


def register(app: web.Application) -> None:
    route(app, "GET", "/api/internal/ping", ping, Op(summary="Check the internal token", ok=Pong))


class Pong(msgspec.Struct):
    status: str
    shard_index: int


async def ping(request: web.Request) -> web.Response:
    return json_response(Pong(status="ok", shard_index=services(request).settings.shard_index))
