"""The `execution_id` + `shard_count` query both drift-guard endpoints take (shard-info on a shard,
/sharding/preview on the router), validated with NoETL's messages."""

from __future__ import annotations

from typing import Annotated, Mapping

import msgspec

from .errors import bad_request

MAX_SHARD_COUNT = 1024


ShardCountParam = Annotated[int, msgspec.Meta(ge=1, le=MAX_SHARD_COUNT)]


def parse_shard_query(query: Mapping[str, str]) -> tuple[int, int]:
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
    return execution_id, count
