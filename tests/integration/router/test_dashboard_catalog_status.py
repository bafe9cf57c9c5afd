"""NoETL's dashboard, catalog delete/restore and status routes through the router."""

from __future__ import annotations

import uuid

from .conftest import INTERNAL_TOKEN, SHARDS
from .noetl_helpers import register, start

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def playbook(path: str) -> str:
    return f"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: dash, path: {path}}}
workflow:
  - step: start
    tool: {{kind: python, code: "result = 1"}}
"""


async def test_dashboard_stats_sum_every_shards_executions(fleet, http):
    path = f"tests/dash_{uuid.uuid4().hex[:8]}"
    await register(http, fleet.router_url, playbook(path))
    for _ in range(2 * SHARDS):  # round robin: every shard starts some
        await start(http, fleet.router_url, path)
    per_shard = []
    for shard in fleet.shards:
        async with http.get(f"{shard.url}/api/dashboard/stats") as r:
            assert r.status == 200
            per_shard.append(await r.json())
    async with http.get(f"{fleet.router_url}/api/dashboard/stats") as r:
        assert r.status == 200
        fleet_stats = await r.json()
    assert all(s["total_executions"] > 0 for s in per_shard)  # each shard holds some: a sum is needed
    assert fleet_stats["total_executions"] == sum(s["total_executions"] for s in per_shard)
    assert fleet_stats["active_workflows"] == sum(s["active_workflows"] for s in per_shard)
    assert fleet_stats["stats"]["total_executions"] == fleet_stats["total_executions"]
    assert fleet_stats["total_playbooks"] == per_shard[0]["total_playbooks"] >= 1  # cluster-wide: not summed
    assert sorted(fleet_stats["shards"]) == [str(i) for i in range(SHARDS)]

    async with http.get(f"{fleet.router_url}/api/dashboard/widgets") as r:
        assert r.status == 200
        widgets = (await r.json())["widgets"]
    assert {"execution_stats", "recent_executions"} <= {w["id"] for w in widgets}


async def listed(http, url: str, path: str) -> list[int]:
    async with http.post(f"{url}/api/catalog/list", json={"path": path, "all_versions": True}) as r:
        return sorted(e["version"] for e in (await r.json())["entries"])


async def test_catalog_delete_archives_and_restore_brings_back(fleet, http):
    url = fleet.router_url
    path = f"tests/retire_{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await register(http, url, playbook(path))
    assert await listed(http, url, path) == [1, 2]

    async with http.post(f"{url}/api/catalog/delete", json={"path": path, "version": 2}) as r:
        assert r.status == 403  # retiring is for trusted callers
    async with http.post(f"{url}/api/catalog/delete", json={"path": path, "version": 2}, headers=AUTH) as r:
        assert r.status == 200
        gone = await r.json()
    assert gone["status"] == "success" and gone["count"] == 1 and gone["deleted"][0]["version"] == 2
    assert await listed(http, url, path) == [1]
    async with http.post(f"{url}/api/catalog/resource", json={"path": path}) as r:
        assert (await r.json())["version"] == 1  # the latest left

    async with http.post(f"{url}/api/catalog/delete", json={"path": path}, headers=AUTH) as r:
        assert (await r.json())["count"] == 1  # the other; version 2 is archived already
    assert await listed(http, url, path) == []
    async with http.post(f"{url}/api/catalog/delete", json={"path": path}, headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["count"] == 0  # idempotent

    async with http.post(f"{url}/api/catalog/restore", json={"path": path}, headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["count"] == 2
    assert await listed(http, url, path) == [1, 2]
    await register(http, url, playbook(path))  # version numbers are never reused
    assert await listed(http, url, path) == [1, 2, 3]

    async with http.post(f"{url}/api/catalog/delete", json={"path": " "}, headers=AUTH) as r:
        assert r.status == 422 and "path" in (await r.json())["error"]
    async with http.post(f"{url}/api/catalog/delete", json={"path": path, "version": 0}, headers=AUTH) as r:
        assert r.status == 422 and "version" in (await r.json())["error"]


async def test_root_and_status_through_the_router(fleet, http):
    async with http.get(f"{fleet.router_url}/") as r:
        assert r.status == 200 and (await r.json())["service"] == "router"
    async with http.get(f"{fleet.router_url}/api/status") as r:
        body = await r.json()
        assert r.status == 200 and body["service"] == "router" and body["status"] == "ok"
    async with http.get(f"{fleet.shards[0].url}/api/status") as r:
        assert (await r.json())["service"] == "api-shard"
