"""NoETL's database routes through the router: SQL on the cluster database, one shard's or every
shard's (trusted callers only), and db/validate / db/init over every shard's migrations."""

from __future__ import annotations

import ipaddress

from .conftest import INTERNAL_TOKEN, SHARDS, another_router

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
EXECUTE = "/api/postgres/execute"


async def sql(http, url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    async with http.post(f"{url}{EXECUTE}", json=body, headers=headers if headers is not None else AUTH) as r:
        return r.status, await r.json()


async def test_sql_runs_on_the_cluster_database_by_default(fleet, http):
    status, answer = await sql(http, fleet.router_url, {"query": "select current_database() as db, 1 as one"})
    assert status == 200, answer
    assert answer["status"] == "ok" and answer["database"] == "cluster"
    assert answer["columns"] == ["db", "one"]
    assert answer["result"] == [[fleet.cluster_dsn.rsplit("/", 1)[1], 1]]


async def test_sql_on_one_shard_and_on_every_shard(fleet, http):
    status, one = await sql(http, fleet.router_url, {"query": "select current_database() as db",
                                                     "target": "shard", "shard": 1})
    assert status == 200 and one["database"] == "shard 1" and one["shard"] == 1
    assert one["result"][0][0].endswith("_rshard_1")
    status, every = await sql(http, fleet.router_url, {"query": "select current_database() as db",
                                                       "target": "all_shards"})
    assert status == 200 and every["database"] == "all shards" and every["row_count"] == SHARDS
    assert sorted(p["shard"] for p in every["shards"]) == list(range(SHARDS))
    assert every["columns"] == ["db"]
    assert sorted(r[0][-1] for r in every["result"]) == [str(i) for i in range(SHARDS)]


async def test_sql_errors_are_a_400_naming_the_problem(fleet, http):
    status, answer = await sql(http, fleet.router_url, {"query": "select * from no_such_table"})
    assert status == 400 and answer["code"] == "sql_error" and "no_such_table" in answer["error"]
    assert answer["sqlstate"] == "42P01"
    status, answer = await sql(http, fleet.router_url, {"query": "  "})
    assert status == 400 and "query" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select 1", "connection_string": "postgresql://x"})
    assert status == 400 and "connection_string" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select 1", "target": "shard"})
    assert status == 400 and "shard" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select 1", "target": "shard", "shard": 99})
    assert status == 400 and "shard 99" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select $1::int + 1 as n", "parameters": ["x"]})
    assert status == 400 and "argument $1" in answer["error"]
    for bad in ("\u0004T\u00c0", "!!!", "/w=="):  # non-ASCII text was a 500 (fuzzing), bad base64, not UTF-8
        status, answer = await sql(http, fleet.router_url, {"query_base64": bad})
        assert status == 400 and answer["code"] == "bad_query", (bad, answer)


async def test_a_slow_statement_is_cancelled_at_its_timeout(fleet, http):
    status, answer = await sql(http, fleet.router_url, {"query": "select pg_sleep(5)", "timeout_seconds": 0.2})
    assert status == 400 and answer["sqlstate"] == "57014" and "statement_timeout" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select 1", "timeout_seconds": 31})
    assert status == 422 and "timeout_seconds" in answer["error"]


async def test_rows_are_bounded_and_scripts_run(fleet, http):
    status, answer = await sql(http, fleet.router_url, {"query": "select g from generate_series(1, 50) g",
                                                        "max_rows": 10})
    assert status == 200 and answer["row_count"] == 10 and answer["truncated"] is True
    status, answer = await sql(http, fleet.router_url, {"query": "select $1::int + 1 as n", "parameters": [41]})
    assert answer["result"] == [[42]]
    status, answer = await sql(http, fleet.router_url, {
        "query": "create temp table t (x int); insert into t values (1), (2)"})
    assert status == 200 and answer["command"] == "INSERT 0 2" and "result" not in answer


async def test_sql_needs_a_trusted_caller(fleet, http):
    status, answer = await sql(http, fleet.router_url, {"query": "select 1"}, headers={})
    assert status == 403 and "NOETL_TRUSTED_NETWORKS" in answer["error"]
    status, answer = await sql(http, fleet.router_url, {"query": "select 1", "target": "all_shards"}, headers={})
    assert status == 403
    async with another_router(fleet, trusted_networks=LOOPBACK) as url:
        status, answer = await sql(http, url, {"query": "select 1 as one"}, headers={})
        assert status == 200 and answer["result"] == [[1]]
        status, answer = await sql(http, url, {"query": "select 1", "target": "all_shards"},
                                   headers={"X-Forwarded-For": "127.0.0.1"})
        assert status == 403


async def test_db_validate_and_init_cover_every_database(fleet, http):
    async with http.get(f"{fleet.router_url}/api/db/validate") as r:
        assert r.status == 200
        valid = await r.json()
    assert valid["valid"] is True and valid["status"] == "ok" and valid["missing"] == []
    assert sorted(d["database"] for d in valid["databases"]) == ["cluster", *(f"shard {i}" for i in range(SHARDS))]
    assert "event" in valid["tables"]
    assert not [t for t in valid["tables"] if t.startswith("event_")]  # slices are not tables of their own
    async with http.post(f"{fleet.router_url}/api/db/init") as r:
        assert r.status == 403  # applying migrations is for trusted callers
    async with http.post(f"{fleet.router_url}/api/db/init", headers=AUTH) as r:
        assert r.status == 200
        init = await r.json()
    assert init["status"] == "ok" and init["applied"] == [] and "nothing to apply" in init["message"]
