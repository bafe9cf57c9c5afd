"""Answers every service gives the same way: CORS for browsers (NoETL allows every origin), a
time limit on each request, past which the client gets a 504 instead of waiting forever, and a
bound on requests in flight, past which the client gets a 429 to come back later instead of a
queue (and latency, and memory) that grows without limit. Streams (SSE) are exempt from both:
following an execution is meant to last. Internal routes and probes are exempt from the bound:
their callers are few and must get through when the public side is flooded."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .auth import INTERNAL_PREFIX, OPEN_PATHS
from .errors import ApiError, error_response

CORS_HEADERS = {"Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "*",
                "Access-Control-Expose-Headers": "X-Next-Cursor, X-Shard, Retry-After"}
STREAM_SUFFIXES = ("/stream",)


@web.middleware
async def preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not has_deadline(request.path):
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


def admitted(path: str) -> bool:
    """Whether the in-flight bound applies to this path (else it is exempt)."""
    return not (path in OPEN_PATHS or path.startswith(INTERNAL_PREFIX) or path.endswith(STREAM_SUFFIXES))


def has_deadline(path: str) -> bool:
    return not path.endswith(STREAM_SUFFIXES)


def admission_middleware(limit: int) -> Any:
    in_flight = 0

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if not admitted(request.path):
            return await handler(request)
        if in_flight >= limit:
            return error_response(ApiError(429, f"over capacity ({limit} requests in flight); retry shortly",
                                           "overloaded", headers={"Retry-After": "1"}))
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1
    return admit
