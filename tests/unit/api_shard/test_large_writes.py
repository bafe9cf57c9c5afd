"""The bound on large bodies in flight (noetl_api_shard.large_writes), through a real aiohttp server."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from noetl_api_shard import large_writes
from noetl_common.http import build_app

LIMIT = 1024


async def serve(gate: large_writes.LargeWrites, release: asyncio.Event, entered: list[int]) -> TestClient:
    app = build_app(service="t", max_body_bytes=1 << 20)
    app.middlewares.append(large_writes.middleware(gate))

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        entered.append(len(body))
        await release.wait()
        return web.json_response({"bytes": len(body)})

    app.router.add_post("/api/events", take)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_large_bodies_wait_for_room_then_shed_with_retry_after_and_small_ones_pass():
    gate = large_writes.LargeWrites(threshold=LIMIT, budget=10_000, slots=2, wait=0.5)
    release, entered = asyncio.Event(), []
    client = await serve(gate, release, entered)
    try:
        first = asyncio.ensure_future(client.post("/api/events", data=b"x" * 6_000))
        second = asyncio.ensure_future(client.post("/api/events", data=b"y" * 3_000))
        while len(entered) < 2:
            await asyncio.sleep(0.01)
        shed = await client.post("/api/events", data=b"z" * 2_000)  # over the byte budget: waits, then 503
        assert shed.status == 503 and shed.headers["Retry-After"] == str(large_writes.RETRY_AFTER_SECONDS)
        body = await shed.json()
        assert body["code"] == "large_writes_busy"
        small = asyncio.ensure_future(client.post("/api/events", data=b"s" * 100))  # never waits here
        while len(entered) < 3:
            await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(client.post("/api/events", data=b"w" * 2_000))
        await asyncio.sleep(0.1)
        assert len(entered) == 3, "a large body waits for room before it is read"
        release.set()
        for reply in await asyncio.gather(first, second, small, waiting):
            assert reply.status == 200
        assert sorted(entered) == [100, 2_000, 3_000, 6_000]
        assert gate.bytes == 0 and gate.count == 0
    finally:
        release.set()
        await client.close()


async def test_a_body_over_the_whole_budget_runs_alone():
    gate = large_writes.LargeWrites(threshold=LIMIT, budget=4_000, slots=4, wait=2.0)
    release, entered = asyncio.Event(), []
    client = await serve(gate, release, entered)
    try:
        release.set()
        reply = await client.post("/api/events", data=b"x" * 50_000)
        assert reply.status == 200 and (await reply.json())["bytes"] == 50_000
    finally:
        await client.close()
