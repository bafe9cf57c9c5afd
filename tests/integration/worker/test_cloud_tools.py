"""The snowflake tool and transfer's snowflake side against fakesnow's server (Snowflake's own
connector over HTTP), ducklake with its catalog in the suite's Postgres, and the duckdb tool's
`auth` secrets: a postgres ATTACH and `gs://` paths on the test API's GCS stand-in."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, Iterator

import asyncpg
import fakesnow
import pytest
from aiohttp.test_utils import TestServer

from noetl_worker.tools import duckdb_tool, ducklake_tool, snowflake_tool, transfer
from noetl_worker.tools.base import ToolContext, ToolError

from tests.support.testapi.app import build_app
from tests.support.testapi.gcs import HMAC_KEY_ID

from .conftest import credential_data


def ctx(plane, execution_id: int = 1) -> ToolContext:
    return ToolContext(credentials=plane, execution_id=execution_id, step="cloud_step", timeout_seconds=60)


@pytest.fixture(scope="module")
def snowflake_server() -> Iterator[dict[str, Any]]:
    with fakesnow.server() as kwargs:
        yield {"account": "fakesnow", "user": "fake", "password": "snow", "host": kwargs["host"],
               "port": kwargs["port"], "protocol": "http", "database": "TEST_DB", "schema": "PUBLIC"}


async def test_snowflake_statements_answer_noetls_shape_and_a_bad_one_fails_naming_it(snowflake_server, credentials):
    store, plane = credentials
    store.items["sf"] = snowflake_server
    table = f"T_{uuid.uuid4().hex[:8]}"
    got = await snowflake_tool.run({"auth": "sf", "command": f"""
        CREATE OR REPLACE TABLE {table} (id INTEGER, name STRING, amount NUMERIC(10,2));
        INSERT INTO {table} VALUES (1, 'a', 1.50), (2, 'b', 2.25);
        SELECT COUNT(*) AS n, SUM(amount) AS total FROM {table}"""}, {}, ctx(plane))
    assert got["status"] == "success" and set(got["data"]) == {"statement_0", "statement_1", "statement_2"}
    assert got["data"]["statement_2"]["result"] == [{"N": 2, "TOTAL": 3.75}]
    assert got["data"]["statement_2"]["columns"] == ["N", "TOTAL"]
    with pytest.raises(ToolError, match="statement_1 failed"):
        await snowflake_tool.run({"auth": "sf", "command": f"SELECT 1; SELECT * FROM NO_SUCH_{table}"}, {}, ctx(plane))
    with pytest.raises(ToolError, match="needs `auth`"):
        await snowflake_tool.run({"command": "SELECT 1"}, {}, ctx(plane))


async def test_transfer_snowflake_to_postgres_and_back(snowflake_server, scratch_dsn, credentials):
    store, plane = credentials
    store.items.update(sf=snowflake_server, pg=credential_data(scratch_dsn))
    sf_source, sf_target = f"SRC_{uuid.uuid4().hex[:8]}", f"DST_{uuid.uuid4().hex[:8]}"
    await snowflake_tool.run({"auth": "sf", "command": f"""
        CREATE OR REPLACE TABLE {sf_source} (id INTEGER, name STRING, value NUMERIC(10,2));
        INSERT INTO {sf_source} SELECT 1, 'one', 1.10 UNION ALL SELECT 2, 'two', 2.20 UNION ALL SELECT 3, 'three', 3.30;
        CREATE OR REPLACE TABLE {sf_target} (id INTEGER, name STRING, value NUMERIC(10,2))"""}, {}, ctx(plane))
    conn = await asyncpg.connect(scratch_dsn)
    await conn.execute("CREATE TABLE landed (id INT PRIMARY KEY, name TEXT, value NUMERIC(10,2));"
                       "INSERT INTO landed VALUES (99, 'stale', 0)")
    await conn.close()
    first = await transfer.run({"mode": "replace", "chunk_size": 2,
                                "source": {"type": "snowflake", "auth": "sf", "query": f"SELECT * FROM {sf_source} ORDER BY id"},
                                "target": {"type": "postgres", "auth": "pg", "table": "public.landed"}}, {}, ctx(plane))
    assert (first["direction"], first["rows_transferred"], first["chunks_processed"], first["columns"]) == \
        ("snowflake_to_postgres", 3, 2, ["id", "name", "value"])
    conn = await asyncpg.connect(scratch_dsn)
    rows = [dict(r) for r in await conn.fetch("SELECT id, name, value::text AS value FROM landed ORDER BY id")]
    await conn.close()
    assert rows == [{"id": 1, "name": "one", "value": "1.10"}, {"id": 2, "name": "two", "value": "2.20"},
                    {"id": 3, "name": "three", "value": "3.30"}]
    back = await transfer.run({"source": {"type": "postgres", "auth": "pg", "query": "SELECT * FROM landed ORDER BY id"},
                               "target": {"type": "snowflake", "auth": "sf", "table": sf_target}}, {}, ctx(plane))
    assert (back["direction"], back["rows_transferred"]) == ("postgres_to_snowflake", 3)
    check = await snowflake_tool.run({"auth": "sf", "command": f"SELECT COUNT(*) AS n, SUM(value) AS s FROM {sf_target}"},
                                     {}, ctx(plane))
    assert check["data"]["statement_0"]["result"] == [{"N": 3, "S": 6.6}]
    with pytest.raises(ToolError, match="plain"):
        await transfer.run({"source": {"type": "postgres", "auth": "pg", "query": "SELECT 1 AS \"a b\""},
                            "target": {"type": "snowflake", "auth": "sf", "table": sf_target}}, {}, ctx(plane))


async def test_ducklake_keeps_tables_in_its_postgres_catalog_and_reports_refused_commands(scratch_dsn, credentials,
                                                                                          tmp_path: Path):
    store, plane = credentials
    store.items["catalog"] = credential_data(scratch_dsn)
    config = {"auth": "catalog", "catalog_name": "lake", "data_path": str(tmp_path / "data")}
    first = await ducklake_tool.run({**config, "commands": [
        "CREATE TABLE pk (id INTEGER PRIMARY KEY)",
        "CREATE TABLE events (user_id INTEGER, kind VARCHAR); INSERT INTO events VALUES (1, 'a'), (2, 'b')"]},
        {}, ctx(plane))
    assert first["status"] == "ok"
    refused, created = first["result"]["commands"]
    assert refused["status"] == "error" and "PRIMARY KEY" in refused["error"]
    assert created["status"] == "executed"
    # another connection (another worker) sees the same lake through the catalog
    second = await ducklake_tool.run({**config, "command": "SELECT count(*) AS n FROM events"}, {}, ctx(plane))
    assert second["result"]["commands"] == [{"command_index": 0, "row_count": 1, "columns": ["n"], "rows": [{"n": 2}]}]
    assert second["catalog_info"]["table_count"] == 1
    store.items["wrong"] = {**credential_data(scratch_dsn), "db_name": "no_such_db", "db_password": "pw-not-shown"}
    with pytest.raises(ToolError, match="could not attach") as refused_attach:
        await ducklake_tool.run({**config, "auth": "wrong", "command": "SELECT 1"}, {}, ctx(plane))
    assert "pw-not-shown" not in str(refused_attach.value)


@pytest.mark.parametrize("lake_exists", [False, True], ids=["new-lake", "lake-exists"])
async def test_ducklake_workers_racing_to_create_one_table_all_insert(scratch_dsn, credentials, tmp_path: Path,
                                                                      lake_exists: bool):
    """NoETL's ducklake_test: a parallel loop's iterations each `CREATE TABLE IF NOT EXISTS` then
    INSERT. On a lake none has attached yet the first ATTACHes race to create the catalog's tables;
    on a lake that exists (as in the playbook, whose earlier steps made one) the ATTACHes are quick
    and the creates collide in DuckLake (only one may create the table). The losers attach or create
    again and find what the winner made, so every insert lands."""
    store, plane = credentials
    store.items["catalog"] = credential_data(scratch_dsn)
    config = {"auth": "catalog", "catalog_name": "race", "data_path": str(tmp_path / "data")}
    if lake_exists:
        await ducklake_tool.run({**config, "command": "CREATE TABLE users (id INTEGER)"}, {}, ctx(plane))
    racers = 6
    outcomes = await asyncio.gather(*(ducklake_tool.run({**config, "command": f"""
        CREATE TABLE IF NOT EXISTS user_events (user_id INTEGER, event_type VARCHAR);
        INSERT INTO user_events VALUES ({i}, 'test_event')"""}, {}, ctx(plane)) for i in range(racers)))
    assert [o["result"]["commands"][0]["status"] for o in outcomes] == ["executed"] * racers, outcomes
    counted = await ducklake_tool.run({**config, "command": "SELECT count(*) AS n FROM user_events"}, {}, ctx(plane))
    assert counted["result"]["commands"][0]["rows"] == [{"n": racers}]


async def test_duckdb_auth_makes_postgres_and_gcs_secrets(scratch_dsn, credentials, tmp_path: Path):
    store, plane = credentials
    conn = await asyncpg.connect(scratch_dsn)
    await conn.execute("CREATE TABLE people (id INT, name TEXT); INSERT INTO people VALUES (1, 'ann'), (2, 'bo')")
    await conn.close()
    async with TestServer(build_app()) as api:
        store.items.update(pg=credential_data(scratch_dsn),
                           hmac={"key_id": HMAC_KEY_ID, "secret_key": "hmac-secret-not-shown",
                                 "endpoint": str(api.make_url("/gcs-xml"))})
        auth = {"pg_db": {"source": "credential", "tool": "postgres", "key": "pg"},
                "gcs_secret": {"source": "credential", "tool": "hmac", "key": "hmac", "scope": "gs://exports"}}
        config = {"auth": auth, "database": str(tmp_path / "x.duckdb")}
        await duckdb_tool.run({**config, "command": """
            INSTALL postgres; LOAD postgres; INSTALL httpfs; LOAD httpfs;
            ATTACH '' AS pg_db (TYPE postgres, SECRET pg_db);
            COPY (SELECT * FROM pg_db.public.people ORDER BY id) TO 'gs://exports/people.csv' (FORMAT CSV, HEADER TRUE)"""},
            {}, ctx(plane))
        got = await duckdb_tool.run({**config, "command": "SELECT name FROM read_csv('gs://exports/people.csv') ORDER BY id"},
                                    {}, ctx(plane))
        assert got["rows"] == [{"name": "ann"}, {"name": "bo"}]
        with pytest.raises(ToolError) as failed:
            await duckdb_tool.run({**config, "command": "SELECT * FROM 'gs://exports/missing.csv'"}, {}, ctx(plane))
        assert "hmac-secret-not-shown" not in str(failed.value)
    with pytest.raises(ToolError, match="tool 'ftp'"):
        await duckdb_tool.run({"auth": {"x": {"tool": "ftp", "key": "pg"}}, "command": "SELECT 1"}, {}, ctx(plane))


async def test_duckdb_keeps_one_database_per_execution(credentials, tmp_path: Path, monkeypatch):
    _, plane = credentials
    monkeypatch.setenv("NOETL_DATA_DIR", str(tmp_path))
    await duckdb_tool.run({"command": "CREATE TABLE t AS SELECT 7 AS v"}, {}, ctx(plane, execution_id=41))
    got = await duckdb_tool.run({"command": "SELECT v FROM t"}, {}, ctx(plane, execution_id=41))
    assert got["rows"] == [{"v": 7}]
    with pytest.raises(ToolError, match="t does not exist"):
        await duckdb_tool.run({"command": "SELECT v FROM t"}, {}, ctx(plane, execution_id=42))
    assert (tmp_path / "noetldb" / "duckdb_41.duckdb").is_file()
