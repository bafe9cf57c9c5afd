"""The engine never sees keychain values: `{{ keychain.* }}` in a step renders back to itself in the
issued command (the worker fills it in), whatever the step kind."""

from noetl_common.engine import ExecutionData, IssueCommand, start
from noetl_common.engine.values import jsonable

from .helpers import minter, playbook, py


def _issued(pb):
    _, decisions = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=minter(), data=ExecutionData())
    return [d for d in decisions if isinstance(d, IssueCommand)]


def test_tool_and_input_references_stay_references():
    pb = playbook({"step": "start", "tool": {"kind": "http", "url": "{{ base }}/x",
                                             "headers": {"Authorization": "Bearer {{ keychain.tok.access_token }}"}},
                   "input": {"key": "{{ keychain.openai.api_key }}"}}, workload={"base": "http://h"})
    (cmd,) = _issued(pb)
    assert cmd.tool_config["url"] == "http://h/x"
    assert cmd.tool_config["headers"] == {"Authorization": "Bearer {{ keychain.tok.access_token }}"}
    assert cmd.input == {"key": "{{ keychain.openai.api_key }}"}


def test_pipeline_scope_carries_no_placeholder_object():
    pb = playbook({"step": "start", "tool": [{"name": "a", **py("x", input={"k": "{{ keychain.t.v }}"})}]})
    (cmd,) = _issued(pb)
    assert "keychain" not in cmd.context
    jsonable(cmd.context)  # encodable as it is stored


def test_a_workload_variable_named_keychain_wins():
    pb = playbook({"step": "start", "tool": py("x", input={"k": "{{ keychain.a }}"})}, workload={"keychain": {"a": 1}})
    (cmd,) = _issued(pb)
    assert cmd.input == {"k": 1}
