import struct

import pytest

from noetl_common.ids import EPOCH_MS, compose
from noetl_common.sharding import Epoch, ShardMap, shard_for

# Pinned by the NoETL gateway and server (DESIGN.md): any drift moves executions between shards.
PINNED = [
    ((320816801799737344, 16), 14), ((1, 4), 1), ((42, 4), 3), ((325, 4), 0), ((325, 8), 4),
    ((2**63 - 1, 4), 0), ((1, 2), 1), ((1, 16), 5), ((1, 64), 21), ((1, 1024), 405),
]


@pytest.mark.parametrize(("args", "expected"), PINNED)
def test_pinned_vectors(args, expected):
    assert shard_for(*args) == expected


@pytest.mark.parametrize("count", [0, 1, -3])
def test_single_or_no_shard_is_zero(count):
    assert shard_for(320816801799737344, count) == 0


def test_negative_ids_hash_as_twos_complement():
    assert 0 <= shard_for(-1, 7) < 7
    with pytest.raises(struct.error):
        shard_for(2**63, 4)  # outside i64: refuse rather than silently wrap


def test_sequential_ids_spread_evenly():
    counts = [0] * 16
    for i in range(10_000):
        counts[shard_for(320816801799737344 + i, 16)] += 1
    mean = 10_000 / 16
    assert all(abs(c - mean) <= 0.2 * mean for c in counts), counts


def test_shard_map_epochs_keep_old_ids_on_their_owner():
    t_grow = EPOCH_MS + 1_000_000
    shard_map = ShardMap(epochs=(Epoch(0, 2), Epoch(t_grow, 5)))
    old = compose(t_grow - 1, 0, 7)
    new = compose(t_grow, 0, 7)
    assert shard_map.count_at(t_grow - 1) == 2
    assert shard_map.count_at(t_grow) == 5
    assert shard_map.owner(old) == shard_for(old, 2)
    assert shard_map.owner(new) == shard_for(new, 5)
    assert shard_map.max_count() == 5


@pytest.mark.parametrize("epochs", [(), (Epoch(5, 2), Epoch(5, 3)), (Epoch(9, 2), Epoch(1, 3)), (Epoch(0, 0),)])
def test_shard_map_rejects_bad_epochs(epochs):
    with pytest.raises(ValueError):
        ShardMap(epochs=epochs)
