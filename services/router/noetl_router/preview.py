"""`GET /sharding/preview`: NoETL gateway-compatible hash preview, computed locally, no I/O."""

from __future__ import annotations

from typing import Mapping

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response
from noetl_common.sharding import SHARD_HASH_SEED, shard_for

MAX_SHARD_COUNT = 1024


class ShardPreview(msgspec.Struct):
    execution_id: int
    shard_count: int
    shard_index: int
    source: str
    hash_function: str
    seed: int


def preview(query: Mapping[str, str]) -> ShardPreview:
    raw_id = query.get("execution_id")
    if raw_id is None or raw_id.strip() == "":
        raise bad_request("execution_id is required")
    try:
        execution_id = int(raw_id.strip())
        if not -(1 << 63) <= execution_id < (1 << 63):
            raise ValueError
    except ValueError:
        raise bad_request(f'execution_id "{raw_id}" is not a valid i64') from None
    raw_count = query.get("shard_count")
    if raw_count is None or raw_count.strip() == "":
        raise bad_request("shard_count is required (1..1024)")
    try:
        count = int(raw_count)
    except ValueError:
        raise bad_request(f"shard_count must be an integer, got {raw_count!r}") from None
    if count < 1:
        raise bad_request("shard_count must be >= 1")
    if count > MAX_SHARD_COUNT:
        raise bad_request(f"shard_count {count} exceeds practical maximum {MAX_SHARD_COUNT}")
    return ShardPreview(execution_id=execution_id, shard_count=count, shard_index=shard_for(execution_id, count),
                        source="noetl-gateway", hash_function="twox_hash::XxHash64", seed=SHARD_HASH_SEED)


async def handle(request: web.Request) -> web.Response:
    return json_response(preview(request.query))
