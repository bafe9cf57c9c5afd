"""The relay's lane rule: one young flight holds a shard's lane; a straggler lets the next one go
beside it, up to MAX_FLIGHTS (the rule alone, then the relay against a stand-in shard's route)."""

import asyncio

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from noetl_common.discovery import ShardDirectory
from noetl_common.wire.internal import RELAY_PATH, RelayAnswer, RelayAnswers, RelayedEvents
from noetl_router.event_relay import MAX_FLIGHTS, STRAGGLER_SECONDS, EventRelay, _Lane
from noetl_router.health import HealthBoard
from noetl_router.metrics import RouterMetrics
from noetl_router.upstream import Upstreams

SLOW = 0.5


def test_an_empty_lane_is_free():
    assert _Lane().free(100.0)


def test_a_young_flight_holds_the_lane_until_it_straggles():
    lane = _Lane(flights=[100.0])
    assert not lane.free(100.0 + STRAGGLER_SECONDS / 2)
    assert lane.free(100.0 + STRAGGLER_SECONDS)
    assert lane.frees_at() == pytest.approx(100.0 + STRAGGLER_SECONDS)


def test_the_youngest_flight_decides():
    lane = _Lane(flights=[100.0, 100.0 + STRAGGLER_SECONDS])  # a straggler and the flight sent beside it
    assert not lane.free(100.0 + STRAGGLER_SECONDS * 1.5)
    assert lane.frees_at() == pytest.approx(100.0 + 2 * STRAGGLER_SECONDS)


def test_stragglers_never_exceed_max_flights():
    lane = _Lane(flights=[100.0 + i * STRAGGLER_SECONDS for i in range(MAX_FLIGHTS)])
    assert not lane.free(1000.0)
    assert lane.frees_at() is None  # only a flight's return frees it


async def test_events_behind_a_slow_flight_go_once_it_straggles():
    """A lone event the shard takes SLOW seconds to answer: the events arriving behind it go
    together once it is STRAGGLER_SECONDS old, not when it comes back."""
    seen: list[int] = []

    async def relay(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=RelayedEvents)
        seen.append(len(body.items))
        return web.Response(body=msgspec.json.encode(RelayAnswers(items=[
            RelayAnswer(status=200, body=msgspec.Raw(b'{"status": "ok"}')) for _ in body.items])))

    shard = web.Application()
    shard.router.add_post(RELAY_PATH, relay)
    async with TestServer(shard) as server, aiohttp.ClientSession() as session:
        metrics = RouterMetrics(CollectorRegistry())
        board = HealthBoard(1, 3)
        upstreams = Upstreams(ShardDirectory({0: str(server.make_url("")).rstrip("/")}), session, board, metrics,
                              attempts=1, backoff_seconds=0.1)
        events = EventRelay(lambda: upstreams, "token", metrics)

        async def slow_alone() -> web.Response:
            await asyncio.sleep(SLOW)
            return web.Response(text="alone")

        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(events.forward(0, b'{"n": 0}', slow_alone))
        await asyncio.sleep(0.005)
        began = loop.time()
        behind = await asyncio.gather(*(events.forward(0, b'{"n": %d}' % n, slow_alone) for n in (1, 2)))
        waited = loop.time() - began
        assert [r.status for r in behind] == [200, 200] and seen == [2]
        assert waited < SLOW / 2, f"the events behind waited {waited:.3f}s for a flight of {SLOW}s"
        assert (await first).text == "alone"
