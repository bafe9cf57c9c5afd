"""The shard-map gauges a shard exports (read at scrape time from the map it has loaded): shard
count in force, epochs, and draining by the map's own rule (the one that refuses new executions)."""

import time

from prometheus_client import CollectorRegistry

from noetl_api_shard.metrics import ShardMetrics
from noetl_common.sharding import Epoch, ShardMap


def _gauges(index: int, shard_map: ShardMap) -> dict[str, float]:
    registry = CollectorRegistry()
    ShardMetrics(registry, str(index)).watch_shard_map(registry, index, lambda: shard_map)
    return {name: registry.get_sample_value(name, {"shard": str(index)})
            for name in ("noetl_shard_count", "noetl_shard_map_epochs", "noetl_shard_draining")}


def test_member_added_and_drained_shards():
    now = time.time_ns() // 1_000_000
    grown = ShardMap(epochs=(Epoch(0, 2), Epoch(now - 60_000, 3)))
    assert _gauges(2, grown) == {"noetl_shard_count": 3, "noetl_shard_map_epochs": 2, "noetl_shard_draining": 0}
    drained = ShardMap(epochs=(Epoch(0, 2), Epoch(now - 60_000, 3), Epoch(now - 1_000, 2)))
    assert _gauges(2, drained) == {"noetl_shard_count": 2, "noetl_shard_map_epochs": 3, "noetl_shard_draining": 1}
    assert _gauges(1, drained)["noetl_shard_draining"] == 0


def test_a_committed_future_drain_already_counts_and_a_shard_not_yet_added_does_not():
    now = time.time_ns() // 1_000_000
    about_to_drain = ShardMap(epochs=(Epoch(0, 3), Epoch(now + 10_000, 2)))
    assert _gauges(2, about_to_drain)["noetl_shard_count"] == 3
    assert _gauges(2, about_to_drain)["noetl_shard_draining"] == 1  # takes no new executions already
    about_to_grow = ShardMap(epochs=(Epoch(0, 2), Epoch(now + 10_000, 3)))
    assert _gauges(2, about_to_grow)["noetl_shard_draining"] == 0
