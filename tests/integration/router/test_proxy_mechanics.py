"""Proxy mechanics against fake shards (small aiohttp apps on real ports): SSE passes through
as it is produced, bodies and headers are forwarded faithfully, a 421 refreshes the map and
retries on the named owner (a relayed event's too), retries only for idempotent methods."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import aiohttp
import msgspec
import pytest_asyncio
from aiohttp import web

from noetl_common.ids import mint_for_shard
from noetl_common.wire.internal import RELAY_PATH, RelayAnswer, RelayAnswers, RelayedEvents
from noetl_router.app import create_app

from .conftest import free_port, router_settings


NOT_MINE = {"error": "not mine", "owner_shard": 1}


def fake_shard(index: int, seen: list) -> web.Application:
    app = web.Application()

    async def ready(_):
        return web.json_response({"status": "ready"})

    async def shard_map(_):
        return web.json_response({"epochs": [{"effective_from_ms": 0, "shard_count": 2}],
                                  "current_shard_count": 2, "shard_index": index})

    async def sse(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"data: {i} {time.monotonic()}\n\n".encode())
            await asyncio.sleep(0.3)
        return resp

    async def echo(request):
        body = await request.read()
        seen.append((index, request.method, dict(request.headers), body))
        return web.json_response({"shard": index, "len": len(body)}, headers={"X-Upstream": "yes"})

    async def misroute(request):
        seen.append((index, request.method, dict(request.headers), await request.read()))
        if index == 0:  # shard 0 claims shard 1 owns everything: the router must follow it
            return web.json_response(NOT_MINE, status=421)
        return web.json_response({"shard": index})

    async def event(request):
        body = await request.read()
        seen.append((index, request.method, dict(request.headers), body))
        if index == 0:  # slow, so a burst fills the router's flights and the rest is relayed
            await asyncio.sleep(0.2)
            return web.json_response(NOT_MINE, status=421)
        return web.json_response({"shard": index, "n": msgspec.json.decode(body)["payload"]["n"]})

    async def relayed(request):
        items = msgspec.json.decode(await request.read(), type=RelayedEvents).items
        seen.append((index, "RELAY", dict(request.headers), len(items)))
        answer = RelayAnswer(status=421, body=msgspec.Raw(msgspec.json.encode(NOT_MINE)))
        return web.Response(body=msgspec.json.encode(RelayAnswers(items=[answer] * len(items))),
                            content_type="application/json")

    app.router.add_post("/api/events", event)
    app.router.add_post(RELAY_PATH, relayed)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/api/shard-map", shard_map)
    app.router.add_get("/api/stream", sse)
    app.router.add_route("*", "/api/catalog/{tail:.*}", echo)
    app.router.add_route("*", "/api/vars/{tail:.*}", misroute)
    return app


class Rig:
    def __init__(self) -> None:
        self.seen: list = []
        self.runners: list[web.AppRunner] = []
        self.router_url = ""


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    urls = []
    for i in range(2):
        runner = web.AppRunner(fake_shard(i, r.seen))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        r.runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    port = free_port()
    # No background probing here: the failure counts below must come from requests alone.
    settings = msgspec.structs.replace(router_settings(urls, port), probe_interval_seconds=60.0)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    r.router_url = f"http://127.0.0.1:{port}"
    try:
        yield r
    finally:
        await runner.cleanup()
        for s in r.runners:
            await s.cleanup()


async def test_sse_events_arrive_while_the_stream_is_open(rig):
    async with aiohttp.ClientSession() as s, s.get(f"{rig.router_url}/api/stream") as r:
        assert r.headers["Content-Type"] == "text/event-stream" and r.headers["X-Shard"] in ("0", "1")
        first = await r.content.readuntil(b"\n\n")
        received_at = time.monotonic()
        sent_at = float(first.split()[2])
        assert received_at - sent_at < 0.25  # not held back until the stream ends (0.9 s)
        rest = await r.content.read()
    assert rest.count(b"data:") == 2


async def test_bodies_and_headers_are_forwarded_faithfully(rig):
    payload = b"x" * 300_000

    async def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    async with aiohttp.ClientSession() as s:
        async with s.post(f"{rig.router_url}/api/catalog/register?a=1&b=two", data=chunks(),
                          headers={"Authorization": "Bearer abc", "X-Custom": "v", "Connection": "keep-alive, X-Drop",
                                   "X-Drop": "gone"}) as r:
            assert r.status == 200 and (await r.json())["len"] == len(payload)
            assert r.headers["X-Upstream"] == "yes"
    _, method, headers, body = rig.seen[-1]
    assert method == "POST" and body == payload
    assert headers["Authorization"] == "Bearer abc" and headers["X-Custom"] == "v"
    assert "X-Drop" not in headers and "User-Agent" in headers  # from the caller, not invented
    assert headers["X-Forwarded-For"] == "127.0.0.1"


async def test_421_refreshes_the_map_and_retries_once_on_the_named_owner(rig):
    eid = mint_for_shard(0, 2)  # hashes to shard 0, which answers 421 naming shard 1
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{rig.router_url}/api/vars/{eid}", json={"variables": {"a": 1}}) as r:
            assert r.status == 200 and r.headers["X-Shard"] == "1"
            assert (await r.json())["shard"] == 1
    attempts = [(i, m, b) for i, m, _, b in rig.seen[-2:]]
    assert attempts == [(0, "POST", b'{"variables": {"a": 1}}'), (1, "POST", b'{"variables": {"a": 1}}')]


async def test_a_relayed_event_answered_421_goes_again_alone_and_reaches_the_named_owner(rig):
    eid = str(mint_for_shard(0, 2))  # hashes to shard 0, which answers 421 naming shard 1
    events = [{"execution_id": eid, "event_type": "worker.heartbeat", "payload": {"n": n}} for n in range(12)]
    async with aiohttp.ClientSession() as s:
        async def post(body: dict) -> tuple[int, dict, str]:
            async with s.post(f"{rig.router_url}/api/events", json=body) as r:
                return r.status, await r.json(), r.headers["X-Shard"]

        answers = await asyncio.gather(*(post(e) for e in events))
    assert answers == [(200, {"shard": 1, "n": n}, "1") for n in range(12)]
    relayed = sum(count for index, method, _, count in rig.seen if method == "RELAY" and index == 0)
    assert relayed > 0  # shard 0's flights were busy: some of the burst went relayed, and came back 421
    on_1 = sorted(msgspec.json.decode(body)["payload"]["n"] for index, method, _, body in rig.seen
                  if index == 1 and method == "POST")
    assert on_1 == list(range(12))  # each event reached the owner once


async def test_post_is_not_retried_but_get_is_and_the_shard_turns_unhealthy(rig):
    # Kill shard 1's listener; ids it owns fail fast with 503 naming it.
    await rig.runners[1].cleanup()
    eid = mint_for_shard(1, 2)
    async with aiohttp.ClientSession() as s:
        async def connect_errors() -> str:
            async with s.get(f"{rig.router_url}/metrics") as r:
                text = await r.text()
            line = [x for x in text.splitlines() if x.startswith('noetl_router_upstream_errors_total{kind="connect",shard="1"}')]
            return line[0].split()[-1] if line else "0"

        async with s.post(f"{rig.router_url}/api/vars/{eid}", json={"variables": {}}) as r:
            assert r.status == 503 and (await r.json())["shard"] == 1
        assert await connect_errors() == "1.0"  # one try: a POST is never repeated
        async with s.get(f"{rig.router_url}/api/vars/{eid}") as r:
            assert r.status == 503 and (await r.json())["shard"] == 1
        assert await connect_errors() == "4.0"  # three tries for the GET (retry_attempts=3)
        started = time.monotonic()
        async with s.get(f"{rig.router_url}/api/vars/{eid}") as r:
            assert r.status == 503 and "marked unhealthy" in (await r.json())["error"]
        assert time.monotonic() - started < 0.1  # no more waiting on a known-dead shard
        assert await connect_errors() == "4.0"
        async with s.get(f"{rig.router_url}/metrics") as r:
            assert 'noetl_router_upstream_healthy{shard="1"} 0.0' in await r.text()
