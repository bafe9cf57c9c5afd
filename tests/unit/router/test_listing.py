"""Cross-shard merge and cursor pagination (pure parts) against an in-memory model of shards."""

from __future__ import annotations

import random

import pytest

from noetl_router.listing import (MAX_OFFSET, CursorError, RouterCursor, ShardPos, merge, parse_page_params,
                                  sort_key)
from noetl_router.shard_list import ShardListPage, decode_shard_list, shard_list_request


def item(ts: int, eid: int) -> dict:
    return {"execution_id": str(eid), "start_time": f"2026-01-01T00:00:{ts:02d}+00:00"}


class FakeShard:
    """Keyset pagination newest first, with cursors that are simply 'index of the next item'."""

    def __init__(self, items: list[dict]) -> None:
        self.items = sorted(items, key=sort_key, reverse=True)

    def page(self, cursor: str | None, limit: int) -> ShardListPage:
        start = int(cursor) if cursor else 0
        chunk = self.items[start:start + limit]
        more = start + limit < len(self.items)
        return ShardListPage(chunk, str(start + limit) if more else None)


def walk(shards: list[FakeShard], size: int) -> list[list[str]]:
    cursor = RouterCursor.start(len(shards))
    pages = []
    while not cursor.exhausted():
        raw = cursor.encode()
        cursor = RouterCursor.decode(raw, len(shards))  # round trip every time, as a client would
        pages_in = {i: shards[i].page(p.cursor, size) for i, p in enumerate(cursor.shards) if not p.done}
        items, advances = merge(cursor, pages_in, size)
        positions = []
        for i, adv in enumerate(advances):
            if adv.resolve_after:
                resolved = shards[i].page(adv.pos.cursor, adv.resolve_after)
                positions.append(ShardPos(resolved.next_cursor, resolved.next_cursor is None))
            else:
                positions.append(adv.pos)
        cursor = RouterCursor(cursor.v, positions)
        pages.append([x["execution_id"] for x in items])
    return pages


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_walk_returns_every_item_once_newest_first(size):
    rng = random.Random(size)
    all_items = [item(rng.randrange(60), eid) for eid in range(1, 41)]
    shards = [FakeShard([x for x in all_items if int(x["execution_id"]) % 3 == k]) for k in range(3)]
    pages = walk(shards, size)
    flat = [eid for page in pages for eid in page]
    expected = [x["execution_id"] for x in sorted(all_items, key=sort_key, reverse=True)]
    assert flat == expected
    assert all(len(p) == size for p in pages[:-1]) and 0 < len(pages[-1]) <= size


def test_pages_are_stable_when_new_items_arrive_between_pages():
    shards = [FakeShard([item(10, 1), item(8, 3), item(6, 5)]), FakeShard([item(9, 2), item(7, 4)])]
    cursor = RouterCursor.start(2)
    items, advances = merge(cursor, {i: s.page(None, 2) for i, s in enumerate(shards)}, 2)
    assert [x["execution_id"] for x in items] == ["1", "2"]
    # Shard 0 gave one of its two items: its position must come from the shard, after 1 item.
    assert advances[0].resolve_after == 1 and advances[1].resolve_after == 1


def test_empty_fleet_and_done_shards():
    cursor = RouterCursor(1, [ShardPos(done=True), ShardPos()])
    items, advances = merge(cursor, {1: ShardListPage([], None)}, 5)
    assert items == [] and advances[0].pos.done and advances[1].pos.done
    assert RouterCursor(1, [a.pos for a in advances]).exhausted()


def test_cursor_errors():
    with pytest.raises(CursorError, match="not a cursor"):
        RouterCursor.decode("garbage!!", 2)
    with pytest.raises(CursorError, match="issued for 3 shards"):
        RouterCursor.decode(RouterCursor.start(3).encode(), 2)


def test_a_cursor_from_before_the_fleet_grew_reads_new_shards_from_their_newest():
    old = RouterCursor(RouterCursor.start(2).v, [ShardPos("c0"), ShardPos(None, done=True)])
    grown = RouterCursor.decode(old.encode(), 3)
    assert grown.shards == [ShardPos("c0"), ShardPos(None, done=True), ShardPos()]


def test_page_params():
    assert parse_page_params({}) == (100, 0, None)
    assert parse_page_params({"limit": "5"}) == (5, 0, None)
    assert parse_page_params({"page_size": "20", "page": "3"}) == (20, 40, None)
    assert parse_page_params({"limit": "10", "offset": "7"}) == (10, 7, None)
    assert parse_page_params({"cursor": "abc"}) == (100, 0, "abc")
    for bad, fragment in [({"limit": "0"}, "1..500"), ({"limit": "x"}, "integer"), ({"page": "0"}, ">= 1"),
                          ({"offset": str(MAX_OFFSET + 1)}, "deeper"), ({"cursor": "c", "page": "2"}, "either")]:
        with pytest.raises(CursorError, match=fragment):
            parse_page_params(bad)


def test_sort_key_orders_time_then_id_and_tolerates_missing_time():
    assert sort_key(item(5, 2)) > sort_key(item(5, 1)) > sort_key(item(4, 9))
    assert sort_key({"execution_id": "3"}) < sort_key(item(0, 1))


def test_shard_list_adapter_accepts_both_shapes():
    assert shard_list_request({"status": "RUNNING"}, "c1", 5) == {"status": "RUNNING", "limit": "5", "cursor": "c1"}
    assert shard_list_request({}, None, 5) == {"limit": "5"}
    page = decode_shard_list(b'[{"execution_id": "1"}]', {"X-Next-Cursor": "n"})
    assert page == ShardListPage([{"execution_id": "1"}], "n")
    assert decode_shard_list(b'[]', {}).next_cursor is None
    page = decode_shard_list(b'{"items": [{"execution_id": "1"}], "next_cursor": "m"}', {})
    assert page == ShardListPage([{"execution_id": "1"}], "m")
    with pytest.raises(ValueError):
        decode_shard_list(b'{"nope": 1}', {})
