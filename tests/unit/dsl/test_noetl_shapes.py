"""Shapes NoETL accepts that the first parser refused (issue 16), one test per decision recorded
in docs/architecture.md ("DSL and engine")."""

from noetl_common.dsl import parse_playbook
from noetl_common.engine import ExecutionData, IssueCommand, start

from .test_parser import PY, pb

POLICY = {"rules": [{"when": "{{ output.error.retryable }}", "then": {"do": "retry", "attempts": 3}},
                    {"else": {"do": "continue"}}]}


def test_tool_config_under_spec_is_lifted_and_flat_keys_win():
    p = parse_playbook(pb({"step": "start", "tool": {
        "kind": "python", "code": "flat wins", "spec": {"code": "nested", "input": {"a": 1, "b": 1}},
        "input": {"b": 2}}}))
    step = p.steps["start"]
    assert step.kind == "python" and step.tool["code"] == "flat wins" and step.input == {"a": 1, "b": 2}
    assert "spec" not in step.tool


def test_http_under_spec_with_a_policy_becomes_a_pipeline_task_with_the_policy_kept():
    p = parse_playbook(pb({"step": "start", "tool": {
        "kind": "http", "spec": {"method": "GET", "url": "{{ api }}/get", "params": {"q": 1}, "policy": POLICY}}}))
    (task,) = p.steps["start"].tasks
    assert task["url"] == "{{ api }}/get" and task["method"] == "GET" and task["params"] == {"q": 1}
    assert task["spec"] == {"policy": POLICY} and task["name"] == "start"


def test_a_list_under_args_is_the_tools_argument_vector_not_its_inputs():
    p = parse_playbook(pb({"step": "start", "tool": {"kind": "container", "image": "busybox",
                                                      "command": ["/bin/sh", "-c"], "args": ["echo hi"]}}))
    assert p.steps["start"].tool["args"] == ["echo hi"] and p.steps["start"].input == {}


def test_sql_and_python_from_a_script_source_register():
    for kind in ("postgres", "duckdb", "python"):
        tool = {"kind": kind, "script": {"uri": "./scripts/x", "source": {"type": "file"}}}
        assert parse_playbook(pb({"step": "start", "tool": tool})).steps["start"].tool["script"]["uri"] == "./scripts/x"


def test_an_end_step_without_a_tool_is_a_noop():
    p = parse_playbook(pb({"step": "start", "tool": PY}, {"step": "end", "desc": "done"}))
    assert p.steps["end"].kind == "noop" and p.steps["start"].arcs[0].step == "end"


def test_entry_is_start_else_the_configured_entry_else_the_first_step():
    assert parse_playbook(pb({"step": "a", "tool": PY, "next": "start"}, {"step": "start", "tool": PY})).entry == "start"
    assert parse_playbook(pb({"step": "validate", "tool": PY, "next": "b"}, {"step": "b", "tool": PY})).entry == "validate"
    chosen = pb({"step": "a", "tool": PY}, {"step": "b", "tool": PY}, executor={"spec": {"entry_step": "b"}})
    assert parse_playbook(chosen).entry == "b"


def test_the_engine_starts_at_the_entry_step():
    p = parse_playbook(pb({"step": "validate", "tool": PY}))
    _, decisions = start(p, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=iter(range(10, 99)).__next__,
                         data=ExecutionData())
    assert [d.step for d in decisions if isinstance(d, IssueCommand)] == ["validate"]


def test_templated_max_in_flight_is_rendered_when_the_loop_starts():
    p = parse_playbook(pb({"step": "start", "tool": PY, "loop": {
        "in": "{{ xs }}", "iterator": "x", "spec": {"mode": "parallel", "max_in_flight": "{{ cap | int }}"}}},
        workload={"xs": [1, 2, 3, 4], "cap": "2"}))
    assert p.steps["start"].loop.max_in_flight_expr == "{{ cap | int }}"
    _, decisions = start(p, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=iter(range(10, 99)).__next__,
                         data=ExecutionData())
    assert len([d for d in decisions if isinstance(d, IssueCommand)]) == 2


def test_a_templated_cap_that_is_not_a_number_fails_the_step_naming_the_field():
    p = parse_playbook(pb({"step": "start", "tool": PY, "loop": {
        "in": [1, 2], "iterator": "x", "spec": {"mode": "parallel", "max_in_flight": "{{ 'many' }}"}}}))
    _, decisions = start(p, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=iter(range(10, 99)).__next__,
                         data=ExecutionData())
    assert "loop.spec.max_in_flight rendered to 'many'" in decisions[-1].error
