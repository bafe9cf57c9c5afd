"""Errors a client can act on when the database is the problem: an exhausted pool is a 503
`pool_saturated`, a stopped Postgres a 503 (`db_unavailable` from the shard, or, once the router
has seen the shard unready, its `shard_unavailable`, or `no_healthy_shard` for a request any shard
could take), both with `Retry-After`; readiness goes
false, and everything works again when Postgres is back. The outage test runs its own Postgres,
so stopping it touches no other test."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from noetl_common.db import create_pool
from noetl_common.errors import json_response
from noetl_common.http import build_app
from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.local_fleet import discard_state
from noetl_devstack.postgres import EmbeddedPostgres
from noetl_devstack.processes import Supervisor


async def test_an_exhausted_pool_is_a_503_pool_saturated_then_serves_again(pg_admin_dsn):
    pool = await create_pool(pg_admin_dsn, 1, 1, acquire_timeout=0.2)

    async def one(request: web.Request) -> web.Response:
        return json_response({"one": await pool.fetchval("SELECT 1")})

    app = build_app(service="test", max_body_bytes=2048)
    app.router.add_get("/one", one)
    try:
        async with TestClient(TestServer(app)) as client:
            async with pool.acquire():  # the only connection, held
                r = await client.get("/one")
                assert r.status == 503
                assert (await r.json())["code"] == "pool_saturated"
                assert int(r.headers["Retry-After"]) > 0
            r = await client.get("/one")
            assert r.status == 200 and (await r.json()) == {"one": 1}
    finally:
        await pool.close()


PLAYBOOK = b"""apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: outage, path: tests/outage}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'n': 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'n': 2}"}
"""


async def _run_one(http: aiohttp.ClientSession, router: str) -> dict:
    async with http.post(f"{router}/api/execute", json={"path": "tests/outage"}) as r:
        assert r.status in (200, 201, 202), await r.text()
        eid = (await r.json())["execution_id"]
    for _ in range(600):
        async with http.get(f"{router}/api/executions/{eid}/status") as r:
            if r.status == 200 and (status := await r.json()).get("completed"):
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"execution {eid} did not finish")


def _db_routes(eid: str) -> list[tuple[str, str, dict | None]]:
    """One route of each DB-backed handler family, through the router."""
    return [
        ("POST", "/api/execute", {"path": "tests/outage"}),
        ("GET", "/api/executions", None),
        ("GET", f"/api/executions/{eid}", None),
        ("GET", f"/api/executions/{eid}/events", None),
        ("GET", f"/api/vars/{eid}", None),
        ("POST", "/api/catalog/register", {"content": base64.b64encode(PLAYBOOK).decode()}),
        ("POST", "/api/catalog/list", {}),
        ("GET", "/api/credentials", None),
        ("GET", "/api/worker/pools", None),
    ]


async def test_postgres_down_is_503_with_retry_after_and_the_fleet_recovers():
    work = Path(tempfile.mkdtemp(prefix="noetl-outage-test-"))
    infra = Infra(work, env={})  # its own embedded Postgres and NATS, whatever the environment says
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(1)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(1),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=1))
        await start_fleet(supervisor, specs)
        router, shard = router_url(specs), specs[0].url
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(f"{router}/api/catalog/register",
                                 json={"content": base64.b64encode(PLAYBOOK).decode()}) as r:
                assert r.status == 200, await r.text()
            done = await _run_one(http, router)
            assert done["status"] == "COMPLETED"
            eid = done["execution_id"]

            postgres = EmbeddedPostgres(work / "pg", mode=info.pg_mode)
            await asyncio.to_thread(postgres.stop)
            async with http.get(f"{shard}/readyz") as r:
                assert r.status == 503
            for method, path, body in _db_routes(eid):
                async with http.request(method, f"{router}{path}", json=body) as r:
                    answer = await r.json()
                    assert r.status == 503, (method, path, r.status, answer)
                    assert answer["code"] in ("db_unavailable", "shard_unavailable", "no_healthy_shard"), (path, answer)
                    assert int(r.headers["Retry-After"]) > 0, path
            # The shard itself names the database as the problem.
            async with http.get(f"{shard}/api/executions/{eid}") as r:
                assert r.status == 503 and (await r.json())["code"] == "db_unavailable"

            port = urlsplit(info.admin_dsn).port
            await asyncio.to_thread(postgres.start, port)
            for _ in range(300):  # the router re-admits the shard once its readiness probe passes
                async with http.get(f"{router}/api/executions/{eid}") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the fleet did not come back after Postgres did")
            assert (await _run_one(http, router))["status"] == "COMPLETED"
    finally:
        supervisor.stop_all()
        infra.down()
        discard_state(work)
