"""Reaching shard i through the router: the id chosen must be owned by i under the map read."""

from __future__ import annotations

from hypothesis import given, strategies as st

from noetl_common.ids import EPOCH_MS
from noetl_common.sharding import Epoch, ShardMap
from noetl_ops.routing import id_owned_by

NOW = EPOCH_MS + 900 * 24 * 3600 * 1000


@st.composite
def maps(draw):
    counts = draw(st.lists(st.integers(1, 12), min_size=1, max_size=5))
    offsets = sorted(draw(st.lists(st.integers(-10**9, 10**9), min_size=len(counts) - 1,
                                   max_size=len(counts) - 1, unique=True)))
    return ShardMap(epochs=(Epoch(0, counts[0]), *(Epoch(NOW + o, c) for o, c in zip(offsets, counts[1:]))))


@given(maps(), st.integers(0, 13))
def test_the_routing_id_is_owned_by_the_shard_or_none_when_no_epoch_has_it(shard_map, shard):
    found = id_owned_by(shard, shard_map, NOW)
    if shard >= shard_map.max_count():
        assert found is None
    else:
        assert found is not None and shard_map.owner(found) == shard


def test_a_draining_shard_is_reached_through_the_epoch_it_served():
    m = ShardMap(epochs=(Epoch(0, 3), Epoch(NOW - 1000, 2)))
    found = id_owned_by(2, m, NOW)
    assert found is not None and m.owner(found) == 2


def test_a_joining_shard_is_reached_through_the_pending_epoch():
    m = ShardMap(epochs=(Epoch(0, 2), Epoch(NOW + 10_000, 3)))
    found = id_owned_by(2, m, NOW)
    assert found is not None and m.owner(found) == 2
