from noetl_common.discovery import FleetView, ShardDirectory, decode_fleet_view
from noetl_common.sharding import Epoch, ShardMap


def view(count: int, urls: dict[int, str]) -> FleetView:
    return FleetView(ShardMap(epochs=(Epoch(0, 2), Epoch(1, count))), urls)


def test_recorded_urls_fill_in_shards_the_bootstrap_does_not_name():
    d = ShardDirectory({0: "http://a", 1: "http://b"})
    assert d.update(view(3, {0: "http://elsewhere", 1: "http://b", 2: "http://c"})) == [2]
    assert [d.url(i) for i in range(3)] == ["http://a", "http://b", "http://c"]  # bootstrap wins for 0
    assert d.update(view(3, {2: "http://c"})) == [] and d.slots() == 3


def test_the_pattern_gives_any_index_the_map_knows():
    d = ShardDirectory({0: "http://s-0"}, "http://s-{i}")
    assert d.update(view(4, {})) == [1, 2, 3] and d.url(3) == "http://s-3"
    assert d.url(4) is None


def test_decode_the_shard_map_answer():
    raw = (b'{"epochs":[{"effective_from_ms":0,"shard_count":2}],"current_shard_count":2,"shard_index":0,'
           b'"shards":[{"index":1,"url":"http://b/","draining":true}]}')
    v = decode_fleet_view(raw)
    assert v.shard_map.count_at(5) == 2 and v.urls == {1: "http://b"}
    # An older shard's answer without "shards" still decodes.
    assert decode_fleet_view(b'{"epochs":[{"effective_from_ms":0,"shard_count":1}],"current_shard_count":1,'
                             b'"shard_index":0}').urls == {}
