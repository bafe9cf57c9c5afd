"""Answers every service gives the same way: CORS for browsers (NoETL allows every origin), and
a time limit on each request, past which the client gets a 504 instead of waiting forever.
Streams (SSE) are exempt from the limit: following an execution is meant to last."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .errors import ApiError, error_response

CORS_HEADERS = {"Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "*",
                "Access-Control-Expose-Headers": "X-Next-Cursor, X-Shard, Retry-After"}
STREAM_SUFFIXES = ("/stream",)


@web.middleware
async def preflight_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """A browser's CORS preflight is answered here, before authentication (it carries no token)."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={**CORS_HEADERS, "Access-Control-Max-Age": "600"})
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, streams included, just before its headers go out."""
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)


def deadline_middleware(seconds: float) -> Any:
    @web.middleware
    async def deadline(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith(STREAM_SUFFIXES):
            return await handler(request)
        timer = asyncio.timeout(seconds)
        try:
            async with timer:
                return await handler(request)
        except TimeoutError:
            if not timer.expired():
                raise  # a timeout inside the handler, not this deadline
            return error_response(ApiError(504, f"the request took longer than {seconds:g}s and was abandoned",
                                           "request_timeout"))
    return deadline
