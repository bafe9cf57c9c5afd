"""NoETL's health and pool routes, through the router and on a shard: `/health`,
`/api/health`, `/api/health/ready`, `/api/pool/status`."""

from __future__ import annotations

import pytest

from .conftest import SHARDS

pytestmark = pytest.mark.integration

POOL_FIELDS = {"pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting", "utilization",
               "slots_available", "status"}


async def test_liveness_is_noetl_shaped_on_router_and_shard(fleet, http):
    for base in (fleet.router_url, fleet.shards[1].url):
        async with http.get(f"{base}/health") as r:
            assert r.status == 200 and await r.json() == {"status": "ok"}


async def test_readiness_on_router_and_shard(fleet, http):
    for base in (fleet.router_url, fleet.shards[2].url):
        async with http.get(f"{base}/api/health/ready") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["status"] == "ready"


async def test_api_health_on_a_shard_and_fleet_wide_on_the_router(fleet, http):
    async with http.get(f"{fleet.shards[0].url}/api/health") as r:
        shard = await r.json()
        assert r.status == 200 and shard["status"] == "ok" and shard["database"] == "connected"
    async with http.get(f"{fleet.router_url}/api/health") as r:
        body = await r.json()
        assert r.status == 200, body
    assert body["status"] == "ok" and body["database"] == "connected" and body["shard_count"] == SHARDS
    assert {"nats", "uptime_seconds", "version"} <= set(body)
    assert sorted(body["shards"]) == [str(i) for i in range(SHARDS)]
    assert all(s["status"] == "ok" for s in body["shards"].values())
    assert {s["shard_index"] for s in body["shards"].values()} == set(range(SHARDS))


async def test_pool_status_on_a_shard(fleet, http):
    async with http.get(f"{fleet.shards[1].url}/api/pool/status") as r:
        body = await r.json()
        assert r.status == 200, body
    assert POOL_FIELDS <= set(body) and body["status"] == "ok" and body["shard_index"] == 1
    # The shard processes of this fleet run with NOETL_DB_POOL_MIN=1, NOETL_DB_POOL_MAX=4.
    assert body["pool_min"] == 1 and body["pool_max"] == 4
    assert 1 <= body["pool_size"] <= 4 and 0 <= body["pool_available"] <= body["pool_size"]
    assert 0 <= body["utilization"] <= 1
    assert body["slots_available"] == body["pool_max"] - (body["pool_size"] - body["pool_available"])
    assert set(body["pools"]) == {"shard", "shard_write", "cluster"}


async def test_pool_status_through_the_router_sums_the_shards(fleet, http):
    async with http.get(f"{fleet.router_url}/api/pool/status") as r:
        body = await r.json()
        assert r.status == 200, body
    assert POOL_FIELDS <= set(body) and body["status"] == "ok"
    assert body["shard_count"] == SHARDS == body["shards_reporting"]
    parts = body["shards"].values()
    assert body["pool_max"] == sum(p["pool_max"] for p in parts) == 4 * SHARDS
    assert body["pool_min"] == SHARDS
    in_use = body["pool_size"] - body["pool_available"]
    assert body["utilization"] == pytest.approx(in_use / body["pool_max"], abs=1e-3)


async def test_api_health_reports_a_dead_shard(fleet, http):
    """Last in this file: stops shard 2 and brings it back."""
    victim = fleet.shards[2]
    victim.kill()
    try:
        async with http.get(f"{fleet.router_url}/api/health") as r:
            body = await r.json()
            assert r.status == 503, body
        assert body["status"] == "unhealthy" and body["shards"]["2"]["status"] == "unreachable"
        async with http.get(f"{fleet.router_url}/api/pool/status") as r:
            pools = await r.json()
            assert r.status == 200
        assert pools["status"] == "degraded" and pools["shards_reporting"] == SHARDS - 1
        assert pools["shards"]["2"]["status"] == "unavailable"
    finally:
        victim.start()
        await victim.wait_ready()
