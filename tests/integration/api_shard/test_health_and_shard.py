"""Health, readiness, metrics, shard diagnostics and the shard map against real Postgres."""

from __future__ import annotations

import pytest

from noetl_common.sharding import shard_for

from .conftest import start_harness, stop_harness


async def test_healthz_readyz_and_api_health(shard_app):
    c = shard_app.client
    assert (await c.get("/healthz")).status == 200
    ready = await c.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["status"] == "ready"
    health = await c.get("/api/health")
    body = await health.json()
    assert health.status == 200
    assert body["status"] == "ok"
    assert body["database"] == "connected" and body["shard_database"] == "connected"
    assert body["shard_index"] == 0 and body["shard_count"] == 1


async def test_readyz_reports_an_unreachable_database(shard_app):
    # Close the app's shard pool underneath it: readiness must say which dependency failed.
    from noetl_api_shard.state import SERVICES

    svc = shard_app.client.app[SERVICES]
    await svc.shard_pool.close()
    ready = await shard_app.client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503
    assert "shard_db" in body["failures"] and "cluster_db" not in body["failures"]
    health = await shard_app.client.get("/api/health")
    assert health.status == 503
    assert (await health.json())["shard_database"] == "disconnected"


async def test_metrics_carry_the_shard_label(database_factory):
    h = await start_harness(await database_factory(), shard_index=1, shard_count=2)
    try:
        await h.client.get("/api/health")
        text = await (await h.client.get("/metrics")).text()
        assert 'noetl_http_requests_total{' in text
        assert 'route="/api/health"' in text and 'shard="1"' in text
    finally:
        await stop_harness(h)


@pytest.mark.parametrize("execution_id,count", [("1", 2), ("320816801799737344", 16), ("42", 4), ("325", 8)])
async def test_shard_info_matches_shard_for(shard_app, execution_id, count):
    resp = await shard_app.client.get("/api/runtime/shard-info",
                                      params={"execution_id": execution_id, "shard_count": str(count)})
    body = await resp.json()
    assert resp.status == 200
    assert body["shard_index"] == shard_for(int(execution_id), count)
    assert body["execution_id"] == int(execution_id)
    assert body["source"] == "noetl-server" and body["hash_function"] == "twox_hash::XxHash64"
    assert body["seed"] == 0
    assert body["server_config"] == {"shard_index": 0, "shard_count": 1}


async def test_shard_info_pinned_vector(shard_app):
    resp = await shard_app.client.get("/api/runtime/shard-info",
                                      params={"execution_id": "320816801799737344", "shard_count": "16"})
    assert (await resp.json())["shard_index"] == 14


@pytest.mark.parametrize("params,fragment", [
    ({"execution_id": "abc", "shard_count": "2"}, 'execution_id "abc" is not a valid i64'),
    ({"execution_id": "99999999999999999999", "shard_count": "2"}, "not a valid i64"),
    ({"execution_id": "1", "shard_count": "0"}, "shard_count must be >= 1"),
    ({"execution_id": "1", "shard_count": "2000"}, "shard_count 2000 exceeds practical maximum 1024"),
    ({"execution_id": "1", "shard_count": "x"}, "shard_count must be an integer"),
    ({"shard_count": "2"}, "execution_id is required"),
    ({"execution_id": "1"}, "shard_count is required"),
])
async def test_shard_info_rejects_bad_input(shard_app, params, fragment):
    resp = await shard_app.client.get("/api/runtime/shard-info", params=params)
    body = await resp.json()
    assert resp.status == 400
    assert fragment in body["error"] and body["status"] == 400


async def test_shard_map_is_seeded_once_from_the_shard_count(database_factory):
    dbs = await database_factory()
    first = await start_harness(dbs, shard_index=0, shard_count=3)
    second = await start_harness(dbs, shard_index=1, shard_count=3)
    try:
        for h in (first, second):
            resp = await h.client.get("/api/shard-map")
            body = await resp.json()
            assert resp.status == 200
            assert body["epochs"] == [{"effective_from_ms": 0, "shard_count": 3}]
            assert body["current_shard_count"] == 3
        assert await first.count("shard_map") == 1
        # A second epoch written by an operator is served as-is (the map, not the env, decides).
        await first.cluster.execute("INSERT INTO noetl.shard_map VALUES (1900000000000, 6)")
        body = await (await second.client.get("/api/shard-map")).json()
        assert body["epochs"] == [{"effective_from_ms": 0, "shard_count": 3},
                                  {"effective_from_ms": 1900000000000, "shard_count": 6}]
    finally:
        await stop_harness(first)
        await stop_harness(second)


async def test_unknown_route_and_method_are_json(shard_app):
    resp = await shard_app.client.get("/api/nope")
    assert resp.status == 404 and "no route" in (await resp.json())["error"]
    resp = await shard_app.client.delete("/api/health")
    assert resp.status == 405 and (await resp.json())["status"] == 405
