import logging

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from noetl_common.discovery import DiscoverySettings, FleetView, ShardDirectory, decode_fleet_view, discover_new_shards
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


async def test_a_served_shard_whose_start_failed_is_started_next_round():
    answer = (b'{"epochs":[{"effective_from_ms":0,"shard_count":3}],"current_shard_count":3,"shard_index":0,'
              b'"shards":[]}')

    async def shard_map(_request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/shard-map", shard_map)
    async with TestServer(app) as srv, aiohttp.ClientSession() as session:
        url = str(srv.make_url("")).rstrip("/")
        settings = DiscoverySettings(bootstrap={0: url}, pattern=url + "/s{i}", replica=0, replicas=2,
                                     interval_seconds=1.0)
        directory, running, calls = ShardDirectory(settings.bootstrap, settings.pattern), {0}, []

        async def ensure_started(shard: int, shard_url: str) -> None:
            calls.append(shard)
            if shard in running:
                return
            if calls.count(shard) == 1:
                raise ConnectionError(f"shard {shard} is not answering yet")
            running.add(shard)

        log = logging.getLogger("test")
        try:
            await discover_new_shards(session, settings, directory, ensure_started, log)
        except ConnectionError:
            pass  # the loop logs it and runs the next round
        assert running == {0}  # shard 2 (this replica's, 1 is the other's) joined but did not start
        await discover_new_shards(session, settings, directory, ensure_started, log)
        assert running == {0, 2} and 1 not in calls
