"""`GET /sharding/preview`: NoETL gateway-compatible hash preview, computed locally, no I/O."""

from __future__ import annotations

from typing import Mapping

import msgspec
from aiohttp import web

from noetl_common.errors import json_response
from noetl_common.openapi import Op, Param, SignedIdParam
from noetl_common.shard_query import ShardCountParam, parse_shard_query
from noetl_common.sharding import SHARD_HASH_SEED, shard_for

class ShardPreview(msgspec.Struct):
    execution_id: int
    shard_count: int
    shard_index: int
    source: str
    hash_function: str
    seed: int


def preview(query: Mapping[str, str]) -> ShardPreview:
    execution_id, count = parse_shard_query(query)
    return ShardPreview(execution_id=execution_id, shard_count=count, shard_index=shard_for(execution_id, count),
                        source="noetl-gateway", hash_function="twox_hash::XxHash64", seed=SHARD_HASH_SEED)


OP = Op(summary="Which shard an execution id hashes to (NoETL gateway's preview)", ok=ShardPreview, errors=(400,),
        query=(Param(name="execution_id", type=SignedIdParam, required=True),
               Param(name="shard_count", type=ShardCountParam, required=True)))


async def handle(request: web.Request) -> web.Response:
    return json_response(preview(request.query))
