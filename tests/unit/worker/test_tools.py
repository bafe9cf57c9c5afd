"""Worker tool runners against real peers: a local HTTP server, DuckDB in memory."""

from __future__ import annotations

import asyncio

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


@pytest.fixture
async def slow_server():
    import asyncio

    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({})

    async def text(request):
        return web.Response(text="plain words", status=int(request.query.get("status", 200)))

    async def form(request):
        return web.json_response({"form": dict(await request.post()), "q": dict(request.query),
                                  "ctype": request.content_type})

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/text", text)
    app.router.add_route("*", "/form", form)
    async with TestServer(app) as srv:
        yield srv


async def test_http_timeout_is_a_clean_tool_error(slow_server):
    import time

    started = time.perf_counter()
    with pytest.raises(ToolError, match="timed out after 0.3s"):
        await http_tool.run({"url": str(slow_server.make_url("/slow")), "timeout": 0.3}, {}, CTX)
    assert time.perf_counter() - started < 2


async def test_http_text_body_accept_status_and_python_era_bodies(server, slow_server):
    got = await http_tool.run({"url": str(slow_server.make_url("/text"))}, {}, CTX)
    assert got["body"] == "plain words" and got["data"] == "plain words"
    accepted = await http_tool.run({"url": str(slow_server.make_url("/text")), "params": {"status": 404},
                                    "accept_status": [404]}, {}, CTX)
    assert accepted["status_code"] == 404
    # `payload:` map: JSON body on POST, query parameters on GET (what NoETL did with it).
    posted = await http_tool.run({"endpoint": str(server.make_url("/echo")), "method": "POST",
                                  "payload": {"x": 1}}, {}, CTX)
    assert posted["data"]["body"] == {"x": 1}
    got = await http_tool.run({"url": str(server.make_url("/echo")), "payload": {"flag": True, "n": 2}}, {}, CTX)
    assert got["body"]["q"] == {"flag": "true", "n": "2"}
    form = await http_tool.run({"url": str(slow_server.make_url("/form")), "method": "POST",
                                "form": {"a": "b"}}, {}, CTX)
    assert form["body"]["form"] == {"a": "b"} and form["body"]["ctype"] == "application/x-www-form-urlencoded"


async def test_http_unreachable_and_bad_config():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ToolError, match="failed: ClientConnectorError"):
        await http_tool.run({"url": f"http://127.0.0.1:{port}/x"}, {}, CTX)
    with pytest.raises(ToolError, match="needs `url`"):
        await http_tool.run({}, {}, CTX)
    with pytest.raises(ToolError, match="timeout"):
        await http_tool.run({"url": "http://127.0.0.1:1/", "timeout": "soon"}, {}, CTX)


async def test_duckdb_file_database_persists_between_steps(tmp_path):
    db = str(tmp_path / "t.duckdb")
    created = await duckdb_tool.run({"db_path": db, "command": "CREATE TABLE t (id INT, day DATE, amount DECIMAL(10,2));"
                                                               "INSERT INTO t VALUES (1, DATE '2024-01-02', 3.50),"
                                                               " (2, DATE '2024-02-03', 4)"}, {}, CTX)
    assert created == {"status": "success", "affected_rows": 2}
    got = await duckdb_tool.run({"db_path": db, "query": "SELECT id, day, amount FROM t WHERE id >= ? ORDER BY id",
                                 "params": [1]}, {}, CTX)
    assert got["rows"] == [{"id": 1, "day": "2024-01-02", "amount": 3.5}, {"id": 2, "day": "2024-02-03", "amount": 4}]
    assert got["row_count"] == 2


async def test_duckdb_waits_for_a_file_another_process_holds(tmp_path):
    # a parallel loop's iterations on two workers open one execution's database: the second waits
    import subprocess
    import sys
    db = str(tmp_path / "held.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "c.execute('CREATE TABLE t (a INT)'); print('held', flush=True); time.sleep(1.5)", db],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        got = await duckdb_tool.run({"db_path": db, "query": "SELECT count(*) AS n FROM t"}, {},
                                    ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=20))
        assert got["rows"] == [{"n": 0}]
    finally:
        holder.wait(timeout=10)


async def test_duckdb_in_memory_is_fresh_per_step_and_ddl_has_no_rows():
    got = await duckdb_tool.run({"database": ":memory:", "command": "CREATE TABLE x (a INT)"}, {}, CTX)
    assert got == {"status": "success", "affected_rows": 0}
    with pytest.raises(ToolError, match="x does not exist|Table with name x"):
        await duckdb_tool.run({"command": "SELECT * FROM x"}, {}, CTX)
    with pytest.raises(ToolError, match="no SQL statement"):
        await duckdb_tool.run({"command": "-- only a comment"}, {}, CTX)


async def test_duckdb_timeout_interrupts_the_query():
    import time

    ctx = ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=0.5)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await duckdb_tool.run({"command": "SELECT count(*) FROM range(100000000000) a"}, {}, ctx)
    assert time.perf_counter() - started < 3


async def test_noop_and_executor_reads_every_context_spelling():
    runners = default_runners()
    # The shard's spelling: action + tool_config + input.
    a = await execute({"tool_config": {"result": {"x": 1}}, "input": {}}, "noop", runners, CTX)
    # A context carrying only `tool: {kind, ...}` and `args`.
    b = await execute({"tool": {"kind": "python", "code": "result = {'y': y}"}, "args": {"y": 2}}, "", runners, CTX)
    # `tool_config.input` fills in for missing top-level input keys; top-level keys win.
    c = await execute({"tool_config": {"code": "result = [p, q]", "input": {"p": 1, "q": 1}}, "input": {"q": 2}},
                      "python", runners, CTX)
    # A list-valued `tool` is a pipeline, whatever `action` says.
    d = await execute({"tool": [{"name": "only", "kind": "noop", "result": 5}]}, "task_sequence", runners, CTX)
    assert (a.ok, a.result) == (True, {"x": 1})
    assert (b.ok, b.result) == (True, {"y": 2})
    assert (c.ok, c.result) == (True, [1, 2])
    assert d.ok and d.result["result"] == 5
    e = await execute({"tool_config": {"message": "hi"}}, "noop", runners, CTX)
    assert e.result == {"status": "ok", "message": "hi"}


