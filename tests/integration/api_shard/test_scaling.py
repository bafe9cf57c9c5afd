"""Online scaling on real shard and cluster databases: committing epochs, every shard learning
them (NOTIFY), discovery through the shard map, drain, and the status a scaler reads."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import pytest

from noetl_common.ids import timestamp_ms
from noetl_common.minting import now_ms
from noetl_api_shard.state import SERVICES

from .conftest import INTERNAL_TOKEN, start_harness, stop_harness
from .test_executions import PLAYBOOK

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
GRACE_MS = 1_000
SCALING = dict(epoch_grace_ms=GRACE_MS, map_refresh_seconds=0.45)


async def start_two(database_factory, scaling):
    first = await database_factory()
    second = dataclasses.replace(await database_factory(), cluster_dsn=first.cluster_dsn)
    return [await start_harness(dbs, shard_index=i, shard_count=2, advertise_url=f"http://shard-{i}.test:8082",
                                **scaling) for i, dbs in enumerate((first, second))]


@pytest.fixture
async def two_shards(database_factory):
    shards = await start_two(database_factory, SCALING)
    try:
        yield shards
    finally:
        for h in shards:
            await stop_harness(h)


async def test_a_committed_epoch_reaches_the_other_shard_by_notify(database_factory):
    # The periodic refresh (100 s) is far longer than the wait: only the NOTIFY can deliver it.
    shards = await start_two(database_factory, dict(epoch_grace_ms=300_000, map_refresh_seconds=100.0))
    try:
        view = shards[1].client.app[SERVICES].shard_map
        status, _ = await commit(shards[0], shard_count=3)
        assert status == 200
        await wait_for(lambda: len(view.current.epochs) == 2, "shard 1 to hear the NOTIFY", timeout=20)
    finally:
        for h in shards:
            await stop_harness(h)


async def commit(h, **body):
    r = await h.client.post("/api/internal/shard-map/epochs", json=body, headers=AUTH)
    return r.status, await r.json()


async def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("body", "field"), [
    ({"shard_count": 0}, "shard_count"), ({"shard_count": 1025}, "shard_count"), ({}, "shard_count"),
    ({"shard_count": "3"}, "shard_count"), ({"shard_count": 3, "grace_ms": 10}, "grace_ms"),
    ({"shard_count": 3, "grace_ms": 10**9}, "grace_ms"), ({"shard_count": 3, "gracems": 5}, "gracems"),
])
async def test_epoch_validation_names_the_field(two_shards, body, field):
    status, answer = await commit(two_shards[0], **body)
    assert 400 <= status < 500 and field in answer["error"]
    assert await two_shards[0].count("shard_map") == 1


async def test_epoch_route_is_bearer_gated(two_shards):
    r = await two_shards[0].client.post("/api/internal/shard-map/epochs", json={"shard_count": 3})
    assert r.status == 403
    r = await two_shards[0].client.get("/api/internal/shard/status")
    assert r.status == 403


async def test_commit_is_idempotent_and_every_shard_learns_it(two_shards):
    first, second = two_shards
    before = now_ms()
    status, body = await commit(first, shard_count=3)
    assert status == 200 and body["created"] and body["shard_count"] == 3
    assert body["effective_from_ms"] >= before + GRACE_MS
    assert body["epochs"] == [{"effective_from_ms": 0, "shard_count": 2},
                              {"effective_from_ms": body["effective_from_ms"], "shard_count": 3}]
    again_status, again = await commit(second, shard_count=3)  # re-running a half-finished scale
    assert again_status == 200 and not again["created"] and again["effective_from_ms"] == body["effective_from_ms"]
    assert await first.count("shard_map") == 2
    view = second.client.app[SERVICES].shard_map
    await wait_for(lambda: len(view.current.epochs) == 2, "shard 1 to learn the epoch")
    # A later, different count is appended after it, never before.
    _, shrink = await commit(second, shard_count=2, grace_ms=2 * GRACE_MS)
    assert shrink["created"] and shrink["effective_from_ms"] > body["effective_from_ms"]


async def test_shard_map_lists_every_shard_endpoint(two_shards):
    body = await (await two_shards[1].client.get("/api/shard-map")).json()
    assert body["shards"] == [{"index": 0, "url": "http://shard-0.test:8082", "draining": False},
                              {"index": 1, "url": "http://shard-1.test:8082", "draining": False}]
    assert body["current_shard_count"] == 2 and body["shard_index"] == 1


async def test_drain_refuses_new_executions_and_finishes_the_old_ones(two_shards):
    first, second = two_shards
    r = await second.client.post("/api/catalog/register", json={"content": base64.b64encode(PLAYBOOK).decode()})
    assert r.status == 200
    started = await (await second.client.post("/api/execute", json={"path": "tests/two_steps"})).json()
    eid = int(started["execution_id"])
    status = await (await second.client.get("/api/internal/shard/status", headers=AUTH)).json()
    assert status["shard"] == 1 and not status["draining"] and status["running_executions"] == 1
    assert status["pending_epoch"] is None and status["epoch"] == {"effective_from_ms": 0, "shard_count": 2}

    _, drain = await commit(first, shard_count=1)
    svc = second.client.app[SERVICES]
    await wait_for(lambda: len(svc.shard_map.current.epochs) == 2, "shard 1 to learn the drain")
    # Draining from the moment the epoch is known: no new executions, 503 naming the shard.
    r = await second.client.post("/api/execute", json={"path": "tests/two_steps"})
    body = await r.json()
    assert r.status == 503 and body["code"] == "shard_draining" and body["shard"] == 1 and r.headers["Retry-After"]
    status = await (await second.client.get("/api/internal/shard/status", headers=AUTH)).json()
    assert status["draining"] and status["pending_epoch"] == {"effective_from_ms": drain["effective_from_ms"],
                                                              "shard_count": 1}
    # Once the drain is in force the old execution is still served, and still writes events.
    await wait_for(lambda: now_ms() > drain["effective_from_ms"] + 50, "the drain epoch to take effect")
    r = await second.client.post(f"/api/executions/{eid}/cancel", json={})
    assert r.status == 200, await r.text()
    events = (await (await second.client.get(f"/api/executions/{eid}/events")).json())["events"]
    final_map = svc.shard_map.current
    assert events[0]["event_type"] == "execution.cancelled"  # newest first
    for e in events:  # every id minted during the drain still belongs to shard 1 under the final map
        assert final_map.owner(int(e["event_id"])) == 1
        assert timestamp_ms(int(e["event_id"])) < drain["effective_from_ms"]
    status = await (await second.client.get("/api/internal/shard/status", headers=AUTH)).json()
    assert status["shard_count_now"] == 1 and status["pending_epoch"] is None and status["running_executions"] == 0
    assert status["total_executions"] == 1 and status["outbox_pending"] > 0 and not status["drained"]
    await second.shard.execute("DELETE FROM noetl.outbox")  # what the publisher does once it relayed them
    status = await (await second.client.get("/api/internal/shard/status", headers=AUTH)).json()
    assert status["drained"]
    listed = await (await second.client.get("/api/shard-map")).json()
    assert [s["draining"] for s in listed["shards"]] == [False, True]
