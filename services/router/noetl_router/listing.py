"""Cross-shard execution list: a router cursor is each shard's position, so pages stay stable
while new executions arrive and nothing is skipped or repeated; pages are merged newest first.

Pure: no I/O. `merge` picks the page and says, per shard, how far it was consumed; a shard
consumed part-way needs the shard's own cursor after that many items, which the caller obtains
(`Advance.resolve_after`) because shard cursors are opaque to the router.
"""

from __future__ import annotations

import base64
import heapq
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import msgspec

from .shard_list import ShardListPage

CURSOR_VERSION = 1
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_OFFSET = 5000  # NoETL refuses deeper offset pages too; cursors have no such limit


class CursorError(ValueError):
    pass


class ShardPos(msgspec.Struct, frozen=True, array_like=True):
    cursor: str | None = None   # the shard's own cursor; None = from its newest item
    done: bool = False          # nothing left on this shard


class RouterCursor(msgspec.Struct, frozen=True):
    v: int
    shards: list[ShardPos]

    @classmethod
    def start(cls, shard_count: int) -> "RouterCursor":
        return cls(CURSOR_VERSION, [ShardPos() for _ in range(shard_count)])

    def exhausted(self) -> bool:
        return all(p.done for p in self.shards)

    def encode(self) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode(self)).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str, shard_count: int) -> "RouterCursor":
        try:
            padded = raw + "=" * (-len(raw) % 4)
            cursor = msgspec.json.decode(base64.urlsafe_b64decode(padded.encode()), type=cls)
        except Exception:
            raise CursorError("query parameter cursor is not a cursor this router issued") from None
        if cursor.v != CURSOR_VERSION:
            raise CursorError(f"cursor version {cursor.v} is not supported; start again without a cursor")
        if len(cursor.shards) > shard_count:
            raise CursorError(f"cursor was issued for {len(cursor.shards)} shards, the fleet has {shard_count}; "
                              "start again without a cursor")
        # The fleet grew since: the new shards are read from their newest item.
        return cls(cursor.v, [*cursor.shards, *(ShardPos() for _ in range(shard_count - len(cursor.shards)))])


class Advance(msgspec.Struct, frozen=True):
    """How one shard moves after a page: to `pos`, or (resolve_after > 0) to the shard cursor
    that follows `resolve_after` items read from `pos`."""

    pos: ShardPos
    resolve_after: int = 0


def sort_key(item: Mapping[str, Any]) -> tuple[float, int]:
    """(start time, execution_id); items without a readable time sort last."""
    raw = item.get("start_time")
    ts = float("-inf")
    if isinstance(raw, str) and raw:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            ts = parsed.timestamp()
        except ValueError:
            pass
    try:
        eid = int(item.get("execution_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        eid = 0
    return ts, eid


def merge(cursor: RouterCursor, pages: Mapping[int, ShardListPage], limit: int
          ) -> tuple[list[dict[str, Any]], list[Advance]]:
    """Newest `limit` items across the shards' pages (each already newest first), and each
    shard's advance. Shards missing from `pages` (done) stay where they are."""
    streams = [_tagged(shard, page) for shard, page in sorted(pages.items())]
    taken: list[dict[str, Any]] = []
    consumed = {shard: 0 for shard in pages}
    # Ties on (time, id) cannot happen across shards (ids are unique); shard index breaks them anyway.
    for _key, shard, item in heapq.merge(*streams, key=lambda t: (t[0], -t[1]), reverse=True):
        if len(taken) >= limit:
            break
        taken.append(item)
        consumed[shard] += 1
    advances: list[Advance] = []
    for shard, pos in enumerate(cursor.shards):
        page = pages.get(shard)
        if page is None or pos.done:
            advances.append(Advance(pos))
            continue
        used = consumed[shard]
        if used == len(page.items):
            advances.append(Advance(ShardPos(page.next_cursor, done=page.next_cursor is None)))
        else:
            advances.append(Advance(pos, resolve_after=used))
    return taken, advances


def _tagged(shard: int, page: ShardListPage) -> Iterable[tuple[tuple[float, int], int, dict[str, Any]]]:
    return [(sort_key(item), shard, item) for item in page.items]


def parse_page_params(query: Mapping[str, str]) -> tuple[int, int, str | None]:
    """(page size, offset, cursor) from NoETL's `limit` | `page_size`, `page` | `offset`, `cursor`."""
    size = _first(_int(query, "limit"), _int(query, "page_size"), DEFAULT_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise CursorError(f"page size (limit/page_size) must be within 1..{MAX_PAGE_SIZE}, got {size}")
    cursor = query.get("cursor") or None
    offset = 0
    if query.get("offset"):
        offset = _first(_int(query, "offset"), 0)
    elif query.get("page"):
        page = _first(_int(query, "page"), 1)
        if page < 1:
            raise CursorError(f"query parameter page must be >= 1, got {page}")
        offset = (page - 1) * size
    if offset < 0:
        raise CursorError(f"query parameter offset must be >= 0, got {offset}")
    if offset > MAX_OFFSET:
        raise CursorError(f"offset {offset} is deeper than {MAX_OFFSET}; follow the X-Next-Cursor cursor instead")
    if cursor and offset:
        raise CursorError("use either cursor or page/offset, not both")
    return size, offset, cursor


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def _int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise CursorError(f"query parameter {name} must be an integer, got {raw!r}") from None
