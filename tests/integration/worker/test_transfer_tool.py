"""`kind: transfer` against the suite's real Postgres: http (the test API's jsonplaceholder-like
posts, over real HTTP) -> postgres with a mapping, and postgres -> postgres in each mode."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from noetl_worker.tools import transfer
from noetl_worker.tools.base import ToolContext, ToolError

from tests.support.testapi.app import build_app

from .conftest import credential_data


def ctx(plane) -> ToolContext:
    return ToolContext(credentials=plane, execution_id=1, step="transfer_step", timeout_seconds=20)


async def _fetch(dsn: str, sql: str) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_http_to_postgres_with_a_mapping(scratch_dsn, credentials):
    store, plane = credentials
    store.items["pg_local"] = credential_data(scratch_dsn)
    conn = await asyncpg.connect(scratch_dsn)
    await conn.execute("CREATE TABLE public.posts_copy (post_id INT, user_id INT, title TEXT, body TEXT)")
    await conn.close()
    async with TestServer(build_app()) as api:
        got = await transfer.run({
            "source": {"type": "http", "url": str(api.make_url("/jsonplaceholder/posts")), "method": "GET"},
            "target": {"type": "postgres", "auth": "pg_local", "table": "public.posts_copy",
                       "mapping": {"user_id": "userId", "post_id": "id", "title": "title", "body": "body"}},
            "chunk_size": 30}, {}, ctx(plane))
    assert got == {"direction": "http_to_postgres", "source_type": "http", "target_type": "postgres",
                   "mode": "append", "rows_transferred": 100, "chunks_processed": 4, "records_fetched": 100}
    rows = await _fetch(scratch_dsn, "SELECT count(*) AS n, count(DISTINCT user_id) AS users, max(post_id) AS top "
                                     "FROM posts_copy")
    assert rows == [{"n": 100, "users": 10, "top": 100}]


async def test_postgres_to_postgres_append_replace_upsert_and_a_custom_query(scratch_dsn, credentials):
    store, plane = credentials
    store.items["pg_local"] = credential_data(scratch_dsn)
    conn = await asyncpg.connect(scratch_dsn)
    await conn.execute("""CREATE TABLE src (id INT PRIMARY KEY, name TEXT);
                          INSERT INTO src SELECT g, 'n' || g FROM generate_series(1, 5) g;
                          CREATE TABLE dst (id INT PRIMARY KEY, name TEXT);
                          CREATE TABLE audit (label TEXT)""")
    await conn.close()
    source = {"type": "postgres", "auth": "pg_local", "query": "SELECT id, name FROM src ORDER BY id"}
    target = {"type": "postgres", "auth": "pg_local", "table": "dst"}
    first = await transfer.run({"source": source, "target": target, "chunk_size": 2}, {}, ctx(plane))
    assert first == {"direction": "postgres_to_postgres", "source_type": "postgres", "target_type": "postgres",
                     "mode": "append", "rows_transferred": 5, "chunks_processed": 3, "status": "success",
                     "target_table": "dst", "columns": ["id", "name"]}
    with pytest.raises(ToolError, match="UniqueViolation"):  # append again: the keys are taken
        await transfer.run({"source": source, "target": target}, {}, ctx(plane))
    await _exec(scratch_dsn, "UPDATE src SET name = 'changed' WHERE id = 3")
    await transfer.run({"source": source, "target": target, "mode": "upsert"}, {}, ctx(plane))
    assert await _fetch(scratch_dsn, "SELECT name FROM dst WHERE id = 3") == [{"name": "changed"}]
    await _exec(scratch_dsn, "DELETE FROM src WHERE id > 2")
    await transfer.run({"source": source, "target": target, "mode": "replace"}, {}, ctx(plane))
    assert await _fetch(scratch_dsn, "SELECT id FROM dst ORDER BY id") == [{"id": 1}, {"id": 2}]
    custom = await transfer.run({"source": source, "target": {"type": "postgres", "auth": "pg_local",
                                                               "query": "INSERT INTO audit VALUES (%s || ':' || %s)"}},
                                {}, ctx(plane))
    assert custom["mode"] == "custom" and custom["rows_transferred"] == 2
    assert await _fetch(scratch_dsn, "SELECT label FROM audit ORDER BY label") == [{"label": "1:n1"},
                                                                                    {"label": "2:n2"}]


async def _exec(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("config, message", [
    ({"target": {"type": "postgres"}}, "needs a `source`"),
    ({"source": {"type": "http", "url": "http://x"}, "target": {"type": "snowflake", "table": "t", "auth": "a"}},
     "http -> snowflake is not supported"),
    ({"source": {"type": "http", "url": "http://x"}, "target": {"type": "postgres", "auth": "a"}},
     "needs `table` or `query`"),
    ({"source": {"type": "http", "url": "http://x"}, "target": {"type": "postgres", "auth": "a", "table": "t"},
      "mode": "merge"}, "`mode` must be one of"),
    ({"source": {"type": "http", "url": "http://x"}, "target": {"type": "postgres", "auth": "a", "table": "t"}},
     "needs `target.mapping`"),
    ({"source": {"type": "postgres", "auth": "a"}, "target": {"type": "postgres", "auth": "a", "table": "t"}},
     "needs `source.query`"),
])
async def test_bad_configs_name_the_field(config, message, credentials):
    _, plane = credentials
    with pytest.raises(ToolError, match=message):
        await transfer.run(config, {}, ctx(plane))
