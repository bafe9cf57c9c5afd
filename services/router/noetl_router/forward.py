"""Relaying one request to one shard and streaming its answer back unchanged (plus X-Shard)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from noetl_common import tracing
from noetl_common.trust import TRUST_HEADER, direct_peer_trusted

from .context import CONTEXT

from .upstream import forwardable

log = logging.getLogger("noetl.router.forward")

SHARD_HEADER = "X-Shard"


def upstream_headers(request: web.Request, *, buffered: bool) -> CIMultiDict[str]:
    """The client's headers for the shard: Authorization and X-* untouched, hop-by-hop dropped.
    A buffered body gets a fresh Content-Length from the client library. The trust marker is the
    router's alone: a client's is dropped, and it is set for a direct peer in the trusted networks
    (judged before this router adds its own X-Forwarded-For; see noetl_common.trust)."""
    drop = frozenset({"host", "content-length"} if buffered else {"host"})
    headers = forwardable(request.headers, drop=drop)
    ctx = request.app[CONTEXT]
    token = ctx.settings.internal_token
    if token and direct_peer_trusted(request, ctx.settings.trusted_networks):
        headers[TRUST_HEADER] = token
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers.setdefault("X-Forwarded-Proto", request.scheme)
    if request.host:
        headers.setdefault("X-Forwarded-Host", request.host)
    tracing.inject(headers)  # the shard's span is a child of this request's router span
    return headers


def path_qs(request: web.Request) -> str:
    return request.rel_url.raw_path_qs if hasattr(request.rel_url, "raw_path_qs") else str(request.rel_url)


# A shard answer this small, with its length known, is read whole and sent in one write: streaming
# it chunk by chunk costs several writes per answer, most of a small request's relay time.
BUFFER_UP_TO = 64 * 1024


async def relay(request: web.Request, upstream: aiohttp.ClientResponse, shard: int | str) -> web.StreamResponse:
    """The shard's response, unchanged plus X-Shard: small answers whole, anything else (SSE, big
    pages) streamed chunk by chunk as it arrives. The upstream response is always released."""
    if upstream.content_length is not None and upstream.content_length <= BUFFER_UP_TO:
        _, reply = await buffered_reply(upstream, shard)
        reply.set_status(upstream.status, upstream.reason)
        return reply
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in forwardable(upstream.headers).items():
        response.headers.add(name, value)
    response.headers[SHARD_HEADER] = str(shard)
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientError, ConnectionError) as exc:
        # Headers are gone already: the only honest signal left is cutting the connection.
        log.warning("stream from shard %s broke: %s: %s", shard, type(exc).__name__, exc)
        if request.transport is not None:
            request.transport.close()
    finally:
        upstream.release()
    return response


async def buffered_reply(upstream: aiohttp.ClientResponse, shard: int | str) -> tuple[bytes, web.Response]:
    """Read a (small) shard answer fully; returns the body and an equivalent response."""
    try:
        body = await upstream.read()
    finally:
        upstream.release()
    headers: Any = forwardable(upstream.headers, drop=frozenset({"content-length"}))
    headers[SHARD_HEADER] = str(shard)
    return body, web.Response(body=body, status=upstream.status, headers=headers)