async def test_executor_timeout_and_unserialisable_results():
    runners = default_runners()
    ctx = ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=0.3)

    async def sleepy(config, inputs, ctx):
        import asyncio

        await asyncio.sleep(5)

    async def odd(config, inputs, ctx):
        return {"when": object()}

    slow = await execute({}, "sleepy", {**runners, "sleepy": sleepy}, ctx)
    assert not slow.ok and "timed out after 0.3s" in slow.error
    bad = await execute({}, "odd", {**runners, "odd": odd}, CTX)
    assert not bad.ok and "not JSON-serialisable" in bad.error


async def test_pipeline_policy_retries_a_failing_task_then_continues():
    runners = default_runners()
    calls = []

    async def flaky(config, inputs, ctx):
        calls.append(1)
        if len(calls) < 3:
            raise ToolError("not yet")
        return {"n": len(calls)}

    tasks = [{"name": "f", "kind": "flaky",
              "spec": {"policy": {"rules": [{"when": "{{ output.status == 'error' }}",
                                             "then": {"do": "retry", "attempts": 5, "delay": 0}},
                                            {"else": {"then": {"do": "continue"}}}]}}},
             {"name": "g", "kind": "python", "input": {"p": "{{ _prev.n }}"}, "code": "result = {'prev': p}"}]
    got = await execute({"pipeline": tasks, "render_context": {}}, "pipeline", {**runners, "flaky": flaky}, CTX)
    assert got.ok and got.result["result"] == {"prev": 3} and len(calls) == 3
    failing = [{"name": "boom", "kind": "python", "code": "raise RuntimeError('nope')"}]
    bad = await execute({"pipeline": failing}, "pipeline", runners, CTX)
    assert not bad.ok and "task 'boom' failed" in bad.error and "nope" in bad.error


async def test_shell_captures_output_env_and_cwd(tmp_path):
    from noetl_worker.tools import shell_tool

    ctx = ToolContext(credentials=None, execution_id=1, step="s")
    out = await shell_tool.run({"command": ["echo one", "echo $GREETING; pwd; echo oops >&2"],
                                "env": {"GREETING": "hi"}, "cwd": str(tmp_path)}, {}, ctx)
    assert out == {"stdout": f"one\nhi\n{tmp_path}\n", "stderr": "oops\n", "exit_code": 0}
    # `cmds`: the list NoETL's Python worker reads (test_gke_lifecycle's steps), multi-line programs
    out = await shell_tool.run({"cmds": ["x=1\necho a$x", "echo b"]}, {}, ctx)
    assert out["stdout"] == "a1\nb\n"


async def test_shell_non_zero_exit_timeout_and_bad_config_fail_the_step(tmp_path):
    from noetl_worker.tools import shell_tool

    ctx = ToolContext(credentials=None, execution_id=1, step="s")
    with pytest.raises(ToolError, match="exited with 3.*no such thing"):
        await shell_tool.run({"command": "echo no such thing >&2; exit 3"}, {}, ctx)
    marker = tmp_path / "never"
    with pytest.raises(ToolError, match="timed out after 0.3s"):
        await shell_tool.run({"command": f"sleep 5; touch {marker}", "timeout_seconds": 0.3}, {}, ctx)
    with pytest.raises(ToolError, match="non-empty string"):
        await shell_tool.run({"command": ""}, {}, ctx)
    with pytest.raises(ToolError, match="not a directory"):
        await shell_tool.run({"command": "true", "cwd": str(tmp_path / "missing")}, {}, ctx)
    assert "shell" in default_runners()


async def test_python_step_past_its_timeout_is_interrupted_not_left_spinning(tmp_path):
    from noetl_worker.tools import python_bridge

    beat = tmp_path / "beat"
    ctx = ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=0.3)
    spin = (f"import time\nn = 0\nwhile True:\n    try:\n        n += 1\n"
            f"        open({str(beat)!r}, 'w').write(str(n))\n        time.sleep(0.01)\n"
            f"    except Exception:\n        pass")
    outcome = await execute({"tool_kind": "python", "tool_config": {"code": spin}}, None,
                            default_runners(), ctx)
    assert not outcome.ok and "timed out" in outcome.error
    await asyncio.sleep(0.5)
    before = beat.read_text()
    await asyncio.sleep(0.5)
    assert beat.read_text() == before, "the abandoned python step is still running"
    assert await python_bridge.run({"code": "result = {'x': 1}"}, {}, ctx) == {"x": 1}


def test_libs_from_a_package_import_a_submodule_not_yet_imported(monkeypatch):
    """`libs: {storage: {from: google.cloud, import: storage}}`: the submodule is imported by name."""
    import sys
    import wsgiref

    from noetl_worker.tools.python_bridge import preload

    monkeypatch.delitem(sys.modules, "wsgiref.validate", raising=False)
    if hasattr(wsgiref, "validate"):
        monkeypatch.delattr(wsgiref, "validate")
    assert preload({"v": {"from": "wsgiref", "import": "validate"}})["v"].__name__ == "wsgiref.validate"
