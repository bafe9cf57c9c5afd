"""The postgres tool against the suite's real Postgres; credentials resolved over HTTP."""

from __future__ import annotations

import socket

import pytest

from noetl_worker.executor import default_runners, execute
from noetl_worker.tools import postgres
from noetl_worker.tools.base import ToolContext, ToolError

from .conftest import credential_data


def ctx(plane, timeout: float = 20) -> ToolContext:
    return ToolContext(credentials=plane, execution_id=1, step="s", timeout_seconds=timeout)


async def test_create_insert_select_through_a_credential_alias(scratch_dsn, credentials):
    store, plane = credentials
    store.items["pg_local"] = credential_data(scratch_dsn)
    created = await postgres.run({"auth": "pg_local", "command": """
        -- comments and several statements, as the fixtures write them
        CREATE TABLE IF NOT EXISTS public.people (
          id SERIAL PRIMARY KEY, name TEXT NOT NULL, score NUMERIC(6,2), born DATE,
          seen TIMESTAMPTZ DEFAULT '2024-05-06T07:08:09Z', tag UUID, profile JSONB, flags BOOLEAN[]);
        INSERT INTO public.people (name, score, born, tag, profile, flags) VALUES
          ('Ann', 12.50, '1990-01-02', 'a8098c1a-f86e-11da-bd1a-00112444be1e', '{"k": [1, 2]}', '{true,false}'),
          ('Bob', 7, NULL, NULL, '{"semi;colon": "x;y"}', NULL);
        """}, {}, ctx(plane))
    assert created == {"status": "success", "affected_rows": 2}
    got = await postgres.run({"credential": "pg_local",
                              "query": "SELECT name, score, born, seen, tag, profile, flags FROM people ORDER BY id"},
                             {}, ctx(plane))
    assert got["columns"] == ["name", "score", "born", "seen", "tag", "profile", "flags"]
    assert got["row_count"] == 2
    assert got["rows"][0] == {"name": "Ann", "score": 12.5, "born": "1990-01-02", "seen": "2024-05-06T07:08:09+00:00",
                              "tag": "a8098c1a-f86e-11da-bd1a-00112444be1e", "profile": {"k": [1, 2]},
                              "flags": [True, False]}
    assert got["rows"][1]["score"] == 7 and got["rows"][1]["profile"] == {"semi;colon": "x;y"}
    assert store.requests == ["/api/credentials/pg_local?include_data=true"] * 2


async def test_params_schema_and_map_form_auth(scratch_dsn, credentials):
    store, plane = credentials
    store.items["pg_local"] = credential_data(scratch_dsn)
    auth = {"pg_db": {"source": "credential", "type": "postgres", "key": "pg_local"}}
    await postgres.run({"auth": auth, "command": "CREATE SCHEMA s1; CREATE TABLE s1.t (v INT); "
                                                 "INSERT INTO s1.t VALUES (1), (2), (3)"}, {}, ctx(plane))
    got = await postgres.run({"auth": auth, "schema": "s1", "command": "SELECT v FROM t WHERE v >= $1 ORDER BY v",
                              "params": [2]}, {}, ctx(plane))
    assert got["rows"] == [{"v": 2}, {"v": 3}]


async def test_inline_connection_fields_and_connection_string(scratch_dsn, credentials):
    _, plane = credentials
    data = credential_data(scratch_dsn)
    inline = {"host": data["db_host"], "port": data["db_port"], "user": data["db_user"],
              "password": data["db_password"], "database": data["db_name"]}
    got = await postgres.run({**inline, "command": "SELECT 1 AS one"}, {}, ctx(plane))
    assert got["rows"] == [{"one": 1}]
    got = await postgres.run({"connection_string": scratch_dsn, "command": "SELECT current_database() AS db"},
                             {}, ctx(plane))
    assert got["rows"] == [{"db": data["db_name"]}]


async def test_sql_error_is_clean_and_rolls_back_the_batch(scratch_dsn, credentials):
    store, plane = credentials
    store.items["pg"] = credential_data(scratch_dsn)
    await postgres.run({"auth": "pg", "command": "CREATE TABLE t (v INT)"}, {}, ctx(plane))
    with pytest.raises(ToolError, match=r"SQL error: UndefinedTableError: relation \"missing\" does not exist"):
        await postgres.run({"auth": "pg", "command": "INSERT INTO t VALUES (1); SELECT * FROM missing"}, {}, ctx(plane))
    got = await postgres.run({"auth": "pg", "command": "SELECT count(*)::int AS n FROM t"}, {}, ctx(plane))
    assert got["rows"] == [{"n": 0}]  # all statements of a step are one transaction
    # Through the executor the same failure is an error outcome (the step fails), never an exception.
    outcome = await execute({"tool_config": {"auth": "pg", "command": "SELEC 1"}}, "postgres", default_runners(),
                            ctx(plane))
    assert not outcome.ok and outcome.error.startswith("SQL error: PostgresSyntaxError")


async def test_unknown_alias_and_missing_sql_fail_the_step(credentials):
    _, plane = credentials
    with pytest.raises(ToolError, match="credential 'nope' could not be resolved: .*404"):
        await postgres.run({"auth": "nope", "command": "SELECT 1"}, {}, ctx(plane))
    with pytest.raises(ToolError, match="needs `command`"):
        await postgres.run({"auth": "nope"}, {}, ctx(plane))


async def test_connection_failure_never_shows_the_password(credentials):
    store, plane = credentials
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store.items["down"] = {"db_host": "127.0.0.1", "db_port": port, "db_user": "u", "db_password": "hunter2-secret",
                           "db_name": "d"}
    with pytest.raises(ToolError) as err:
        await postgres.run({"auth": "down", "command": "SELECT 1"}, {}, ctx(plane, timeout=3))
    assert f"127.0.0.1:{port}" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ToolError) as err:
        await postgres.run({"connection_string": f"postgresql://u:hunter2-secret@127.0.0.1:{port}/d",
                            "command": "SELECT 1"}, {}, ctx(plane, timeout=3))
    assert "hunter2" not in str(err.value) and "u:***@127.0.0.1" in str(err.value)
