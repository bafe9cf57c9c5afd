"""The worker's tools on NoETL's shapes (issue 16), against the local test API served for real
(aiohttp on a loopback port): the policy view of HTTP failures, retries that heal a flaky page,
script sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from noetl_worker.executor import default_runners, execute
from noetl_worker.tools import http_tool
from noetl_worker.tools.base import ToolContext, ToolError

from tests.support.testapi import build_app


class NoCredentials:
    async def get_credential(self, name):
        raise AssertionError("not used")


def ctx(script_root: Path = Path(".")) -> ToolContext:
    return ToolContext(credentials=NoCredentials(), execution_id=1, step="s", timeout_seconds=20,
                       script_root=script_root)


@pytest.fixture
async def api():
    async with TestServer(build_app()) as srv:
        yield str(srv.make_url("")).rstrip("/")


@pytest.mark.parametrize(("query", "kind", "retryable", "status"), [
    ("error_type=500", "server_error", True, 500), ("error_type=503", "server_error", True, 503),
    ("error_type=429&retry_after=2", "rate_limit", True, 429), ("error_type=auth", "auth", False, 401),
    ("error_type=404", "not_found", False, 404)])
async def test_http_failures_are_classified_for_policies(api, query, kind, retryable, status):
    with pytest.raises(ToolError) as err:
        await http_tool.run({"url": f"{api}/api/v1/errors?{query}"}, {}, ctx())
    assert (err.value.details["kind"], err.value.details["retryable"], err.value.details["status"]) == \
        (kind, retryable, status)
    if status == 429:
        assert err.value.details["retry_after"] == 2


async def test_unreachable_server_is_a_retryable_connection_error():
    with pytest.raises(ToolError) as err:
        await http_tool.run({"url": "http://127.0.0.1:9/x", "timeout": 2}, {}, ctx())
    assert err.value.details == {"kind": "connection", "retryable": True}


RETRY_ON_SERVER_ERROR = {"rules": [
    {"when": "{{ output.error.retryable and output.error.kind == 'server_error' }}",
     "then": {"do": "retry", "attempts": 3, "delay": 0}},
    {"when": "{{ output.status == 'error' }}", "then": {"do": "fail"}},
    {"else": {"then": {"do": "continue"}}}]}


async def test_a_policy_on_output_error_retries_the_flaky_page_until_it_heals(api):
    tasks = [{"name": "reset", "kind": "http", "method": "POST", "url": f"{api}/api/v1/flaky/reset"},
             {"name": "fetch", "kind": "http", "url": f"{api}/api/v1/flaky", "params": {"page": 1, "fail_on": "1"},
              "spec": {"policy": RETRY_ON_SERVER_ERROR}, "set": {"got": "{{ output }}"}},
             {"name": "count", "kind": "python", "input": {"r": "{{ got }}"}, "code": "result = len(r['data']['data'])"}]
    out = await execute({"pipeline": tasks, "render_context": {}}, "pipeline", default_runners(), ctx())
    assert out.ok, out.error
    assert out.result["result"] == 10


async def test_a_policy_on_output_http_status_sees_the_status_of_a_failure(api):
    rules = {"rules": [{"when": "{{ output.http.status == 401 }}", "then": {"do": "fail"}},
                       {"else": {"then": {"do": "continue"}}}]}
    tasks = [{"name": "auth", "kind": "http", "url": f"{api}/api/v1/errors", "params": {"error_type": "auth"},
              "spec": {"policy": rules}}]
    out = await execute({"pipeline": tasks}, "pipeline", default_runners(), ctx())
    assert not out.ok and "task 'auth' failed" in out.error and "answered 401" in out.error


async def test_sql_and_python_from_script_files_and_object_stores_named(tmp_path):
    (tmp_path / "q.sql").write_text("CREATE TABLE t AS SELECT 1 AS a; SELECT a FROM t")
    (tmp_path / "s.py").write_text("def main(n):\n    return {'double': n * 2}\n")
    runners = default_runners()
    sql = await execute({"tool": {"kind": "duckdb", "script": {"uri": "q.sql", "source": {"type": "file"}}}},
                        None, runners, ctx(tmp_path))
    assert sql.ok and sql.result["rows"] == [{"a": 1}]
    py = await execute({"tool": {"kind": "python", "script": {"uri": "./s.py"}}, "input": {"n": 4}},
                       None, runners, ctx(tmp_path))
    assert py.ok and py.result == {"double": 8}
    # s3 is read through boto3 (tests/unit/worker/test_s3_objects.py); azure has no backend here
    az = await execute({"tool": {"kind": "postgres", "script": {"uri": "az://b/x.sql", "source": {"type": "azure"}}}},
                       None, runners, ctx(tmp_path))
    assert not az.ok and "no azure backend configured" in az.error and "az://b/x.sql" in az.error
    outside = await execute({"tool": {"kind": "duckdb", "script": {"uri": "../../etc/passwd"}}}, None, runners,
                            ctx(tmp_path))
    assert not outside.ok and "outside the worker's script root" in outside.error
