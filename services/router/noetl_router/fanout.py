"""Cluster-wide reads answered by asking every shard: the merged execution list and the summed
outbox backlog."""

from __future__ import annotations

import asyncio
from typing import Any, Mapping
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from noetl_common.errors import json_response
from noetl_common.openapi import Op, Param
from noetl_common.wire.execution_views import ListedExecution
from noetl_common.wire.internal import OutboxPending

from .context import RouterContext
from .forward import SHARD_HEADER, buffered_reply
from .listing import Advance, RouterCursor, ShardPos, merge, parse_page_params
from .shard_list import MAX_SHARD_LIMIT, NEXT_CURSOR_HEADER, ShardListPage, decode_shard_list, shard_list_request
from .upstream import forwardable

PAGING_PARAMS = frozenset({"limit", "page_size", "page", "offset", "cursor"})

# Described here, next to the code answering them, though the catch-all route serves them.
LIST_OP = Op(summary="List executions of every shard, newest first (merged)", ok=list[ListedExecution],
             errors=(400,), headers=(NEXT_CURSOR_HEADER,),
             query=(Param(name="limit", type=int), Param(name="page_size", type=int), Param(name="page", type=int),
                    Param(name="offset", type=int), Param(name="status"), Param(name="path"),
                    Param(name="parent_execution_id"),
                    Param(name="cursor", description="X-Next-Cursor of the previous page (every shard's position)")))


class UpstreamAnswer(Exception):
    """A shard refused a fan-out request (e.g. 400 on a bad filter): passed to the client as is."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(f"shard answered {response.status}")
        self.response = response


def _headers(request: web.Request) -> CIMultiDict[str]:
    # Authorization and X-* go along; the router parses these bodies, so no compression.
    return forwardable(request.headers, drop=frozenset({"host", "content-length", "accept-encoding"}))


async def _get(ctx: RouterContext, shard: int, path_qs: str, headers: Mapping[str, str]) -> tuple[bytes, Any]:
    response = await ctx.up().request(shard, "GET", path_qs, headers=headers)
    body, reply = await buffered_reply(response, shard)
    if response.status != 200:
        raise UpstreamAnswer(reply)
    return body, response.headers


class ListFetcher:
    """One shard page under the shard-list contract (see shard_list.py)."""

    def __init__(self, ctx: RouterContext, filters: dict[str, str], headers: Mapping[str, str]) -> None:
        self.ctx, self.filters, self.headers = ctx, filters, headers

    async def page(self, shard: int, cursor: str | None, limit: int) -> ShardListPage:
        query = urlencode(shard_list_request(self.filters, cursor, limit))
        body, headers = await _get(self.ctx, shard, f"/api/executions?{query}", self.headers)
        try:
            return decode_shard_list(body, headers)
        except ValueError as exc:
            raise UpstreamAnswer(json_response({"error": f"shard {shard}: {exc}", "status": 502}, 502,
                                               headers={SHARD_HEADER: str(shard)})) from None

    async def advance(self, shard: int, adv: Advance) -> ShardPos:
        if adv.resolve_after == 0:
            return adv.pos
        # Shard cursors are opaque: ask for exactly the consumed items to learn the cursor after them.
        page = await self.page(shard, adv.pos.cursor, adv.resolve_after)
        return ShardPos(page.next_cursor, done=page.next_cursor is None)

    async def merged(self, cursor: RouterCursor, limit: int) -> tuple[list[dict[str, Any]], RouterCursor]:
        active = [i for i, pos in enumerate(cursor.shards) if not pos.done]
        pages = await asyncio.gather(*(self.page(i, cursor.shards[i].cursor, limit) for i in active))
        items, advances = merge(cursor, dict(zip(active, pages)), limit)
        positions = await asyncio.gather(*(self.advance(i, adv) for i, adv in enumerate(advances)))
        return items, RouterCursor(cursor.v, list(positions))


async def list_executions(request: web.Request, ctx: RouterContext) -> web.Response:
    size, offset, raw_cursor = parse_page_params(request.query)
    shard_count = len(ctx.up())
    cursor = RouterCursor.decode(raw_cursor, shard_count) if raw_cursor else RouterCursor.start(shard_count)
    listable = set(ctx.listable())
    # Shards not asked (no URL, or drained and gone: what they held has finished) count as read.
    cursor = RouterCursor(cursor.v, [p if i in listable else ShardPos(p.cursor, done=True)
                                     for i, p in enumerate(cursor.shards)])
    filters = {k: v for k, v in request.query.items() if k not in PAGING_PARAMS}
    fetcher = ListFetcher(ctx, filters, _headers(request))
    while offset > 0 and not cursor.exhausted():  # NoETL page/offset: walk the cursor, dropping items
        skipped, cursor = await fetcher.merged(cursor, min(offset, MAX_SHARD_LIMIT))
        offset -= max(len(skipped), 1)
    items: list[dict[str, Any]] = []
    if not cursor.exhausted():
        items, cursor = await fetcher.merged(cursor, size)
    headers = {SHARD_HEADER: ",".join(str(i) for i in sorted(listable))}
    if not cursor.exhausted():
        headers[NEXT_CURSOR_HEADER] = cursor.encode()
    return json_response(items, headers=headers)


class FleetPending(msgspec.Struct):
    pending: int                 # the sum
    shards: dict[str, int]       # shard index -> its backlog


PENDING_OP = Op(summary="The outbox backlog of every shard, summed (the KEDA signal)", ok=FleetPending)


async def pending_count(request: web.Request, ctx: RouterContext) -> web.Response:
    headers = _headers(request)
    path = "/api/internal/outbox/pending-count"
    if request.query_string:
        path += "?" + request.query_string
    shards = ctx.listable()
    answers = await asyncio.gather(*(_get(ctx, i, path, headers) for i in shards))
    counts = {str(i): msgspec.json.decode(body, type=OutboxPending).pending for i, (body, _) in zip(shards, answers)}
    return json_response(FleetPending(pending=sum(counts.values()), shards=counts),
                         headers={SHARD_HEADER: ",".join(counts)})
