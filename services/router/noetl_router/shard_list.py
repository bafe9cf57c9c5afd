"""THE adapter to the shard's `GET /api/executions` list endpoint. Everything the router assumes
about that endpoint lives here and nowhere else:

- request: `limit` (1..MAX_SHARD_LIMIT), opaque `cursor` from a previous answer, and the filters
  the client sent (`status`, `path`, ...) passed through unchanged;
- response: newest first by (start time, execution_id); either `{"items": [...], "next_cursor": c}`
  or NoETL's bare JSON list with the cursor in an `X-Next-Cursor` header (what the shard serves
  today); items carry `execution_id` and `start_time`.
"""

from __future__ import annotations

from typing import Any, Mapping

import msgspec

MAX_SHARD_LIMIT = 500
NEXT_CURSOR_HEADER = "X-Next-Cursor"


class ShardListPage(msgspec.Struct, frozen=True):
    items: list[dict[str, Any]]
    next_cursor: str | None          # None: this shard has nothing after these items


class _Envelope(msgspec.Struct):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


def shard_list_request(filters: Mapping[str, str], cursor: str | None, limit: int) -> dict[str, str]:
    params = dict(filters)
    params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return params


def decode_shard_list(body: bytes, headers: Mapping[str, str]) -> ShardListPage:
    """Raises ValueError when the shard's answer is not a list page."""
    try:
        doc = msgspec.json.decode(body)
        if isinstance(doc, list):
            items = msgspec.convert(doc, list[dict[str, Any]])
            return ShardListPage(items, headers.get(NEXT_CURSOR_HEADER) or None)
        envelope = msgspec.convert(doc, _Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"unexpected execution list from shard: {exc}") from None
    return ShardListPage(envelope.items, envelope.next_cursor or headers.get(NEXT_CURSOR_HEADER) or None)
