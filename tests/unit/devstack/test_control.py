"""`make run`'s control endpoint with a stand-in for the shard processes: it starts what is
missing in index order, stops what is beyond the count, and refuses bad requests."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from noetl_common.wire.localrun import ShardProcess
from noetl_devstack.control import control_app
from noetl_devstack.errors import StartError

TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Slots:
    def __init__(self, running: int) -> None:
        self.running = set(range(running))
        self.calls: list[tuple[str, int]] = []
        self.fail: int | None = None

    def processes(self) -> list[ShardProcess]:
        return [ShardProcess(index=i, url=f"http://127.0.0.1:{9000 + i}", running=True) for i in sorted(self.running)]

    async def start(self, index: int) -> None:
        self.calls.append(("start", index))
        if index == self.fail:
            raise StartError(f"api-shard-{index}", "exited with code 1")
        self.running.add(index)

    async def stop(self, index: int) -> None:
        self.calls.append(("stop", index))
        self.running.discard(index)


@pytest.fixture
async def control():
    async def make(slots: Slots) -> TestClient:
        client = TestClient(TestServer(control_app(slots, TOKEN)))
        await client.start_server()
        made.append(client)
        return client

    made: list[TestClient] = []
    yield make
    for client in made:
        await client.close()


async def test_put_starts_missing_shards_in_order_and_stops_the_rest(control):
    slots = Slots(running=2)
    client = await control(slots)
    resp = await client.put("/shards", json={"count": 4}, headers=AUTH)
    assert resp.status == 200
    assert [s["index"] for s in (await resp.json())["shards"]] == [0, 1, 2, 3]
    assert slots.calls == [("start", 2), ("start", 3)]
    slots.calls.clear()
    resp = await client.put("/shards", json={"count": 2}, headers=AUTH)
    assert [s["index"] for s in (await resp.json())["shards"]] == [0, 1]
    assert slots.calls == [("stop", 3), ("stop", 2)]


async def test_get_lists_and_token_is_required(control):
    client = await control(Slots(running=2))
    assert (await client.get("/shards")).status == 403
    assert (await client.get("/shards", headers={"Authorization": "Bearer nope"})).status == 403
    resp = await client.get("/shards", headers=AUTH)
    assert [s["url"] for s in (await resp.json())["shards"]] == ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]


@pytest.mark.parametrize("body", [{"count": 0}, {"count": "3"}, {}, [3]])
async def test_bad_bodies_are_422(control, body):
    client = await control(Slots(running=1))
    resp = await client.put("/shards", json=body, headers=AUTH)
    assert resp.status == 422 and "count" in (await resp.json())["error"]


async def test_a_shard_that_fails_to_start_is_named(control):
    slots = Slots(running=2)
    slots.fail = 2
    client = await control(slots)
    resp = await client.put("/shards", json={"count": 3}, headers=AUTH)
    assert resp.status == 500 and "api-shard-2 failed to start" in (await resp.json())["error"]
