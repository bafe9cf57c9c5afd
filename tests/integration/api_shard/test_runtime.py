"""Worker pools: register (upsert), heartbeat (incl. unknown and recreate), deregister, list."""

from __future__ import annotations

import pytest

POOL = {"name": "pool-a", "runtime": "python", "capacity": 4, "labels": {"zone": "a"},
        "pid": 123, "hostname": "host-a", "uri": "http://host-a:9000"}


async def test_register_is_an_upsert(shard_app):
    c = shard_app.client
    first = await (await c.post("/api/worker/pool/register", json=POOL)).json()
    assert first["status"] == "ok" and first["name"] == "pool-a" and first["runtime"] == "python"
    assert first["kind"] == "worker_pool" and first["runtime_id"].isdigit()
    second = await (await c.post("/api/worker/pool/register", json={**POOL, "capacity": 8})).json()
    assert second["runtime_id"] == first["runtime_id"]
    assert await shard_app.count("runtime") == 1
    assert await shard_app.cluster.fetchval("SELECT capacity FROM noetl.runtime") == 8


async def test_heartbeat_known_unknown_and_recreated(shard_app):
    c = shard_app.client
    reg = await (await c.post("/api/worker/pool/register", json=POOL)).json()
    before = await shard_app.cluster.fetchval("SELECT heartbeat FROM noetl.runtime")
    ok = await c.post("/api/worker/pool/heartbeat", json={"name": "pool-a"})
    assert ok.status == 200 and await ok.json() == {"status": "ok", "name": "pool-a",
                                                       "runtime_id": reg["runtime_id"],
                                                       "kind": None, "runtime": None}
    assert await shard_app.cluster.fetchval("SELECT heartbeat FROM noetl.runtime") > before

    unknown = await c.post("/api/worker/pool/heartbeat", json={"name": "ghost"})
    body = await unknown.json()
    assert unknown.status == 404 and unknown.headers["Retry-After"] == "3"
    assert body["detail"] == {"status": "unknown", "name": "ghost"} and "ghost" in body["error"]
    assert await shard_app.count("runtime") == 1

    recreated = await c.post("/api/worker/pool/heartbeat", json={
        "name": "ghost", "registration": {"runtime": "rust", "capacity": 2}})
    rbody = await recreated.json()
    assert recreated.status == 200 and rbody["status"] == "recreated" and rbody["runtime"] == "rust"
    assert await shard_app.count("runtime") == 2


async def test_deregister_and_list(shard_app):
    c = shard_app.client
    await c.post("/api/worker/pool/register", json=POOL)
    await c.post("/api/worker/pool/register", json={**POOL, "name": "pool-b", "runtime": "rust"})
    listing = await (await c.get("/api/worker/pools")).json()
    assert listing["count"] == 2 and [i["name"] for i in listing["items"]] == ["pool-a", "pool-b"]
    item = listing["items"][0]
    assert item["capacity"] == 4 and item["labels"] == {"zone": "a"} and item["status"] == "ready"
    assert item["heartbeat"] and item["uri"] == "http://host-a:9000"

    resp = await c.request("DELETE", "/api/worker/pool/deregister", json={"name": "pool-a"})
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await c.post("/api/worker/pool/deregister", json={"name": "pool-b"})
    assert resp.status == 200
    offline = await (await c.get("/api/worker/pools", params={"status": "offline"})).json()
    assert offline["count"] == 2 and offline["status"] == "offline"
    rust = await (await c.get("/api/worker/pools", params={"runtime": "rust"})).json()
    assert [i["name"] for i in rust["items"]] == ["pool-b"]
    ready = await (await c.get("/api/worker/pools", params={"status": "ready"})).json()
    assert ready["count"] == 0
    missing = await c.post("/api/worker/pool/deregister", json={"name": "nobody"})
    assert missing.status == 404


@pytest.mark.parametrize("route,payload,status,fragment", [
    # Required fields and bounds are the Structs' (msgspec checks them on decode: 422 at the field).
    ("/api/worker/pool/register", {"runtime": "python"}, 422, "`name`"),
    ("/api/worker/pool/register", {"name": "  ", "runtime": "python"}, 422, "$.name"),
    ("/api/worker/pool/register", {"name": "p"}, 422, "`runtime`"),
    ("/api/worker/pool/register", {"name": "p", "runtime": {"worker_public_key": "k"}}, 422, "`kind`"),
    ("/api/worker/pool/register", {"name": "p", "runtime": "python", "capacity": "lots"}, 422, "$.capacity"),
    ("/api/worker/pool/register", {"name": "p", "runtime": "python", "capacity": -1}, 422, "$.capacity"),
    ("/api/worker/pool/register", {"name": ["p"], "runtime": "python"}, 422, "$.name"),
    ("/api/worker/pool/heartbeat", {}, 422, "`name`"),
    ("/api/worker/pool/heartbeat", {"name": "x", "registration": "yes"}, 422, "$.registration"),
    ("/api/worker/pool/deregister", {}, 422, "`name`"),
])
async def test_bad_pool_requests_write_nothing(shard_app, route, payload, status, fragment):
    resp = await shard_app.client.post(route, json=payload)
    body = await resp.json()
    assert resp.status == status, body
    assert fragment in body["error"]
    assert await shard_app.count("runtime") == 0


async def test_malformed_pool_json(shard_app):
    resp = await shard_app.client.post("/api/worker/pool/register", data=b"{name:",
                                       headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "malformed JSON" in (await resp.json())["error"]
    assert await shard_app.count("runtime") == 0


async def test_a_rust_worker_registers_with_a_runtime_object(shard_app):
    c = shard_app.client
    body = {"name": "rust-1", "component_type": "worker_pool", "status": "ready", "hostname": "h",
            "runtime": {"kind": "rust", "worker_public_key": "cHVibGlj"}, "labels": {"pool_name": "shared"}}
    r = await c.post("/api/worker/pool/register", json=body)
    assert r.status == 200, await r.text()
    assert (await r.json())["runtime"] == "rust"
    listed = await (await c.get("/api/worker/pools", params={"runtime": "rust"})).json()
    assert [p["name"] for p in listed["items"]] == ["rust-1"]
    stored = await shard_app.cluster.fetchval("SELECT runtime FROM noetl.runtime WHERE name = 'rust-1'")
    assert stored["worker_public_key"] == "cHVibGlj"
    r = await c.post("/api/worker/pool/register", json={**body, "runtime": {"worker_public_key": "x"}})
    assert r.status == 422 and "`kind`" in (await r.json())["error"]  # RuntimeSpec requires it
