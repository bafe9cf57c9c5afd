"""A command's context: NoETL's worker gets the step in the form its tools run (`tool_config`,
`input`), this fleet's workers and the log get the playbook's own (`tool`, `pipeline`, `args`)."""

from __future__ import annotations

from typing import Any

from noetl_api_shard.execution.write.announcing import command_context, issued_event_context
from noetl_api_shard.execution.write.noetl_worker_form import command_input, tool_config
from noetl_common.engine.decisions import IssueCommand
from noetl_common.tools.python_tool import plain_code, run_python
from noetl_worker.executor import read_work

LEGACY = "n = input_data.get('n')\nreturn {'doubled': n * 2}\n"


def run_as_noetl_binds(code: str, inputs: dict[str, Any]) -> Any:
    """Inputs bound as variables (not `input_data`), the value taken from `result`, no wrapping."""
    scope: dict[str, Any] = {"__builtins__": __builtins__, **inputs}
    local: dict[str, Any] = {}
    exec(compile(code, "<step>", "exec"), scope, local)
    return local["result"]


def test_legacy_python_runs_without_a_wrapping_tool_and_means_what_the_fleet_tool_computes() -> None:
    inputs = {"n": 21}
    config = tool_config("python", {"code": LEGACY}, None, 7)
    noetl_inputs = command_input("python", {"code": LEGACY}, inputs)
    assert noetl_inputs == {"n": 21, "input_data": {"n": 21}}
    assert run_as_noetl_binds(config["code"], noetl_inputs) == {"doubled": 42}
    assert run_python(LEGACY, inputs).result == {"doubled": 42}


def test_plain_code_and_other_tools_are_left_alone() -> None:
    code = "result = {'x': x}"
    assert plain_code(code) is code
    assert plain_code("def broken(:\n") == "def broken(:\n"  # a real syntax error is the tool's to report
    config = {"code": code}
    assert tool_config("python", config, None, 7) is config
    assert command_input("python", config, {"x": 1}) == {"x": 1}
    http = {"url": "http://h/{{ input_data }}"}
    assert command_input("http", http, {"a": 1}) == {"a": 1}  # only python code is given the alias


def test_a_declared_input_data_wins() -> None:
    inputs = {"input_data": {"mine": True}, "n": 1}
    assert command_input("python", {"code": "result = input_data"}, inputs) == inputs


def test_duckdb_in_memory_gets_a_named_in_memory_database_of_its_own() -> None:
    assert tool_config("duckdb", {"database": ":memory:", "query": "SELECT 1"}, None, 42) == \
        {"database": ":memory:/42", "query": "SELECT 1"}
    on_disk = {"database": "/data/x.duckdb"}
    assert tool_config("duckdb", on_disk, None, 42) is on_disk


def test_task_list_tasks_are_restated_one_by_one() -> None:
    tasks = [{"name": "q", "kind": "duckdb", "database": ":memory:", "query": "SELECT 1"},
             {"name": "p", "kind": "python", "input": {"rows": "{{ q }}"},
              "code": "rows = input_data.get('rows')\nreturn rows"},
             {"name": "s", "kind": "python", "args": {"a": 1}, "code": "result = a"}]
    out = tool_config("pipeline", {}, tasks, 9)["tasks"]
    assert out[0]["database"] == ":memory:/9"
    assert out[1]["input"] == {"rows": "{{ q }}", "input_data": {"rows": "{{ q }}"}}
    assert out[1]["code"].startswith("def __noetl_step__():")
    assert out[2] is tasks[2]
    assert tasks[1]["input"] == {"rows": "{{ q }}"} and "return rows" in tasks[1]["code"]  # not mutated


def issue(**kw: Any) -> IssueCommand:
    base: dict[str, Any] = {"command_id": 5, "step": "s", "tool_kind": "python", "tool_config": {"code": LEGACY},
                            "input": {"n": 2}}
    return IssueCommand(**{**base, **kw})


def test_the_fleet_worker_and_the_log_read_the_playbook_form() -> None:
    context = command_context(issue())
    assert context["tool_config"]["code"] != LEGACY and context["input"]["input_data"] == {"n": 2}
    assert context["tool"] == {"kind": "python", "code": LEGACY} and context["args"] == {"n": 2}
    work = read_work(context, "python")
    assert work.config == {"code": LEGACY} and work.inputs == {"n": 2}
    assert issued_event_context(context) == {"tool_config": {"code": LEGACY}, "args": {"n": 2},
                                             "render_context": None}


def test_the_log_shows_a_task_list_as_noetl_does() -> None:
    tasks = [{"name": "t", "kind": "python", "code": "return input_data"}]
    context = command_context(issue(tool_kind="pipeline", tool_config={}, pipeline=tasks, context={"w": 1}))
    assert context["pipeline"] == tasks and context["tool_config"]["tasks"] != tasks
    assert read_work(context, "task_sequence").tasks == tasks
    assert issued_event_context(context)["tool_config"] == {"tasks": tasks}


def test_a_context_from_noetl_server_is_read_as_before() -> None:
    work = read_work({"tool_config": {"code": "result = 1", "input": {"a": 1}}, "input": {"b": 2}}, "python")
    assert work.config["code"] == "result = 1" and work.inputs == {"a": 1, "b": 2}
