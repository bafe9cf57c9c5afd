import pytest

from noetl_common.dsl import PlaybookError, ensure_end_step, parse_playbook


def pb(*steps, **extra):
    return {"apiVersion": "noetl.io/v2", "kind": "Playbook", "metadata": {"name": "t", "path": "t/p"},
            "workflow": list(steps), **extra}


PY = {"kind": "python", "code": "result = 1"}


@pytest.mark.parametrize(("doc", "message"), [
    (pb({"step": "start", "tool": PY, "next": {"arcs": [{"step": "end"}, {"step": "lod"}]}}, {"step": "end", "tool": PY}),
     "step 'start': next.arcs[1].step 'lod' is not a step of this playbook"),
    (pb({"step": "begin", "tool": PY}, executor={"spec": {"entry_step": "go"}}),
     "executor.spec.entry_step 'go' is not a step of this playbook"),
    (pb({"step": "start", "tool": {"kind": "python", "input": [1, 2], "code": "x"}}),
     "step 'start': tool.input must be a mapping, got a list"),
    (pb({"step": "start", "tool": PY, "loop": {"in": [1], "spec": {"max_in_flight": -1}}}),
     "step 'start': loop.spec.max_in_flight must be a non-negative integer, got -1"),
    (pb({"step": "start", "tool": {"kind": "postgres", "script": {"source": {"type": "file"}}}}),
     "step 'start': tool.script needs `uri`"),
    (pb({"step": "start", "tool": {"kind": "http", "spec": ["GET"]}}), "step 'start': tool.spec must be a mapping, got a list"),
    (pb({"step": "start", "tool": PY}, {"step": "start", "tool": PY}), "step 'start': duplicate step name (workflow[1])"),
    (pb({"step": "start"}), "step 'start': tool is required"),
    (pb({"step": "start", "tool": PY, "case": [{"when": "x", "then": {}}]}),
     "step 'start': case blocks are not supported"),
    (pb({"step": "start", "tool": {"kind": "teleport"}}), "step 'start': tool.kind 'teleport' is not a known tool kind"),
    (pb({"step": "start", "tool": {"kind": "postgres", "auth": "pg"}}),
     "step 'start': tool of kind postgres needs one of: command, commands, query, sql, script"),
    (pb({"step": "start", "tool": [PY, {"kind": "duckdb"}]}),
     "step 'start': tool[1] of kind duckdb needs one of: command, commands, query, sql, script"),
    (pb({"step": "start", "tool": PY, "loop": {"iterator": "x"}}), "step 'start': loop.in is required"),
    (pb({"step": "start", "tool": PY, "loop": {"iterator": "x", "spec": {"mode": "cursor"}}}),
     "step 'start': loop.cursor.claim (the SQL that leases a frame of rows) is required in cursor mode"),
    (pb({"step": "start", "tool": PY, "loop": {"iterator": "x", "cursor": {"claim": "SELECT 1"},
                                               "spec": {"mode": "cursor", "frame": {"max_rows": 0}}}}),
     "step 'start': loop.spec.frame.max_rows must be a positive integer, got 0"),
    (pb({"step": "start", "tool": PY, "loop": {"in": [1], "spec": {"mode": "zigzag"}}}),
     "loop.spec.mode must be sequential, parallel or cursor, got 'zigzag'"),
    (pb({"step": "start", "tool": {"kind": "workbook", "name": "nope"}}),
     "step 'start': tool.name 'nope' is not a workbook entry"),
    ("workflow: [", "invalid YAML"),
])
def test_errors_name_step_and_field(doc, message):
    with pytest.raises(PlaybookError) as err:
        parse_playbook(doc)
    assert message in str(err.value)


def test_shapes_and_implicit_end():
    p = parse_playbook(pb(
        {"step": "start", "tool": PY, "next": "a"},
        {"step": "a", "tool": [{"name": "t1", **PY}],
         "next": {"spec": {"mode": "inclusive"}, "arcs": [{"step": "b"}, {"step": "c"}]}},
        {"step": "b", "tool": {"kind": "noop"}, "args": {"x": 1}},
        {"step": "c", "tool": {"kind": "noop"},
         "loop": {"in": "{{ xs }}", "iterator": "x", "spec": {"mode": "parallel", "max_in_flight": 2}}},
        {"step": "unused", "tool": {"kind": "noop"}},
        {"step": "end", "tool": {"kind": "noop"}}))
    assert p.steps["a"].kind == "pipeline" and p.steps["a"].inclusive
    assert p.steps["b"].input == {"x": 1} and p.steps["b"].arcs[0].step == "end"  # no next -> end
    assert p.steps["c"].loop.mode == "parallel" and p.steps["c"].loop.max_in_flight == 2
    assert set(p.predecessors["end"]) == {"b", "c"}  # unreachable steps are not upstreams
    assert p.warnings == ("step 'unused' is unreachable from 'start'",)


def test_workbook_reference_is_resolved_with_inputs_merged():
    p = parse_playbook(pb({"step": "start", "tool": {"kind": "workbook", "name": "w", "input": {"a": 2}}},
                          workbook=[{"name": "w", "tool": {"kind": "python", "input": {"a": 1, "b": 1}, "code": "x"}}]))
    assert p.steps["start"].kind == "python" and p.steps["start"].input == {"a": 2, "b": 1}


def test_single_tool_with_policy_becomes_a_one_task_pipeline():
    tool = {"kind": "python", "code": "result = 1", "spec": {"policy": {"rules": [{"else": {"then": {"do": "continue"}}}]}}}
    assert parse_playbook(pb({"step": "start", "tool": tool})).steps["start"].kind == "pipeline"


def test_ensure_end_step_adds_once():
    doc, added = ensure_end_step(pb({"step": "start", "tool": PY}))
    assert added and doc["workflow"][-1]["step"] == "end"
    again, added_again = ensure_end_step(doc)
    assert not added_again and len(again["workflow"]) == 2


@pytest.mark.parametrize("output", [{"output_select": "status"}, {"output_select": ["ok", 3]}])
def test_output_select_must_be_a_list_of_field_names(output):
    doc = {"metadata": {"name": "t", "path": "t/p"},
           "workflow": [{"step": "start", "tool": {"kind": "noop"}, "output": output}]}
    with pytest.raises(PlaybookError, match="output.output_select must be a list of field names"):
        parse_playbook(doc)


def test_a_steps_result_tier_reaches_its_tool_config_and_a_tools_own_wins():
    tier = {"store": {"kind": "gcs"}, "output_select": ["count"]}
    steps = parse_playbook(pb(
        {"step": "start", "tool": [{"name": "a", **PY}], "output": tier},
        {"step": "one", "tool": PY, "output": {"inline_max_bytes": 10}},
        {"step": "own", "tool": {**PY, "output": {"store": {"kind": "kv"}}}, "output": tier},
        {"step": "end", "tool": PY})).steps
    assert steps["start"].tool == {"output": {"store": {"kind": "gcs"}}}
    assert steps["start"].output_select == ("count",)
    assert steps["one"].tool["output"] == {"inline_max_bytes": 10}
    assert steps["own"].tool["output"] == {"store": {"kind": "kv"}}
    assert "output" not in steps["end"].tool
