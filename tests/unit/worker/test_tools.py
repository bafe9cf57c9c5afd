"""Worker tool runners against real peers: a local HTTP server, DuckDB in memory."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from noetl_worker.executor import default_runners, execute
from noetl_worker.tools import duckdb_tool, http_tool
from noetl_worker.tools.base import ToolContext, ToolError, split_statements


class NoCredentials:
    async def get_credential(self, name):
        raise AssertionError("not used")


CTX = ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=5)


@pytest.fixture
async def server():
    async def echo(request):
        return web.json_response({"method": request.method, "q": dict(request.query),
                                  "body": await request.json() if request.can_read_body else None})

    async def fail(request):
        return web.json_response({"error": "nope"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/fail", fail)
    async with TestServer(app) as srv:
        yield srv


async def test_http_get_and_post_json(server):
    got = await http_tool.run({"url": str(server.make_url("/echo")), "params": {"a": "1"}}, {}, CTX)
    assert got["status_code"] == 200 and got["body"] == {"method": "GET", "q": {"a": "1"}, "body": None}
    posted = await http_tool.run({"url": str(server.make_url("/echo")), "method": "post", "json": {"k": [1]}}, {}, CTX)
    assert posted["body"]["method"] == "POST" and posted["body"]["body"] == {"k": [1]}


async def test_http_non_2xx_fails_the_step(server):
    with pytest.raises(ToolError, match="answered 503"):
        await http_tool.run({"url": str(server.make_url("/fail"))}, {}, CTX)


async def test_duckdb_rows_of_last_statement():
    got = await duckdb_tool.run({"query": "CREATE TABLE t (a INT, b VARCHAR); INSERT INTO t VALUES (1,'x'),(2,'y');"
                                          "SELECT a, b FROM t ORDER BY a"}, {}, CTX)
    assert got["columns"] == ["a", "b"] and got["rows"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(ToolError, match="DuckDB error"):
        await duckdb_tool.run({"query": "SELECT * FROM missing_table"}, {}, CTX)


def test_split_statements_respects_quotes_and_dollar_bodies():
    sql = "INSERT INTO t VALUES ('a;b'); -- c;\nDO $$ BEGIN PERFORM 1; END $$; SELECT 1"
    assert split_statements(sql) == ["INSERT INTO t VALUES ('a;b')", "DO $$ BEGIN PERFORM 1; END $$", "SELECT 1"]


async def test_executor_turns_every_failure_into_an_error_outcome():
    runners = default_runners()
    ctx = ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=5)
    ok = await execute({"tool_config": {"code": "print('hi')\nresult = {'n': n + 1}"}, "input": {"n": 1}}, "python",
                       runners, ctx)
    assert ok.ok and ok.result == {"n": 2} and ok.stdout == "hi\n"
    bad = await execute({"tool_config": {"code": "raise ValueError('boom')"}}, "python", runners, CTX)
    assert not bad.ok and "ValueError: boom" in bad.error
    unknown = await execute({}, "teleport", runners, CTX)
    assert not unknown.ok and "no runner for tool kind 'teleport'" in unknown.error
    piped = await execute({"pipeline": [{"name": "a", "kind": "python", "code": "result = {'v': 1}"},
                                        {"name": "b", "kind": "python", "input": {"p": "{{ _prev.v }}"},
                                         "code": "result = {'v': p + 1}"}], "render_context": {}},
                          "pipeline", runners, CTX)
    assert piped.ok and piped.result["result"] == {"v": 2}
