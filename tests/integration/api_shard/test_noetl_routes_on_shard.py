"""The NoETL routes added for issue 12, on one shard of two (no router): ids another shard owns
are a 421 naming it; the shard's pool status; the result store's table from its migration."""

from __future__ import annotations

import pytest

from noetl_common.ids import mint_for_shard

from .conftest import start_harness, stop_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def shard0(database_factory):
    harness = await start_harness(await database_factory(), shard_index=0, shard_count=2)
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def test_ids_of_the_other_shard_are_421_naming_it(shard0):
    c = shard0.client
    other = mint_for_shard(1, 2)
    for method, path, kwargs in [
        ("GET", f"/api/events/batch/{other}/status", {}),
        ("GET", f"/api/events/batch/{other}/stream", {}),
        ("PUT", f"/api/result/{other}", {"json": {"name": "a", "data": 1}}),
        ("GET", f"/api/result/{other}/list", {}),
        ("GET", "/api/result/resolve", {"params": {"ref": f"noetl://execution/{other}/result/a/1"}}),
        ("DELETE", f"/api/temp/{other}", {}),
    ]:
        r = await c.request(method, path, **kwargs)
        body = await r.json()
        assert r.status == 421 and body["owner_shard"] == 1, (path, body)


async def test_pool_status_reads_the_shards_pools(shard0):
    r = await shard0.client.get("/api/pool/status")
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "ok" and body["shard_index"] == 0
    assert body["pool_max"] == shard0.settings.pool_max == body["pools"]["shard"]["pool_max"]
    assert body["pools"]["cluster"]["pool_max"] == shard0.settings.pool_max


async def test_result_store_table_exists_with_its_scope_check(shard0):
    assert await shard0.count("result_store", "shard") == 0
    with pytest.raises(Exception, match="result_store_scope_check"):
        await shard0.shard.execute("INSERT INTO noetl.result_store (result_id, execution_id, name, scope, bytes, "
                                   "sha256) VALUES (1, 1, 'a', 'forever', 0, '')")
