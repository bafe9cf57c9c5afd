"""The router in front of three real api-shard processes: cluster-wide routes, id routing by
header / path / event id / body, fan-out, bad ids, the real `noetl` CLI, and a shard dying
and coming back. Tests run in file order; the outage test is last and restores the shard."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio

from noetl_common.ids import mint_for_shard
from noetl_common.sharding import shard_for

from .conftest import INTERNAL_TOKEN, SHARDS

pytestmark = pytest.mark.integration

NOETL_CLI = Path(sys.executable).parent / "noetl"
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: routed
  path: tests/routed
workflow:
  - step: start
    tool: {kind: python, code: 'result = {"ok": True}'}
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest_asyncio.fixture(scope="module")
async def registered(fleet):
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{fleet.router_url}/api/catalog/register",
                          json={"content": b64(PLAYBOOK), "resource_type": "Playbook"}) as r:
            assert r.status == 200, await r.text()
    return fleet


async def test_catalog_register_and_list_through_the_router(registered, http):
    url = registered.router_url
    seen = set()
    for _ in range(SHARDS):  # round robin: every shard answers from the same cluster database
        async with http.post(f"{url}/api/catalog/list", json={"resource_type": "Playbook"}) as r:
            assert r.status == 200
            seen.add(r.headers["X-Shard"])
            paths = [e["path"] for e in (await r.json())["entries"]]
            assert "tests/routed" in paths
    assert seen == {str(i) for i in range(SHARDS)}


async def test_credentials_through_the_router(fleet, http):
    url = fleet.router_url
    async with http.post(f"{url}/api/credentials",
                         json={"name": "router_pg", "type": "postgres", "data": {"password": "s3cret"}}) as r:
        assert r.status in (200, 201), await r.text()
        assert "s3cret" not in await r.text()
    for _ in range(SHARDS):
        async with http.get(f"{url}/api/credentials/router_pg", params={"include_data": "true"}) as r:
            assert r.status == 403 and "s3cret" not in await r.text()  # plaintext is for workers only
        async with http.get(f"{url}/api/credentials/router_pg", params={"include_data": "true"},
                            headers=AUTH) as r:  # the router passes the bearer token on
            assert r.status == 200, await r.text()
            assert (await r.json())["data"]["password"] == "s3cret"


@pytest.mark.parametrize("k", range(SHARDS))
async def test_execution_id_header_lands_on_the_owner(fleet, http, k):
    eid = mint_for_shard(k, SHARDS)
    # shard-info reports the answering shard's own index: independent evidence of where it landed.
    async with http.get(f"{fleet.router_url}/api/runtime/shard-info", params={"execution_id": "1", "shard_count": "2"},
                        headers={"X-Execution-ID": str(eid)}) as r:
        assert r.status == 200
        assert r.headers["X-Shard"] == str(k)
        assert (await r.json())["server_config"]["shard_index"] == k


@pytest.mark.parametrize("k", range(SHARDS))
async def test_path_ids_and_event_ids_route_by_hash(fleet, http, k):
    eid = mint_for_shard(k, SHARDS)
    for path in (f"/api/executions/{eid}/status", f"/api/commands/{eid}", f"/api/vars/{eid}"):
        async with http.get(fleet.router_url + path) as r:
            # The owner answers "not found" (a non-owner would have said 421).
            assert r.headers["X-Shard"] == str(k), path
            assert r.status in (200, 404), (path, r.status, await r.text())


async def test_execute_places_and_follow_ups_reach_the_owner(registered, http):
    url = registered.router_url
    placed = set()
    for _ in range(SHARDS):
        async with http.post(f"{url}/api/execute", json={"path": "tests/routed"}) as r:
            assert r.status == 200, await r.text()
            eid = int((await r.json())["execution_id"])
            placed.add(int(r.headers["X-Shard"]))
        owner = shard_for(eid, SHARDS)
        assert owner == int(r.headers["X-Shard"])
        async with http.get(f"{url}/api/executions/{eid}/events") as r:
            assert r.status == 200 and r.headers["X-Shard"] == str(owner)
            issued = [e for e in (await r.json())["events"] if e["event_type"] == "command.issued"]
        async with http.get(f"{url}/api/commands/{issued[0]['event_id']}") as r:
            assert r.status == 200 and r.headers["X-Shard"] == str(owner), await r.text()
        async with http.post(f"{url}/api/events", json={"execution_id": str(eid), "name": "step.note",
                                                          "node_name": "start", "worker_id": "w"}) as r:
            assert r.headers["X-Shard"] == str(owner)
            assert r.status != 421 and r.status < 500, await r.text()
        other = registered.shards[(owner + 1) % SHARDS]
        async with http.get(f"{other.url}/api/executions/{eid}/status") as r:
            assert r.status == 421  # proof the router, not luck, chose the owner
    assert placed == set(range(SHARDS))


@pytest.mark.parametrize("method,path,kwargs,fragment", [
    ("GET", "/api/executions/abc/status", {}, "'abc'"),
    ("GET", "/api/vars/12x", {}, "'12x'"),
    ("POST", "/api/commands/not-an-id/claim", {"json": {}}, "event id"),
    ("GET", "/api/catalog/list", {"headers": {"X-Execution-ID": "zz"}}, "X-Execution-ID"),
    ("POST", "/api/events", {"json": {"execution_id": "nope"}}, "execution_id in the body"),
    ("POST", "/api/events/batch", {"json": {"events": []}}, "execution_id is required"),
    ("GET", "/api/replay/state", {"params": {"execution_id": "1e3"}}, "execution_id"),
])
async def test_bad_ids_are_400_json_naming_them(fleet, http, method, path, kwargs, fragment):
    async with http.request(method, fleet.router_url + path, **kwargs) as r:
        assert r.status == 400
        body = await r.json()
        assert fragment in body["error"] and body["status"] == 400


async def test_list_fans_out_merges_newest_first_and_paginates(registered, http):
    url = registered.router_url
    for _ in range(4):
        async with http.post(f"{url}/api/execute", json={"path": "tests/routed"}) as r:
            assert r.status == 200
    async with http.get(f"{url}/api/executions", params={"limit": "500"}) as r:
        assert r.status == 200 and "X-Next-Cursor" not in r.headers
        everything = await r.json()
    assert len(everything) >= 7
    assert {shard_for(int(e["execution_id"]), SHARDS) for e in everything} == set(range(SHARDS))
    keys = [(e["start_time"], int(e["execution_id"])) for e in everything]
    assert keys == sorted(keys, reverse=True)

    walked, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with http.get(f"{url}/api/executions", params=params) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
            assert len(page) <= 2
            walked.extend(e["execution_id"] for e in page)
            cursor = r.headers.get("X-Next-Cursor")
        if not cursor:
            break
    assert walked == [e["execution_id"] for e in everything]

    async with http.get(f"{url}/api/executions", params={"page": "2", "page_size": "3"}) as r:
        assert [e["execution_id"] for e in await r.json()] == walked[3:6]
    async with http.get(f"{url}/api/executions", params={"status": "bogus"}) as r:
        assert r.status == 400 and "X-Shard" in r.headers  # the shard's own refusal, passed through
    async with http.get(f"{url}/api/executions", params={"cursor": "garbage"}) as r:
        assert r.status == 400 and "cursor" in (await r.json())["error"]


async def test_pending_count_sums_the_shards(fleet, http):
    async with http.get(f"{fleet.router_url}/api/internal/outbox/pending-count", headers=AUTH) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert set(body["shards"]) == {str(i) for i in range(SHARDS)}
    assert body["pending"] == sum(body["shards"].values())
    async with http.get(f"{fleet.router_url}/api/internal/outbox/pending-count") as r:
        assert r.status == 403


async def test_preview_readyz_and_metrics(fleet, http):
    url = fleet.router_url
    async with http.get(f"{url}/sharding/preview", params={"execution_id": "320816801799737344",
                                                          "shard_count": "16"}) as r:
        assert (await r.json()) == {"execution_id": 320816801799737344, "shard_count": 16, "shard_index": 14,
                                    "source": "noetl-gateway", "hash_function": "twox_hash::XxHash64", "seed": 0}
    async with http.get(f"{url}/sharding/preview", params={"execution_id": "abc", "shard_count": "2"}) as r:
        assert r.status == 400 and (await r.json())["error"] == 'execution_id "abc" is not a valid i64'
    async with http.get(f"{url}/readyz") as r:
        assert r.status == 200
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    for i in range(SHARDS):
        assert f'noetl_router_upstream_healthy{{shard="{i}"}} 1.0' in text
    assert 'noetl_router_upstream_requests_total{method="GET",shard="0",status="200"}' in text
    assert "noetl_router_upstream_request_duration_seconds_bucket" in text


def _cli(port: int, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}, "HOME": str(home)}
    return subprocess.run([str(NOETL_CLI), "--host", "127.0.0.1", "--port", str(port), *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.skipif(not NOETL_CLI.exists(), reason="the noetl CLI is not installed in this virtualenv")
async def test_real_noetl_cli_through_the_router(fleet, tmp_path):
    f = tmp_path / "cli.yaml"
    f.write_text(PLAYBOOK.replace("tests/routed", "tests/cli_routed").replace("name: routed", "name: cli_routed"))
    reg = await asyncio.to_thread(_cli, fleet.router_port, tmp_path, "register", "playbook", "--file", str(f))
    assert reg.returncode == 0, reg.stderr + reg.stdout
    assert "registered" in reg.stdout
    listed = await asyncio.to_thread(_cli, fleet.router_port, tmp_path, "catalog", "list", "Playbook")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout[listed.stdout.index("{"):])
    assert "tests/cli_routed" in [e["path"] for e in payload["entries"]]


async def test_router_process_serves_logs_json_and_stops_cleanly(fleet, http):
    from .conftest import free_port
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOETL_")},
           "NOETL_SHARD_URLS": ",".join(s.url for s in fleet.shards), "NOETL_HTTP_HOST": "127.0.0.1",
           "NOETL_HTTP_PORT": str(port), "NOETL_INTERNAL_API_TOKEN": INTERNAL_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "noetl_router"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            assert time.monotonic() < deadline, "router process never became ready"
            await asyncio.sleep(0.1)
        eid = mint_for_shard(1, SHARDS)
        async with http.get(f"http://127.0.0.1:{port}/api/executions/{eid}/status") as r:
            assert r.status == 404 and r.headers["X-Shard"] == "1"
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    lines = proc.stderr.read().decode().strip().splitlines()
    assert lines and all(json.loads(line)["service"] == "router" for line in lines)


async def test_router_configuration_error_exits_2_with_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "noetl_router"], env=env,
                                     capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOETL_SHARD_URLS" in lines[0]


async def test_dead_shard_is_503_fast_others_work_and_it_comes_back(fleet, http):
    url = fleet.router_url
    victim = fleet.shards[SHARDS - 1]
    dead_id = mint_for_shard(victim.index, SHARDS)
    live_id = mint_for_shard(0, SHARDS)
    victim.kill()
    try:
        for _ in range(3):
            started = time.monotonic()
            async with http.get(f"{url}/api/executions/{dead_id}/status") as r:
                elapsed = time.monotonic() - started
                assert r.status == 503
                body = await r.json()
                assert body["shard"] == victim.index and f"shard {victim.index}" in body["error"]
                assert r.headers["X-Shard"] == str(victim.index)
            assert elapsed < 1.5
        async with http.get(f"{url}/api/executions/{live_id}/status") as r:
            assert r.status == 404 and r.headers["X-Shard"] == "0"
        for _ in range(SHARDS + 1):  # cluster-wide requests skip the dead shard
            async with http.post(f"{url}/api/catalog/list", json={"resource_type": "Playbook"}) as r:
                assert r.status == 200 and r.headers["X-Shard"] != str(victim.index)
        async with http.get(f"{url}/metrics") as r:
            assert f'noetl_router_upstream_healthy{{shard="{victim.index}"}} 0.0' in await r.text()
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200  # two shards still serve
    finally:
        victim.start()
        await victim.wait_ready()
    deadline = time.monotonic() + 10
    while True:
        async with http.get(f"{url}/api/executions/{dead_id}/status") as r:
            if r.status == 404 and r.headers["X-Shard"] == str(victim.index):
                break
        assert time.monotonic() < deadline, "the router never took the restarted shard back"
        await asyncio.sleep(0.1)
