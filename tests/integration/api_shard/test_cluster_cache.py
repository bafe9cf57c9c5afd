"""The shards' cache of cluster rows on real databases: two shards share one cluster database; a
change made through one (register, archive, credential upsert and delete) is what the other serves
from its next request on, while unchanged rows come from its cache (store.cluster_cache)."""

from __future__ import annotations

import base64

import pytest

from noetl_api_shard.state import SERVICES

from .conftest import INTERNAL_TOKEN, stop_harness
from .test_executions import PLAYBOOK
from .test_scaling import start_two, wait_for

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
CONTENT = base64.b64encode(PLAYBOOK).decode()


def hits(h) -> float:
    return h.client.app[SERVICES].metrics.cluster_cache_hits._value.get()


@pytest.fixture
async def shards(database_factory):
    """Two shards on one cluster database, both listening."""
    pair = await start_two(database_factory, {})
    try:
        for h in pair:
            await wait_for(lambda h=h: h.client.app[SERVICES].cluster_cache.listening, "the cluster listener")
        yield pair
    finally:
        for h in pair:
            await stop_harness(h)


async def started_catalog_id(h) -> str:
    r = await h.client.post("/api/execute", json={"path": "tests/two_steps"})
    assert r.status == 200, await r.text()
    return (await r.json())["catalog_id"]


async def test_a_start_on_another_shard_runs_the_version_just_registered(shards):
    a, b = shards
    for _ in range(15):
        r = await a.client.post("/api/catalog/register", json={"content": CONTENT})
        registered = (await r.json())["catalog_id"]
        assert await started_catalog_id(b) == registered
        before = hits(b)
        assert await started_catalog_id(b) == registered
        assert hits(b) == before + 1  # the second start read nothing from the cluster database
    latest = await (await a.client.post("/api/catalog/resource", json={"path": "tests/two_steps"})).json()
    assert latest["version"] == 15

    # Archiving the newest version on one shard: the other starts the one before at once.
    r = await a.client.post("/api/catalog/delete", json={"path": "tests/two_steps", "version": 15}, headers=AUTH)
    assert r.status == 200, await r.text()
    r = await b.client.post("/api/execute", json={"path": "tests/two_steps"})
    assert r.status == 200 and (await r.json())["catalog_id"] != registered


async def test_a_credential_changed_on_one_shard_is_what_the_other_serves_next(shards):
    a, b = shards
    for n in range(5):
        body = {"name": "pg", "type": "postgres", "data": {"password": f"pw-{n}"}}
        assert (await a.client.post("/api/credentials", json=body)).status == 200
        for _ in range(2):
            r = await b.client.get("/api/credentials/pg", params={"include_data": "true"}, headers=AUTH)
            assert (await r.json())["data"] == {"password": f"pw-{n}"}
    assert hits(b) >= 5
    assert (await a.client.delete("/api/credentials/pg")).status == 200
    assert (await b.client.get("/api/credentials/pg")).status == 404


async def test_a_shard_whose_listener_is_down_reads_through(shards):
    a, b = shards
    await a.client.post("/api/catalog/register", json={"content": CONTENT})
    b.client.app[SERVICES].cluster_cache.resync(False)  # as the listener does when its connection is lost
    before = hits(b)
    for _ in range(3):
        await started_catalog_id(b)
    assert hits(b) == before
